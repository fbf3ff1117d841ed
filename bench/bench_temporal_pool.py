"""Benchmark of temporal_pool (NVILA video: mean over groups of 8 frames).

    python -m bench.bench_temporal_pool [--quick|--full|--tiny] [--device cpu|cuda] [--out DIR]

Shape: NVILA-8B-Video projector output, (T, 16, 16, 3584) with T = 256 frames (64 with
--quick), group 8, in bf16 and fp32. Providers: each compiled backend of ours with a
fresh output and with `out=`; "reference" (nvila_kernels.reference); and "eager",
`x.view(T // 8, 8, ...).mean(1)` in the input dtype, and "compile", torch.compile of
it. Bytes moved = input + output.
"""

from __future__ import annotations

import torch

import nvila_kernels
from bench import common
from bench.cases import Case

OP = "temporal_pool"


def eager_temporal_pool(x: torch.Tensor, group: int) -> torch.Tensor:
    """What a model does without the kernel: a view and a mean in the input dtype."""
    T = x.shape[0]
    return x.view(T // group, group, *x.shape[1:]).mean(1)


def bench_case(
    builder: common.RowBuilder, case: Case, mode: str, timing: common.Timing, warnings: list[str]
) -> list[common.Row]:
    device, note = builder.device, case.note
    frames, tokens, hidden, dtype = (case.args[a] for a in ("frames", "tokens", "hidden", "dtype"))
    group = case.args["group"]
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((frames, *tokens, hidden), generator=gen).to(device=device, dtype=dtype)
    expected = nvila_kernels.reference.temporal_pool(x, group)
    builder.measure_copy_bandwidth()

    providers = common.backend_providers(
        device, lambda be, out: nvila_kernels.temporal_pool(x, group, out=out, backend=be), expected
    )
    providers.append(("reference", lambda: nvila_kernels.reference.temporal_pool(x, group)))
    providers.append(("eager", lambda: eager_temporal_pool(x, group)))
    if mode in case.compile:
        compiled = common.compiled(eager_temporal_pool)
        providers.append(("compile", lambda: compiled(x, group)))

    kw = dict(op=OP, x=x, expected=expected, note=note, timing=timing, warnings=warnings)
    return common.measure_providers(builder, providers, **kw)


def print_targets(rows: list[common.Row]) -> None:
    """The CPU target of the issue for a fresh output, per dtype."""
    for dtype in ("float32", "bfloat16"):
        common.print_fresh_output_target([r for r in rows if r.dtype == dtype], dtype)


def run(args) -> list[common.Row]:
    return common.run_cases(args, [OP], bench_case, title=OP, results_name=OP, targets=print_targets)


def main(argv: list[str] | None = None) -> list[common.Row]:
    return common.script_main(run, __doc__, "bench.bench_temporal_pool", argv)


if __name__ == "__main__":
    main()
