"""Benchmark of merge_compress with LayerNorm (NVILA-8B's Dynamic-S2 back half).

    python -m bench.bench_merge_compress [--quick|--full|--tiny] [--device cpu|cuda] [--out DIR]

Shape: NVILA-8B on a 1920x1080 image: 17 tiles (1 + 4 + 4x3) of 32x32 tokens x 1152
channels, k=2, LayerNorm over 4*3*1152 = 13824 channels -> (3072, 13824).
Providers: each compiled backend of ours, with a fresh output ("cpu") and with `out=`
("cpu+out"); "reference" (nvila_kernels.reference: multiscale_merge, blocks,
spatial_compress, re-grid, in fp32); "eager", the official composition in the input
dtype (per scale: tiles to a map, F.interpolate(mode="area") in fp32 and cast back,
torch.cat of the scales, split into blocks, NVILA's flat_square with its zero padding,
F.layer_norm, blocks back into one token grid); "compile", torch.compile of eager.
Bytes moved = features read once + output written once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import nvila_kernels
from bench import common
from bench.bench_spatial_compress import flat_square
from bench.cases import Case
from nvila_kernels.tiling import TilePlan, plan_tiles

OP = "merge_compress"

# max |provider - reference| allowed, relative to max |reference|: a few ulps of the dtype
REL_TOL = {torch.float32: 1e-5, torch.float16: 2**-9, torch.bfloat16: 2**-6}


def eager_merge_compress(
    features: torch.Tensor, plan: TilePlan, k: int, ln_weight: torch.Tensor, ln_bias: torch.Tensor, h: int = 32
) -> torch.Tensor:
    """The official NVILA path, op by op: (n_tiles, h*h, C) -> (tokens, k*k*S*C)."""
    C = features.shape[-1]
    last = plan.scales[-1]
    size = (last.rows * h, last.cols * h)
    maps, t0 = [], 0
    for s in plan.scales:
        n = s.rows * s.cols
        m = features[t0 : t0 + n].reshape(s.rows, s.cols, h, h, C).permute(4, 0, 2, 1, 3)
        m = m.reshape(1, C, s.rows * h, s.cols * h)  # merge_chessboard
        maps.append(F.interpolate(m.float(), size=size, mode="area").to(features.dtype))
        t0 += n
    merged = torch.cat(maps, dim=1)[0]  # (S*C, rows*h, cols*h)
    SC = merged.shape[0]
    blocks = merged.permute(1, 2, 0).reshape(last.rows, h, last.cols, h, SC).permute(0, 2, 1, 3, 4)
    blocks = blocks.reshape(last.rows * last.cols, h, h, SC)  # split_chessboard, channels last
    y = flat_square(blocks, k)  # (blocks, Ho, Wo, D)
    y = F.layer_norm(y, (y.shape[-1],), ln_weight, ln_bias, 1e-5)
    Ho, Wo, D = y.shape[1:]
    return y.reshape(last.rows, last.cols, Ho, Wo, D).permute(0, 2, 1, 3, 4).reshape(-1, D)


def bench_case(
    builder: common.RowBuilder, case: Case, mode: str, timing: common.Timing, warnings: list[str]
) -> list[common.Row]:
    device, note = builder.device, case.note
    image, h, C, k, dtype = (case.args[a] for a in ("image", "h", "C", "k", "dtype"))
    gen = torch.Generator(device="cpu").manual_seed(0)
    plan = plan_tiles(*image)
    x = torch.randn(plan.n_tiles, h * h, C, generator=gen).to(device=device, dtype=dtype)
    D = k * k * len(plan.scales) * C
    w = torch.randn(D, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(D, generator=gen).to(device=device, dtype=dtype)
    expected = nvila_kernels.reference.merge_compress(x, plan, k, w, b, h=h, w=h)
    builder.measure_copy_bandwidth()

    providers = common.backend_providers(
        device, lambda be, out: nvila_kernels.merge_compress(x, plan, k, w, b, h=h, w=h, out=out, backend=be), expected
    )
    providers.append(("reference", lambda: nvila_kernels.reference.merge_compress(x, plan, k, w, b, h=h, w=h)))
    providers.append(("eager", lambda: eager_merge_compress(x, plan, k, w, b, h)))
    if mode in case.compile:
        compiled = common.compiled(eager_merge_compress)
        providers.append(("compile", lambda: compiled(x, plan, k, w, b, h)))

    kw = dict(op=OP, x=x, expected=expected, note=note, timing=timing, warnings=warnings, rel_tol=REL_TOL)
    return common.measure_providers(builder, providers, **kw)


def print_targets(rows: list[common.Row]) -> None:
    """The CPU targets of the issue, per dtype."""
    for dtype in ("float32", "bfloat16"):
        common.print_copy_targets([r for r in rows if r.dtype == dtype], dtype)


def run(args) -> list[common.Row]:
    return common.run_cases(
        args, [OP], bench_case, title=f"{OP} with LayerNorm", results_name=OP, targets=print_targets
    )


def main(argv: list[str] | None = None) -> list[common.Row]:
    return common.script_main(run, __doc__, "bench.bench_merge_compress", argv)


if __name__ == "__main__":
    main()
