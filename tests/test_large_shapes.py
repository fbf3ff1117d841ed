"""Sizes beyond 2^31 elements: the shape logic of every op and the CUDA launch planners.

Tensors that large do not fit this machine's tests, so the shape logic runs on meta
tensors (the reference backend) and under FakeTensorMode (each kernel backend: the
public function validates, allocates its output and calls the op's fake kernel). The
launch planners (<op>_launch_config in csrc/include/nvila, mirrored in
nvila_kernels/_nvrtc.py) are called on argument structs describing such sizes: they
must give a launchable grid whose kernel covers every element (grid-stride loops with
64-bit indices), or refuse with an over-limit grid the launcher turns into an error,
and the C++ and Python planners must agree. Expected shapes are the docstrings'
formulas, written out here. The kernels' index arithmetic itself is listed in
docs/INPUTS.md ("Sizes beyond 2^31 elements").
"""

from __future__ import annotations

import ctypes

import pytest
import torch
from conftest import KERNEL_BACKENDS, backend_device
from torch._subclasses.fake_tensor import FakeTensorMode

import nvila_kernels as nk
from nvila_kernels import _nvrtc, backends
from nvila_kernels.tiling import ScalePlan, TilePlan, plan_tiles

BIG = 2**31
E4M3 = torch.float8_e4m3fn


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _cases(device):
    """(name, thunk, expected shape, expected dtype, the input tensor)."""
    B, H, W, C, k = 2, 2**15, 2**15 + 1, 3, 2
    x = torch.empty(B, H, W, C, device=device)
    D = k * k * C
    yield "spatial_compress", (lambda b: nk.spatial_compress(x, k, torch.empty(D, device=device), backend=b)), (
        B, _cdiv(H, k), _cdiv(W, k), D), torch.float32, x  # fmt: skip

    frames = torch.empty(2**12, 2**10, 2**10, dtype=torch.bfloat16, device=device)
    yield "temporal_pool", (lambda b: nk.temporal_pool(frames, 8, backend=b)), (
        2**9, 2**10, 2**10), torch.bfloat16, frames  # fmt: skip

    plan = plan_tiles(1000, 600)  # 448/896/1344: 1 + 4 + rows*cols tiles
    rows, cols = plan.block_size
    Cf = 2**17
    feats = torch.empty(plan.n_tiles, 32 * 32, Cf, dtype=torch.float16, device=device)
    yield "multiscale_merge", (lambda b: nk.multiscale_merge(feats, plan, backend=b)), (
        3 * Cf, rows * 32, cols * 32), torch.float16, feats  # fmt: skip
    yield "merge_compress", (lambda b: nk.merge_compress(feats, plan, 2, backend=b)), (
        rows * 16 * cols * 16, 2 * 2 * 3 * Cf), torch.float16, feats  # fmt: skip

    side = 16384  # the largest image and tile multiscale_tile takes; 3 scales of one tile each
    big_plan = TilePlan(side, side, side, (ScalePlan(side, side, 1, 1),) * 3, (1, 1))
    image = torch.empty(side, side, 3, dtype=torch.uint8, device=device)
    yield "multiscale_tile", (lambda b: nk.multiscale_tile(image, big_plan, backend=b)), (
        3, 3, side, side), torch.float32, image  # fmt: skip

    flat = torch.empty(2**33, device=device)
    yield "fp8_quantize", (lambda b: nk.fp8_quantize(flat, backend=b)[0]), (2**33,), E4M3, flat

    a = torch.empty(2**17, 2**15, dtype=E4M3, device=device)
    w = torch.empty(2**16, 2**15, dtype=E4M3, device=device)
    s = torch.ones((), device=device)
    yield "fp8_gemm", (lambda b: nk.fp8_gemm(a, w, s, s, backend=b)), (2**17, 2**16), torch.bfloat16, a


NAMES = [name for name, *_ in _cases("meta")]


@pytest.mark.parametrize("name", NAMES)
def test_meta_shapes_beyond_2_31_elements(name):
    """Meta tensors run the reference (no kernel can run on them): shapes only."""
    (_, fn, shape, dtype, inp), *_ = [c for c in _cases("meta") if c[0] == name]
    assert max(inp.numel(), torch.Size(shape).numel()) > BIG, "not a case beyond 2^31 elements"
    got = fn(None)
    assert got.device.type == "meta"
    assert tuple(got.shape) == shape and got.dtype == dtype


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_fake_shapes_beyond_2_31_elements(backend, name):
    """Each kernel backend's path (validation, output allocation, the op's fake kernel) on fake tensors."""
    with FakeTensorMode():
        (_, fn, shape, dtype, _), *_ = [c for c in _cases(backend_device(backend)) if c[0] == name]
        got = fn(backend)
        assert tuple(got.shape) == shape and got.dtype == dtype


# ---- launch planners --------------------------------------------------------------------

_C = backends.state["ext"]
TARGETS = [_nvrtc.LaunchTarget(89, 101376, 0), _nvrtc.LaunchTarget(90, 232448, 1)]
needs_hook = pytest.mark.skipif(
    _C is None or not hasattr(_C, "launch_config"), reason="the C++ planners are reached through nvila_kernels._C"
)
A16 = 1 << 12  # a 16-byte aligned fake address


def _plans(op: str, args) -> list[_nvrtc.LaunchConfig]:
    """The launch plan of `args` per target, the same from C++ and from the Python mirror."""
    out = []
    for t in TARGETS:
        py = _nvrtc.OPS[op].plan(args, t)
        assert tuple(py) == _C.launch_config(op, bytes(args), *t), f"{op} {t}: Python and C++ plans differ"
        out.append(py)
    return out


def _merge_args(rows, cols, h, w, C):
    n = len(rows)
    arr = ctypes.c_int64 * 8
    tile0 = [sum(r * c for r, c in zip(rows[:s], cols[:s], strict=True)) for s in range(n)]
    pad = [0] * (8 - n)
    return _nvrtc.MultiscaleMergeArgs(A16, A16, n, C, h, w, arr(*rows, *pad), arr(*cols, *pad), arr(*tile0, *pad), 1)


@needs_hook
def test_grid_stride_plans_beyond_2_31_elements():
    """Ops with grid-stride loops over 64-bit indices: a capped, launchable grid for any size."""
    S = _nvrtc
    # spatial_compress: 2 x 2^16 x 2^16 output tokens (k = 1): one block per token, capped at 2^30 blocks
    sc = S.SpatialCompressArgs(A16, A16, None, None, 2, 2**16, 2**16, 8, 1, 2**35, 2**19, 8, 1e-5, 1)
    for c in _plans("spatial_compress", sc):
        assert S.grid_ok(c) and c.grid_x == 2**30
    # temporal_pool: 2^31 groups x 2^8 elements per frame
    tp = S.TemporalPoolArgs(A16, A16, 2**34, 2**8, 8, 2**8, 0)
    for c in _plans("temporal_pool", tp):
        assert S.grid_ok(c) and c.grid_x == 65536 * 8 and c.block == 256
    # fp8_quantize: 2^34 elements, at most 4096 blocks
    fq = S.Fp8QuantizeArgs(A16, 0, 2**34, None, A16, A16, A16, 0)
    for c in _plans("fp8_quantize", fq):
        assert S.grid_ok(c) and c.grid_x == 4096
    # multiscale_tile: 2^33 output pixels (beyond the functional caps; the planner alone)
    arr = ctypes.c_int64 * 8
    mt = S.MultiscaleTileArgs(A16, A16, 16384, 16384, 2**15, 1)
    mt.rows, mt.cols, mt.tile0 = arr(2, *[0] * 7), arr(4, *[0] * 7), arr()
    for c in _plans("multiscale_tile", mt):
        assert S.grid_ok(c) and c.grid_x == 65536 * 8


@needs_hook
def test_fp8_gemm_plans_every_row_beyond_65535_tiles():
    """fp8_gemm's grid is 1-D over output tiles: M is not bound by CUDA's grid_y limit (65535)."""
    for M, N in [(65536 * 64 + 1, 2), (2**26, 4096), (1, 2**31 - 1), (2**31, 2**16)]:
        args = _nvrtc.Fp8GemmArgs(A16, A16, A16, A16, None, A16, 2, M, N, 64)
        for t, c in zip(TARGETS, _plans("fp8_gemm", args), strict=True):
            bm, bn = (64, 128) if t.sm90a else (64, 64)
            assert (c.grid_x, c.grid_y) == (_cdiv(M, bm) * _cdiv(N, bn), 1)
            assert _nvrtc.grid_ok(c) == (c.grid_x < BIG)  # the last case: 2^35 tiles, refused


@needs_hook
def test_merge_plans_refuse_beyond_32_bit_indexing():
    """multiscale_merge / merge_compress index tokens in 32 bits: beyond 2^31 feature tokens the
    plan is an over-limit grid (the launcher's error), just below it a launchable one."""
    S = _nvrtc
    # 2^14 tiles of 2^9 x 2^9 tokens = 2^32 tokens: refused
    big = _merge_args([128], [128], 512, 512, 1)
    for c in _plans("multiscale_merge", big):
        assert not S.grid_ok(c)
    mc = S.MergeCompressArgs(big, A16, None, None, 2, 1e-5)
    for c in _plans("merge_compress", mc):
        assert not S.grid_ok(c)
    # NVILA-8B's largest plan (1 + 4 + 12 tiles of 32 x 32 x 1152): launchable
    ok = _merge_args([1, 2, 3], [1, 2, 4], 32, 32, 1152)
    for c in _plans("multiscale_merge", ok):
        assert S.grid_ok(c) and c.grid_x > 0
    for c in _plans("merge_compress", S.MergeCompressArgs(ok, A16, None, None, 2, 1e-5)):
        assert S.grid_ok(c) and c.grid_x == 4 * 16 * 3 * 16
