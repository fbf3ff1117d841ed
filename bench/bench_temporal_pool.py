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
REL_TOL = {torch.float32: 1e-5, torch.float16: 2**-10, torch.bfloat16: 2**-7}


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
    nbytes = common.tensor_bytes(x, expected)
    tol = REL_TOL[dtype] * expected.abs().max().item()
    builder.measure_copy_bandwidth()

    providers: list[tuple[str, object]] = []
    for backend in common.benched_backends(device):
        out = torch.empty_like(expected)
        providers.append((backend, lambda be=backend: nvila_kernels.temporal_pool(x, group, backend=be)))
        providers.append(
            (f"{backend}+out", lambda be=backend, o=out: nvila_kernels.temporal_pool(x, group, out=o, backend=be))
        )
    providers.append(("reference", lambda: nvila_kernels.reference.temporal_pool(x, group)))
    providers.append(("eager", lambda: eager_temporal_pool(x, group)))
    if mode in case.compile:
        compiled = common.compiled(eager_temporal_pool)
        providers.append(("compile", lambda: compiled(x, group)))

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


def run(args) -> list[common.Row]:
    return common.run_cases(args, [OP], bench_case, title=OP, results_name=OP)


def main(argv: list[str] | None = None) -> list[common.Row]:
    return common.script_main(run, __doc__, "bench.bench_temporal_pool", argv)


if __name__ == "__main__":
    main()
