"""Benchmark of temporal_pool (NVILA video: mean over groups of 8 frames).

    python -m bench.bench_temporal_pool [--quick|--full|--tiny] [--device cpu|cuda] [--out DIR]

Shape: NVILA-8B-Video projector output, (T, 16, 16, 3584) with T = 256 frames (64 with
--quick), group 8, in bf16 and fp32. Providers: each compiled backend of ours with a
fresh output and with `out=`; "reference" (nvila_kernels.reference); and "eager",
`x.view(T // 8, 8, ...).mean(1)` in the input dtype, and "compile", torch.compile of
it. Bytes moved = input + output.
"""

from __future__ import annotations

import argparse

import torch

import nvila_kernels
from bench import common

OP = "temporal_pool"
GROUP = 8
TOKENS, HIDDEN = (16, 16), 3584  # 16x16 tokens per frame after the 2x2 projector, Qwen2-7B width
FRAMES, QUICK_FRAMES = 256, 64
DTYPES = (torch.bfloat16, torch.float32)

REL_TOL = {torch.float32: 1e-5, torch.float16: 2**-10, torch.bfloat16: 2**-7}


def eager_temporal_pool(x: torch.Tensor, group: int) -> torch.Tensor:
    """What a model does without the kernel: a view and a mean in the input dtype."""
    T = x.shape[0]
    return x.view(T // group, group, *x.shape[1:]).mean(1)


def bench_case(
    builder: common.RowBuilder,
    frames: int,
    dtype: torch.dtype,
    timing: common.Timing,
    warnings: list[str],
    tokens: tuple[int, int] = TOKENS,
    hidden: int = HIDDEN,
) -> list[common.Row]:
    device = builder.device
    note = f"NVILA-8B-Video, {frames} frames, group {GROUP}" if hidden == HIDDEN else f"tiny, {frames} frames"
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((frames, *tokens, hidden), generator=gen).to(device=device, dtype=dtype)
    expected = nvila_kernels.reference.temporal_pool(x, GROUP)
    nbytes = common.tensor_bytes(x, expected)
    tol = REL_TOL[dtype] * expected.abs().max().item()
    builder.measure_copy_bandwidth()

    providers: list[tuple[str, object]] = []
    for backend in common.benched_backends(device):
        out = torch.empty_like(expected)
        providers.append((backend, lambda be=backend: nvila_kernels.temporal_pool(x, GROUP, backend=be)))
        providers.append(
            (f"{backend}+out", lambda be=backend, o=out: nvila_kernels.temporal_pool(x, GROUP, out=o, backend=be))
        )
    providers.append(("reference", lambda: nvila_kernels.reference.temporal_pool(x, GROUP)))
    providers.append(("eager", lambda: eager_temporal_pool(x, GROUP)))
    compiled = common.compiled(eager_temporal_pool)
    providers.append(("compile", lambda: compiled(x, GROUP)))

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
    device, mode, timing = common.configure(args)
    busy = common.busy_machine_note() if device.type == "cpu" else None
    builder = common.RowBuilder(device)
    rows: list[common.Row] = []
    warnings: list[str] = common.skipped_backends(device)
    for dtype in DTYPES:
        if mode == "tiny":
            rows += bench_case(builder, 16, dtype, timing, warnings, tokens=(4, 4), hidden=64)
        else:
            rows += bench_case(builder, QUICK_FRAMES if mode == "quick" else FRAMES, dtype, timing, warnings)
    return common.report(
        rows, title=f"{OP} ({mode} run)", busy=busy, warnings=warnings, results_name=f"{OP}_{device.type}"
    )


def main(argv: list[str] | None = None) -> list[common.Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_temporal_pool", description=__doc__.split("\n")[0])
    common.add_common_args(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
