"""The suite's model-shape cases through pytest-benchmark:

    pytest bench --benchmark-only [--benchmark-json out.json]

One test per (op, case, provider): our backends on the device, the reference and the
eager composition, on the same inputs as `python -m bench`. The physics columns
(GB/s, % of copy bandwidth, TFLOP/s) are only in `python -m bench`; this is for
people whose tooling collects pytest-benchmark JSON. Device: cuda when present.
"""

from __future__ import annotations

import pytest
import torch

import nvila_kernels
from bench import bench_fp8, bench_merge_compress, bench_spatial_compress, bench_temporal_pool, common
from nvila_kernels import reference
from nvila_kernels.tiling import plan_tiles

DEVICE = torch.device(common.default_device())
BACKENDS = common.benched_backends(DEVICE)


def _sync(fn):
    if DEVICE.type != "cuda":
        return fn

    def call():
        y = fn()
        torch.cuda.synchronize()
        return y

    return call


def _spatial_compress(case, provider):
    note, shape, k, dtype = case
    gen = torch.Generator().manual_seed(0)
    D = k * k * shape[-1]
    x = torch.randn(shape, generator=gen).to(DEVICE, dtype)
    w, b = (torch.randn(D, generator=gen).to(DEVICE, dtype) for _ in range(2))
    if provider == "reference":
        return lambda: reference.spatial_compress(x, k, w, b)
    if provider == "eager":
        return lambda: bench_spatial_compress.eager_spatial_compress(x, k, w, b)
    out = nvila_kernels.spatial_compress(x, k, w, b, backend=provider)
    return lambda: nvila_kernels.spatial_compress(x, k, w, b, out=out, backend=provider)


def _temporal_pool(case, provider):
    dtype = case
    shape = (bench_temporal_pool.FRAMES, *bench_temporal_pool.TOKENS, bench_temporal_pool.HIDDEN)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(DEVICE, dtype)
    g = bench_temporal_pool.GROUP
    if provider == "reference":
        return lambda: reference.temporal_pool(x, g)
    if provider == "eager":
        return lambda: bench_temporal_pool.eager_temporal_pool(x, g)
    out = nvila_kernels.temporal_pool(x, g, backend=provider)
    return lambda: nvila_kernels.temporal_pool(x, g, out=out, backend=provider)


def _merge_compress(case, provider):
    note, image, h, C, k, dtype = case
    plan = plan_tiles(*image)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(plan.n_tiles, h * h, C, generator=gen).to(DEVICE, dtype)
    D = k * k * len(plan.scales) * C
    w, b = (torch.randn(D, generator=gen).to(DEVICE, dtype) for _ in range(2))
    if provider == "reference":
        return lambda: reference.merge_compress(x, plan, k, w, b, h=h, w=h)
    if provider == "eager":
        return lambda: bench_merge_compress.eager_merge_compress(x, plan, k, w, b, h)
    out = nvila_kernels.merge_compress(x, plan, k, w, b, h=h, w=h, backend=provider)
    return lambda: nvila_kernels.merge_compress(x, plan, k, w, b, h=h, w=h, out=out, backend=provider)


def _fp8_gemm(case, provider):
    note, M, N, K = case
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(M, K, generator=gen).to(DEVICE)
    w = (torch.randn(N, K, generator=gen) * K**-0.5).to(DEVICE)
    if provider == "eager":  # fp32 weights, as a model without FP8
        return lambda: a @ w.t()
    qa, sa = reference.fp8_quantize(a)
    qw, sw = reference.fp8_quantize(w)
    if provider == "reference":
        return lambda: reference.fp8_gemm(qa, qw, sa, sw, None, torch.bfloat16)
    return lambda: nvila_kernels.fp8_gemm(qa, qw, sa, sw, backend=provider)


def _fp8_quantize(case, provider):
    note, shape, dtype = case
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(DEVICE, dtype)
    if provider == "reference":
        return lambda: reference.fp8_quantize(x)
    if provider == "eager":
        return lambda: bench_fp8.eager_quantize(x)
    return lambda: nvila_kernels.fp8_quantize(x, backend=provider)


# op -> (case builder, cases, case id)
OPS = {
    "spatial_compress": (_spatial_compress, bench_spatial_compress.CASES, lambda c: f"{c[0]}-{c[3]}"),
    "temporal_pool": (_temporal_pool, bench_temporal_pool.DTYPES, str),
    "merge_compress": (_merge_compress, bench_merge_compress.CASES, lambda c: f"{c[0]}-{c[5]}"),
    "fp8_gemm": (_fp8_gemm, bench_fp8.GEMM_CASES, lambda c: c[0]),
    "fp8_quantize": (_fp8_quantize, bench_fp8.QUANT_CASES, lambda c: c[0]),
}
PARAMS = [
    pytest.param(op, case, provider, id=f"{op}-{ident(case)}-{provider}")
    for op, (_, cases, ident) in OPS.items()
    for case in cases
    for provider in [*BACKENDS, "reference", "eager"]
]


@pytest.mark.parametrize("op,case,provider", PARAMS)
def test_benchmark(benchmark, op, case, provider):
    benchmark.group = f"{op} {OPS[op][2](case)}"
    fn = _sync(OPS[op][0](case, provider))
    benchmark(fn)
