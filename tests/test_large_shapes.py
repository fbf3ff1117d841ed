"""Sizes beyond 2^31 elements: the shape logic of every op and the CUDA launch planners.

Tensors that large do not fit this machine's tests, so the shape logic runs on meta
tensors (the reference backend) and under FakeTensorMode (each kernel backend: the
public function validates, allocates its output and calls the op's fake kernel). The
launch planners (<op>_launch_config in csrc/include/nvila, reached through the
_C.launch_config test hook) are called on argument structs describing such sizes (packed
at the C++ field offsets, _C.args_layout): they must give a launchable grid whose kernel
covers every element (grid-stride loops with 64-bit indices), or refuse with an
over-limit grid the launcher turns into an error. Expected shapes are the docstrings'
formulas, written out here. The kernels' index arithmetic itself is listed in
docs/INPUTS.md ("Sizes beyond 2^31 elements").
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import pytest
import torch
from conftest import KERNEL_BACKENDS, backend_device
from torch._subclasses.fake_tensor import FakeTensorMode

import nvila_kernels as nk
from nvila_kernels import backends
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
needs_hook = pytest.mark.skipif(
    _C is None or not hasattr(_C, "launch_config"), reason="the C++ planners are reached through nvila_kernels._C"
)
A16 = 1 << 12  # a 16-byte aligned fake address
TARGETS = [(89, 101376, 0), (90, 232448, 1)]  # LaunchTarget: cc, max dynamic smem, sm90a


class Plan(NamedTuple):  # nvila::LaunchConfig
    dtype: int
    grid_x: int
    grid_y: int
    block: int
    smem: int
    variant: tuple[int, int, int]


def grid_ok(c: Plan) -> bool:
    return c.grid_x <= 0x7FFFFFFF and c.grid_y <= 65535


def pack(op: str, **fields) -> bytes:
    """The op's C++ args struct with `fields` set (ints, floats, lists for arrays, bytes for
    nested structs), the rest zero, at the offsets and sizes _C reports."""
    layout = _C.args_layout(op)
    buf = bytearray(layout["sizeof"])
    for name, value in fields.items():
        offset, size = layout["fields"][name]
        if isinstance(value, bytes):
            raw = value
        elif isinstance(value, float):
            raw = struct.pack("<f", value)
        elif isinstance(value, list):
            n = size // 8 if size % 8 == 0 and size >= 64 else size  # int64[8] or bool[8]
            raw = b"".join(v.to_bytes(size // n, "little", signed=True) for v in value + [0] * (n - len(value)))
        else:
            raw = value.to_bytes(size, "little", signed=True)
        assert len(raw) == size, name
        buf[offset : offset + size] = raw
    return bytes(buf)


def _plans(op: str, **fields) -> list[Plan]:
    """The C++ launch plan of the args struct with `fields`, per target."""
    args = pack(op, **fields)
    return [Plan(*_C.launch_config(op, args, *t)) for t in TARGETS]


def _merge_fields(rows, cols, h, w, C):
    tile0 = [sum(r * c for r, c in zip(rows[:s], cols[:s], strict=True)) for s in range(len(rows))]
    return dict(x=A16, out=A16, S=len(rows), C=C, h=h, w=w, rows=rows, cols=cols, tile0=tile0, dtype=1)


@needs_hook
def test_grid_stride_plans_beyond_2_31_elements():
    """Ops with grid-stride loops over 64-bit indices: a capped, launchable grid for any size."""
    # spatial_compress: 2 x 2^16 x 2^16 output tokens (k = 1): one block per token, capped at 2^30 blocks
    sc = dict(x=A16, out=A16, B=2, H=2**16, W=2**16, C=8, k=1, sB=2**35, sH=2**19, sW=8, eps=1e-5, dtype=1)
    for c in _plans("spatial_compress", **sc):
        assert grid_ok(c) and c.grid_x == 2**30
    # temporal_pool: 2^31 groups x 2^8 elements per frame
    for c in _plans("temporal_pool", x=A16, out=A16, T=2**34, N=2**8, group=8, sT=2**8, dtype=0):
        assert grid_ok(c) and c.grid_x == 65536 * 8 and c.block == 256
    # fp8_quantize: 2^34 elements, at most 4096 blocks
    for c in _plans("fp8_quantize", x=A16, n=2**34, scale_out=A16, workspace=A16, q=A16):
        assert grid_ok(c) and c.grid_x == 4096
    # multiscale_tile: 2^33 output pixels (beyond the functional caps; the planner alone)
    mt = dict(image=A16, out=A16, H=16384, W=16384, T=2**15, S=1, rows=[2], cols=[4], tile0=[0])
    for c in _plans("multiscale_tile", **mt):
        assert grid_ok(c) and c.grid_x == 65536 * 8


@needs_hook
def test_fp8_gemm_plans_every_row_beyond_65535_tiles():
    """fp8_gemm's grid is 1-D over output tiles: M is not bound by CUDA's grid_y limit (65535)."""
    for M, N in [(65536 * 64 + 1, 2), (2**26, 4096), (1, 2**31 - 1), (2**31, 2**16)]:
        fields = dict(a=A16, b=A16, scale_a=A16, scale_b=A16, out=A16, out_dtype=2, M=M, N=N, K=64)
        for (_, _, sm90a), c in zip(TARGETS, _plans("fp8_gemm", **fields), strict=True):
            bm, bn = (64, 128) if sm90a else (64, 64)
            assert (c.grid_x, c.grid_y) == (_cdiv(M, bm) * _cdiv(N, bn), 1)
            assert grid_ok(c) == (c.grid_x < BIG)  # the last case: 2^35 tiles, refused


@needs_hook
def test_merge_plans_refuse_beyond_32_bit_indexing():
    """multiscale_merge / merge_compress index tokens in 32 bits: beyond 2^31 feature tokens the
    plan is an over-limit grid (the launcher's error), just below it a launchable one."""
    # 2^14 tiles of 2^9 x 2^9 tokens = 2^32 tokens: refused
    big = _merge_fields([128], [128], 512, 512, 1)
    for c in _plans("multiscale_merge", **big):
        assert not grid_ok(c)
    for c in _plans("merge_compress", m=pack("multiscale_merge", **big), out=A16, k=2, eps=1e-5):
        assert not grid_ok(c)
    # NVILA-8B's largest plan (1 + 4 + 12 tiles of 32 x 32 x 1152): launchable
    ok = _merge_fields([1, 2, 3], [1, 2, 4], 32, 32, 1152)
    for c in _plans("multiscale_merge", **ok):
        assert grid_ok(c) and c.grid_x > 0
    for c in _plans("merge_compress", m=pack("multiscale_merge", **ok), out=A16, k=2, eps=1e-5):
        assert grid_ok(c) and c.grid_x == 4 * 16 * 3 * 16
