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

# max |provider - reference| allowed, relative to max |reference|: about 2 ulps of the dtype
REL_TOL = {torch.float32: 1e-5, torch.float16: 2**-10, torch.bfloat16: 2**-7}


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
    B, H, W, C = shape
    D = k * k * C
    x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    w = torch.randn(D, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(D, generator=gen).to(device=device, dtype=dtype)
    out_shape = (B, -(-H // k), -(-W // k), D)
    expected = nvila_kernels.reference.spatial_compress(x, k, w, b)
    nbytes = common.tensor_bytes(x, expected)
    tol = REL_TOL[dtype] * expected.abs().max().item()
    builder.measure_copy_bandwidth()

    providers: list[tuple[str, object]] = []
    for backend in common.benched_backends(device):
        out = torch.empty(out_shape, dtype=dtype, device=device)
        providers.append((backend, lambda be=backend: nvila_kernels.spatial_compress(x, k, w, b, backend=be)))
        providers.append(
            (f"{backend}+out", lambda be=backend, o=out: nvila_kernels.spatial_compress(x, k, w, b, out=o, backend=be))
        )
    providers.append(("reference", lambda: nvila_kernels.reference.spatial_compress(x, k, w, b)))
    providers.append(("eager", lambda: eager_spatial_compress(x, k, w, b)))
    if mode in case.compile:
        compiled = common.compiled(eager_spatial_compress)
        providers.append(("compile", lambda: compiled(x, k, w, b)))

    return common.measure_providers(
        builder,
        providers,
        op=OP,
        x=x,
        nbytes=nbytes,
        expected=expected,
        note=note,
        timing=timing,
        tol=tol,
        warnings=warnings,
    )


def _find(rows: list[common.Row], note: str, dtype: str, provider: str) -> common.Row | None:
    return next((r for r in rows if r.note == note and r.dtype == dtype and r.provider == provider), None)


def print_targets(rows: list[common.Row]) -> None:
    """The CPU targets of the issue, as PASS/FAIL lines (not asserts)."""
    note = cases(OP, "standard")[0].note
    fresh = _find(rows, note, "float32", "cpu")
    out = _find(rows, note, "float32", "cpu+out")
    if fresh is None or out is None:
        print("targets: skipped (no CPU kernel rows)")
        return
    ok = fresh.speedup_vs_eager >= 3.0
    print(
        f"{'PASS' if ok else 'FAIL'}: CPU kernel (fresh output) >= 3x faster than eager on {note} fp32: "
        f"{fresh.speedup_vs_eager:.2f}x ({fresh.median_ms:.2f} ms vs {fresh.median_ms * fresh.speedup_vs_eager:.2f} ms)"
    )
    ok = out.frac_copy_bw >= 0.5
    print(
        f"{'PASS' if ok else 'FAIL'}: CPU kernel with out= >= 50% of copy bandwidth on {note} fp32: "
        f"{100 * out.frac_copy_bw:.0f}% ({out.gbps:.1f} of {out.copy_gbps:.1f} GB/s)"
    )


def run(args) -> list[common.Row]:
    return common.run_cases(
        args, [OP], bench_case, title=f"{OP} with LayerNorm", results_name=OP, targets=print_targets
    )


def main(argv: list[str] | None = None) -> list[common.Row]:
    return common.script_main(run, __doc__, "bench.bench_spatial_compress", argv)


if __name__ == "__main__":
    main()
