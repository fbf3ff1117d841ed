"""Benchmark of spatial_compress with LayerNorm (NVILA's k x k projector input).

    python -m bench.bench_spatial_compress [--quick|--full|--tiny] [--device cpu|cuda] [--out DIR]

Providers: each compiled backend of ours on the device, called with a fresh output
("cpu") and with a preallocated `out=` ("cpu+out"); "reference" (nvila_kernels.reference);
"eager", NVILA's official composition (zero-pad with torch.cat, the view/permute of
flat_square / flat_square_3x3, then F.layer_norm in the input dtype): the baseline the
kernels replace; and "compile", torch.compile of that composition. Bytes moved = input
+ output. On CPU a fresh 170 MB output pays its page faults on every call, so "cpu" is
much slower than "cpu+out"; both are reported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import nvila_kernels
from bench import common
from bench.cases import Case, cases

OP = "spatial_compress"


def flat_square(x: torch.Tensor, k: int) -> torch.Tensor:
    """NVILA's official space-to-depth (VILA's flat_square for k=2, flat_square_3x3 for
    k=3), written the same way: torch.cat of zeros made on the host, view/permute/view/permute.
    x: (n, h, w, c) -> (n, ceil(h/k), ceil(w/k), k*k*c)."""
    n, h, w, c = x.size()
    if h % k != 0:  # zero rows at the bottom
        x = torch.concat([x, torch.zeros((n, k - h % k, w, c), dtype=x.dtype).to(x.device)], dim=1).contiguous()
        n, h, w, c = x.size()
    x = x.contiguous()
    if w % k != 0:  # then zero columns on the right
        x = torch.concat([x, torch.zeros((n, h, k - w % k, c), dtype=x.dtype).to(x.device)], dim=2).contiguous()
        n, h, w, c = x.size()
    x = x.view(n, h, w // k, c * k)  # (n, h, J, (dc, c))
    x = x.permute(0, 2, 1, 3).contiguous()  # (n, J, h, (dc, c))
    x = x.view(n, w // k, h // k, c * k * k)  # (n, J, I, (dr, dc, c))
    x = x.permute(0, 2, 1, 3).contiguous()  # (n, I, J, (dr, dc, c))
    return x


def eager_spatial_compress(
    x: torch.Tensor, k: int, ln_weight: torch.Tensor, ln_bias: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """The official NVILA path: flat_square, then the projector's first nn.LayerNorm
    (weights in the model dtype, so the LayerNorm runs in the input dtype)."""
    y = flat_square(x, k)
    return F.layer_norm(y, (y.shape[-1],), ln_weight, ln_bias, eps)


def bench_case(
    builder: common.RowBuilder, case: Case, mode: str, timing: common.Timing, warnings: list[str]
) -> list[common.Row]:
    device, note = builder.device, case.note
    shape, k, dtype = case.args["shape"], case.args["k"], case.args["dtype"]
    gen = torch.Generator(device="cpu").manual_seed(0)
    D = k * k * shape[-1]
    x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    w = torch.randn(D, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(D, generator=gen).to(device=device, dtype=dtype)
    expected = nvila_kernels.reference.spatial_compress(x, k, w, b)
    builder.measure_copy_bandwidth()

    providers = common.backend_providers(
        device, lambda be, out: nvila_kernels.spatial_compress(x, k, w, b, out=out, backend=be), expected
    )
    providers.append(("reference", lambda: nvila_kernels.reference.spatial_compress(x, k, w, b)))
    providers.append(("eager", lambda: eager_spatial_compress(x, k, w, b)))
    if mode in case.compile:
        compiled = common.compiled(eager_spatial_compress)
        providers.append(("compile", lambda: compiled(x, k, w, b)))

    kw = dict(op=OP, x=x, expected=expected, note=note, timing=timing, warnings=warnings)
    return common.measure_providers(builder, providers, **kw)


def print_targets(rows: list[common.Row]) -> None:
    """The CPU targets of the issue on the first case (NVILA-8B fp32)."""
    note = cases(OP, "standard")[0].note
    common.print_copy_targets([r for r in rows if r.note == note and r.dtype == "float32"], f"{note} fp32")


def run(args) -> list[common.Row]:
    return common.run_cases(
        args, [OP], bench_case, title=f"{OP} with LayerNorm", results_name=OP, targets=print_targets
    )


def main(argv: list[str] | None = None) -> list[common.Row]:
    return common.script_main(run, __doc__, "bench.bench_spatial_compress", argv)


if __name__ == "__main__":
    main()
