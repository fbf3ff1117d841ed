"""The CUDA kernels without a compiled extension: NVRTC at first use, the driver API to launch.

When nvila_kernels._C has no CUDA kernels (a pure-Python install, or no nvcc at build
time) but a GPU and cuda-python are present, the "cuda" backend is served from here:
the torch-free csrc/cuda/<op>.cu sources are compiled with NVRTC for the device's
arch (host launchers are left out under __CUDACC_RTC__), the cubin is cached on disk
($NVILA_KERNELS_CACHE, default ~/.cache/nvila_kernels) under a hash of the sources,
options and NVRTC version, loaded with cuModuleLoadData and launched with
cuLaunchKernel on torch's current stream. Python CUDA-key implementations of the
`nvila::<op>_cuda` ops (register()) make the public functions and torch.compile work
unchanged.

Each kernel takes its op's args struct by value: OPS below mirrors those structs
(ctypes; layout checked against the C++ sizeof/offsetof) and the C++ launch planners
<op>_launch_config() of csrc/include/nvila (checked against them over many shapes by
tests/test_nvrtc.py through the _C.launch_config test hook). Adding an op is one OPS
entry (its struct, planner, kernel names and argument builder).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

PACKAGE = Path(__file__).resolve().parent


def source_dir() -> Path:
    """csrc as installed beside the package (nvila_kernels/_csrc, see setup.py), else the checkout's."""
    installed = PACKAGE / "_csrc"
    return installed if installed.is_dir() else PACKAGE.parent / "csrc"


def cache_dir() -> Path:
    env = os.environ.get("NVILA_KERNELS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "nvila_kernels"


# ---- kernel argument structs (csrc/include/nvila/*.h) ------------------------------

DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}  # nvila::DType
CTYPE_NAMES = ("float", "nvila::half_t", "nvila::bf16_t")  # by DType code
DTYPE_SIZES = (4, 2, 2)
FP8_FORMATS = {torch.float8_e4m3fn: 0, torch.float8_e5m2: 1}  # nvila::Fp8Format
FP8_FORMAT_NAMES = ("nvila::Fp8Format::E4M3", "nvila::Fp8Format::E5M2")
MERGE_MAX_SCALES = 8  # kMergeMaxScales

_p, _i32, _i64, _f32 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_float


class SpatialCompressArgs(ctypes.Structure):
    _fields_ = [("x", _p), ("out", _p), ("ln_weight", _p), ("ln_bias", _p)]
    _fields_ += [(n, _i64) for n in ("B", "H", "W", "C", "k", "sB", "sH", "sW")]
    _fields_ += [("eps", _f32), ("dtype", _i32)]


class TemporalPoolArgs(ctypes.Structure):
    _fields_ = [("x", _p), ("out", _p), ("T", _i64), ("N", _i64), ("group", _i64), ("sT", _i64), ("dtype", _i32)]


class MultiscaleMergeArgs(ctypes.Structure):
    _fields_ = [("x", _p), ("out", _p), ("S", _i64), ("C", _i64), ("h", _i64), ("w", _i64)]
    _fields_ += [(n, _i64 * MERGE_MAX_SCALES) for n in ("rows", "cols", "tile0")]
    _fields_ += [("dtype", _i32)]


class MergeCompressArgs(ctypes.Structure):
    _fields_ = [("m", MultiscaleMergeArgs), ("out", _p), ("ln_weight", _p), ("ln_bias", _p), ("k", _i64)]
    _fields_ += [("eps", _f32)]


MERGE_PIECE_BYTES = 44  # sizeof(MergePieceSrc): 11 int32
TILE_MAX_SCALES = 8  # kTileMaxScales


class MultiscaleTileArgs(ctypes.Structure):
    _fields_ = [("image", _p), ("out", _p), ("H", _i64), ("W", _i64), ("T", _i64), ("S", _i64)]
    _fields_ += [(n, _i64 * TILE_MAX_SCALES) for n in ("rows", "cols", "tile0", "xoff", "yoff")]
    _fields_ += [("vfirst", ctypes.c_bool * TILE_MAX_SCALES)]
    _fields_ += [(n, _p) for n in ("xbounds", "xweights", "ybounds", "yweights")]
    _fields_ += [("KX", _i64), ("KY", _i64), ("mean", _f32 * 3), ("std", _f32 * 3), ("exact", ctypes.c_bool)]
    _fields_ += [("dtype", _i32)]


class Fp8QuantizeArgs(ctypes.Structure):
    _fields_ = [("x", _p), ("dtype", _i32), ("n", _i64), ("scale", _p), ("scale_out", _p), ("workspace", _p)]
    _fields_ += [("q", _p), ("format", _i32)]


class Fp8GemmArgs(ctypes.Structure):
    _fields_ = [("a", _p), ("b", _p), ("scale_a", _p), ("scale_b", _p), ("bias", _p), ("out", _p)]
    _fields_ += [("out_dtype", _i32), ("M", _i64), ("N", _i64), ("K", _i64)]


# ---- launch planners: mirrors of <op>_launch_config (csrc/include/nvila) --------------


class LaunchTarget(NamedTuple):
    cc: int  # major * 10 + minor
    max_dynamic_smem: int
    sm90a: int  # 1: compiled with sm_90a code


class LaunchConfig(NamedTuple):
    grid_x: int  # 0: nothing to launch
    grid_y: int
    block: int
    smem: int
    variant: tuple[int, int, int]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _aligned16(*ptrs: int | None) -> bool:
    return all((p or 0) % 16 == 0 for p in ptrs)


def _vec(dtype: int, sizes: tuple[int, ...], ptrs: tuple[int | None, ...]) -> int:
    """Elements per 16-byte access when every size/stride is a multiple and the pointers aligned, else 1."""
    v = 16 // DTYPE_SIZES[dtype]
    return v if all(s % v == 0 for s in sizes) and _aligned16(*ptrs) else 1


def _config(grid_x=0, grid_y=1, block=0, smem=0, variant=()) -> LaunchConfig:
    return LaunchConfig(grid_x, grid_y, block, smem, (tuple(variant) + (0, 0, 0))[:3])


def spatial_compress_config(a: SpatialCompressArgs, t: LaunchTarget) -> LaunchConfig:
    vec = _vec(a.dtype, (a.C, a.sB, a.sH, a.sW), (a.x, a.out))
    rows = a.B * _cdiv(a.H, a.k) * _cdiv(a.W, a.k)
    D = a.k * a.k * a.C
    if a.ln_weight is None:
        variant, smem = 0, 0  # kLayerNormNone (csrc/include/nvila/layernorm.h)
    elif D * 4 <= t.max_dynamic_smem:
        variant, smem = 1, D * 4  # kLayerNormCached: the row as fp32 in shared memory
    else:
        variant, smem = 2, 0  # kLayerNormUncached
    if rows == 0:
        return _config(variant=(vec,))
    block = 32
    while block < 256 and block * 2 <= D // vec:
        block *= 2
    return _config(min(rows, 1 << 30), 1, block, smem, (vec, variant))


def temporal_pool_config(a: TemporalPoolArgs, t: LaunchTarget) -> LaunchConfig:
    vec = _vec(a.dtype, (a.N, a.sT), (a.x, a.out))
    total = (a.T // a.group) * (a.N // vec)
    return _config(min(_cdiv(total, 256), 65536 * 8), 1, 256, 0, (vec,)) if total else _config(variant=(vec,))


def multiscale_merge_config(a: MultiscaleMergeArgs, t: LaunchTarget) -> LaunchConfig:
    S, H, W = a.S, a.rows[a.S - 1] * a.h, a.cols[a.S - 1] * a.w
    jobs = S * _cdiv(a.C, 32) * H * _cdiv(W, 32)
    if jobs == 0:
        return _config()
    tokens = (a.tile0[S - 1] + a.rows[S - 1] * a.cols[S - 1]) * a.h * a.w
    span = max(max((H + 1) * a.rows[s] * a.h, (W + 1) * a.cols[s] * a.w) for s in range(S))
    if jobs >= 1 << 31 or tokens >= 1 << 31 or span >= 1 << 32:
        return _config(1 << 31, 1, 256)  # beyond the kernel's 32-bit indexing: not launchable
    return _config(min(jobs, 65536 * 8), 1, 256)


def merge_compress_config(a: MergeCompressArgs, t: LaunchTarget) -> LaunchConfig:
    m, k = a.m, a.k
    vec = _vec(m.dtype, (m.C,), (m.x, a.out))
    D = k * k * m.S * m.C
    table, row = k * k * m.S * MERGE_PIECE_BYTES, D * 4
    if a.ln_weight is None:
        variant, smem = 0, table  # kLayerNormNone
    elif table + row <= t.max_dynamic_smem:
        variant, smem = 1, table + row  # kLayerNormCached
    else:
        variant, smem = 2, table  # kLayerNormUncached
    tokens = m.rows[m.S - 1] * _cdiv(m.h, k) * m.cols[m.S - 1] * _cdiv(m.w, k)
    if tokens == 0:
        return _config(variant=(vec, variant))
    block = 32
    while block < 256 and block * 2 <= D // vec:
        block *= 2
    n_tiles = m.tile0[m.S - 1] + m.rows[m.S - 1] * m.cols[m.S - 1]
    if table > t.max_dynamic_smem or n_tiles > (1 << 31) // (m.h * m.w):
        return _config(1 << 31, 1, block, 0, (vec, variant))  # not launchable
    return _config(min(tokens, 1 << 30), 1, block, smem, (vec, variant))


def multiscale_tile_config(a: MultiscaleTileArgs, t: LaunchTarget) -> LaunchConfig:
    exact = 1 if a.exact else 0
    total = (a.tile0[a.S - 1] + a.rows[a.S - 1] * a.cols[a.S - 1]) * a.T * a.T
    return _config(min(_cdiv(total, 256), 65536 * 8), 1, 256, 0, (exact,)) if total else _config(variant=(exact,))


def fp8_quantize_config(a: Fp8QuantizeArgs, t: LaunchTarget) -> LaunchConfig:
    dynamic = 0 if a.scale else 1
    return _config(min(_cdiv(a.n, 256), 4096), 1, 256, 0, (dynamic,)) if a.n else _config(variant=(dynamic,))


def fp8_gemm_config(a: Fp8GemmArgs, t: LaunchTarget) -> LaunchConfig:
    aligned = int(a.K % 16 == 0 and _aligned16(a.a, a.b))
    wgmma = int(bool(t.sm90a) and t.cc == 90)
    if a.M == 0 or a.N == 0:
        return _config(variant=(aligned, wgmma))
    bm, bn = (64, 128) if wgmma else (64, 64)  # fp8_gemm_tiles
    smem = 3 * (64 + 128) * 64 + 1024 if wgmma else 0
    return _config(_cdiv(a.N, bn) * _cdiv(a.M, bm), 1, 128, smem, (aligned, wgmma))  # 1-D, N tiles fastest


def grid_ok(c: LaunchConfig) -> bool:
    return c.grid_x <= 0x7FFFFFFF and c.grid_y <= 65535


# ---- the ops: struct, planner, kernels, tensors -> struct ----------------------------
# The argument builders keep what csrc/torch/args.h keeps: the checks that make a raw
# call of an op memory-safe (the arguments themselves are validated in functional.py).


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise RuntimeError(msg)


def _dtype(t: torch.Tensor, name: str) -> int:
    _check(t.dtype in DTYPE_CODES, f"{name}: expected float32, float16 or bfloat16, got {t.dtype}")
    return DTYPE_CODES[t.dtype]


def _out(out: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> int:
    _check(
        out.is_contiguous() and tuple(out.shape) == shape and out.dtype == dtype and out.device == device,
        f"out: expected a contiguous {dtype} tensor of shape {shape} on {device}, got {out.dtype} "
        f"{tuple(out.shape)} on {out.device}",
    )
    return out.data_ptr()


def _ptr(t: torch.Tensor | None, ref: torch.Tensor, name: str) -> int | None:
    if t is None:
        return None
    _check(t.device == ref.device, f"{name}: expected device {ref.device}, got {t.device}")
    return t.data_ptr()


def spatial_compress_args(x, k, ln_weight, ln_bias, eps, out):
    _check(x.dim() == 4 and (x.size(3) == 1 or x.stride(3) == 1), "x: expected (B, H, W, C) with channel stride 1")
    _check(k >= 1, f"k: expected k >= 1, got {k}")
    B, H, W, C = x.shape
    D = k * k * C
    for name, t in (("ln_weight", ln_weight), ("ln_bias", ln_bias)):
        _check(
            t is None or (t.dtype == torch.float32 and tuple(t.shape) == (D,) and t.is_contiguous()),
            f"{name}: expected a contiguous float32 tensor of shape ({D},)",
        )
    shape = (B, _cdiv(H, k), _cdiv(W, k), D)
    return SpatialCompressArgs(
        x.data_ptr(), _out(out, shape, x.dtype, x.device), _ptr(ln_weight, x, "ln_weight"),
        _ptr(ln_bias, x, "ln_bias"), B, H, W, C, k, *x.stride()[:3], eps, _dtype(x, "x"),
    )  # fmt: skip


def temporal_pool_args(x, group, out):
    _check(group >= 1 and x.dim() >= 1, "group: expected group >= 1")
    _check(x.numel() > 0 and (x.dim() == 1 or x[0].is_contiguous()), "x: expected non-empty contiguous frames")
    T = x.size(0)
    _out(out, (T // group, *x.shape[1:]), x.dtype, x.device)
    return TemporalPoolArgs(x.data_ptr(), out.data_ptr(), T, x.numel() // T, group, x.stride(0), _dtype(x, "x"))


def _merge_plan(x, scale_rows, scale_cols, h, w) -> MultiscaleMergeArgs:
    """The plan part of the merge structs (out unset): csrc/torch/args.h merge_plan_args."""
    S = len(scale_rows)
    _check(1 <= S <= MERGE_MAX_SCALES and len(scale_cols) == S, f"scale_rows: expected 1 to {MERGE_MAX_SCALES} scales")
    _check(h >= 1 and w >= 1 and min(scale_rows) >= 1 and min(scale_cols) >= 1, "h, w, scales: expected ints >= 1")
    tile0, n = [], 0
    for r, c in zip(scale_rows, scale_cols, strict=True):
        tile0.append(n)
        n += r * c
    _check(
        x.dim() == 3 and tuple(x.shape[:2]) == (n, h * w) and x.size(2) >= 1 and x.is_contiguous(),
        f"features: expected a contiguous ({n}, {h * w}, C) tensor, got {tuple(x.shape)}",
    )
    pad = [0] * (MERGE_MAX_SCALES - S)
    arr = _i64 * MERGE_MAX_SCALES
    return MultiscaleMergeArgs(
        x.data_ptr(), None, S, x.size(2), h, w, arr(*scale_rows, *pad), arr(*scale_cols, *pad), arr(*tile0, *pad),
        _dtype(x, "features"),
    )  # fmt: skip


def multiscale_merge_args(x, scale_rows, scale_cols, h, w, out):
    m = _merge_plan(x, scale_rows, scale_cols, h, w)
    m.out = _out(out, (m.S * m.C, scale_rows[-1] * h, scale_cols[-1] * w), x.dtype, x.device)
    return m


def merge_compress_args(x, scale_rows, scale_cols, h, w, k, ln_weight, ln_bias, eps, out):
    _check(k >= 1, f"k: expected k >= 1, got {k}")
    m = _merge_plan(x, scale_rows, scale_cols, h, w)
    D = k * k * m.S * m.C
    tokens = scale_rows[-1] * _cdiv(h, k) * scale_cols[-1] * _cdiv(w, k)
    for name, t in (("ln_weight", ln_weight), ("ln_bias", ln_bias)):
        _check(
            t is None or (t.dtype == torch.float32 and tuple(t.shape) == (D,) and t.is_contiguous()),
            f"{name}: expected a contiguous float32 tensor of shape ({D},)",
        )
    return MergeCompressArgs(
        m, _out(out, (tokens, D), x.dtype, x.device), _ptr(ln_weight, x, "ln_weight"), _ptr(ln_bias, x, "ln_bias"),
        k, eps,
    )  # fmt: skip


def _tile_coeffs(bounds, weights, n: int, ref, bname: str, wname: str) -> int:
    """K of one direction's coefficients (csrc/torch/args.h tile_coeffs; bounds values are checked on the CPU only)."""
    _check(
        bounds.dtype == torch.int32 and tuple(bounds.shape) == (n, 2) and bounds.is_contiguous()
        and bounds.device == ref.device,
        f"{bname}: expected a contiguous int32 tensor of shape ({n}, 2) on {ref.device}, got {bounds.dtype} "
        f"{tuple(bounds.shape)} on {bounds.device}",
    )  # fmt: skip
    _check(
        weights.dtype == torch.int32 and weights.dim() == 2 and weights.size(0) == n and weights.size(1) >= 1
        and weights.is_contiguous() and weights.device == ref.device,
        f"{wname}: expected a contiguous int32 tensor of shape ({n}, K) on {ref.device}, got {weights.dtype} "
        f"{tuple(weights.shape)} on {weights.device}",
    )  # fmt: skip
    return weights.size(1)


def multiscale_tile_args(
    image, scale_rows, scale_cols, vertical_first, xbounds, xweights, ybounds, yweights, mean, std, exact, out
):
    _check(
        image.dtype == torch.uint8 and image.dim() == 3 and image.size(2) == 3 and image.numel() > 0
        and image.is_contiguous(),
        f"image: expected a contiguous non-empty uint8 tensor of shape (H, W, 3), got {image.dtype} "
        f"{tuple(image.shape)}",
    )  # fmt: skip
    S = len(scale_rows)
    _check(1 <= S <= TILE_MAX_SCALES, f"scale_rows: expected 1 to {TILE_MAX_SCALES} scales, got {S}")
    _check(len(scale_cols) == S and len(vertical_first) == S, f"scale_cols, vertical_first: expected {S} scales")
    _check(min(scale_rows) >= 1 and min(scale_cols) >= 1, "scale_rows, scale_cols: expected ints >= 1")
    _check(len(mean) == 3 and len(std) == 3, "mean, std: expected 3 values each")
    _check(
        out.dim() == 4 and out.size(1) == 3 and out.size(2) == out.size(3) >= 1,
        f"out: expected shape (n_tiles, 3, T, T), got {tuple(out.shape)}",
    )
    T = out.size(3)
    tiles = [r * c for r, c in zip(scale_rows, scale_cols, strict=True)]
    tile0 = [sum(tiles[:s]) for s in range(S)]
    xoff = [sum(scale_cols[:s]) * T for s in range(S)]
    yoff = [sum(scale_rows[:s]) * T for s in range(S)]
    dtype = _dtype(out, "out")
    _out(out, (sum(tiles), 3, T, T), out.dtype, image.device)
    KX = _tile_coeffs(xbounds, xweights, sum(scale_cols) * T, image, "xbounds", "xweights")
    KY = _tile_coeffs(ybounds, yweights, sum(scale_rows) * T, image, "ybounds", "yweights")
    pad = [0] * (TILE_MAX_SCALES - S)
    arr = _i64 * TILE_MAX_SCALES
    return MultiscaleTileArgs(
        image.data_ptr(), out.data_ptr(), image.size(0), image.size(1), T, S, arr(*scale_rows, *pad),
        arr(*scale_cols, *pad), arr(*tile0, *pad), arr(*xoff, *pad), arr(*yoff, *pad),
        (ctypes.c_bool * TILE_MAX_SCALES)(*vertical_first, *[False] * len(pad)), xbounds.data_ptr(),
        xweights.data_ptr(), ybounds.data_ptr(), yweights.data_ptr(), KX, KY, (_f32 * 3)(*mean), (_f32 * 3)(*std),
        exact, dtype,
    )  # fmt: skip


def _scale(s: torch.Tensor, ref: torch.Tensor, name: str) -> int:
    _check(s.dtype == torch.float32 and s.numel() == 1, f"{name}: expected a float32 tensor with one element")
    return _ptr(s, ref, name)


def fp8_quantize_args(x, scale, q, scale_out):
    _check(x.is_contiguous() and x.numel() > 0, "x: expected a non-empty contiguous tensor")
    _check(q.dtype in FP8_FORMATS, f"q: expected float8_e4m3fn or float8_e5m2, got {q.dtype}")
    _check(q.is_contiguous() and q.numel() == x.numel() and q.device == x.device, "q: expected x's size and device")
    # the amax workspace, zeroed here on the current stream (the C++ launcher's cudaMemsetAsync)
    workspace = torch.zeros(1, dtype=torch.float32, device=x.device) if scale is None else None
    a = Fp8QuantizeArgs(
        x.data_ptr(), _dtype(x, "x"), x.numel(), None if scale is None else _scale(scale, x, "scale"),
        _scale(scale_out, x, "scale_out"), None if workspace is None else workspace.data_ptr(), q.data_ptr(),
        FP8_FORMATS[q.dtype],
    )  # fmt: skip
    a.keepalive = workspace  # until the launch is queued (the caching allocator orders its reuse)
    return a


def fp8_gemm_args(a, b, scale_a, scale_b, bias, out):
    for name, t in (("a", a), ("b", b)):
        _check(t.dtype == torch.float8_e4m3fn and t.dim() == 2 and t.is_contiguous(), f"{name}: expected 2-D e4m3")
    _check(b.size(1) == a.size(1) and b.device == a.device, f"b: expected (N, {a.size(1)}) on {a.device}")
    M, K = a.shape
    N = b.size(0)
    _check(out.dtype in DTYPE_CODES, f"out: expected float32, float16 or bfloat16, got {out.dtype}")
    _out(out, (M, N), out.dtype, a.device)
    _check(
        bias is None or (bias.dtype == torch.float32 and tuple(bias.shape) == (N,) and bias.is_contiguous()),
        f"bias: expected a contiguous float32 tensor of shape ({N},)",
    )
    return Fp8GemmArgs(
        a.data_ptr(), b.data_ptr(), _scale(scale_a, a, "scale_a"), _scale(scale_b, a, "scale_b"),
        _ptr(bias, a, "bias"), out.data_ptr(), DTYPE_CODES[out.dtype], M, N, K,
    )  # fmt: skip


NS = "nvila::cuda::"
_T = range(len(CTYPE_NAMES))  # DType codes


def _bool(v: int) -> str:
    return "true" if v else "false"


@dataclass(frozen=True)
class Op:
    source: str  # csrc/cuda/<source>
    args: type[ctypes.Structure]
    plan: Callable[[ctypes.Structure, LaunchTarget], LaunchConfig]
    # the kernels one call launches, in order, by (args, plan): name expressions
    kernels: Callable[[ctypes.Structure, LaunchConfig], list[str]]
    instantiations: tuple[str, ...]  # every name `kernels` may return (compiled together)
    make_args: Callable[..., ctypes.Structure]  # the op's schema arguments -> args struct


def _sc_kernel(t: int, vec: int, variant: int) -> str:
    return f"{NS}spatial_compress_kernel<{CTYPE_NAMES[t]}, {vec}, {_bool(variant)}, {_bool(variant == 1)}>"


def _mc_kernel(t: int, vec: int, variant: int) -> str:
    return f"{NS}merge_compress_kernel<{CTYPE_NAMES[t]}, {vec}, {_bool(variant)}, {_bool(variant == 1)}>"


def _tile_kernel(exact: int, t: int) -> str:
    return f"{NS}multiscale_tile_kernel<{_bool(exact)}, {CTYPE_NAMES[t]}>"


def _q_kernels(t: int, fmt: int, dynamic: int) -> list[str]:
    amax = [f"{NS}fp8_amax_kernel<{CTYPE_NAMES[t]}>"] if dynamic else []
    return amax + [f"{NS}fp8_quantize_kernel<{CTYPE_NAMES[t]}, {FP8_FORMAT_NAMES[fmt]}>"]


def _gemm_kernel(t: int, aligned: int, wgmma: int) -> str:
    return f"{NS}fp8_gemm{'_wgmma' if wgmma else ''}_kernel<{CTYPE_NAMES[t]}, {_bool(aligned)}>"


def _vecs(t: int) -> tuple[int, int]:
    return (1, 16 // DTYPE_SIZES[t])


OPS: dict[str, Op] = {
    "spatial_compress": Op(
        "spatial_compress.cu", SpatialCompressArgs, spatial_compress_config,
        lambda a, c: [_sc_kernel(a.dtype, c.variant[0], c.variant[1])],
        tuple(_sc_kernel(t, v, var) for t in _T for v in _vecs(t) for var in range(3)),
        spatial_compress_args,
    ),
    "temporal_pool": Op(
        "temporal_pool.cu", TemporalPoolArgs, temporal_pool_config,
        lambda a, c: [f"{NS}temporal_pool_kernel<{CTYPE_NAMES[a.dtype]}, {c.variant[0]}>"],
        tuple(f"{NS}temporal_pool_kernel<{CTYPE_NAMES[t]}, {v}>" for t in _T for v in _vecs(t)),
        temporal_pool_args,
    ),
    "multiscale_merge": Op(
        "multiscale_merge.cu", MultiscaleMergeArgs, multiscale_merge_config,
        lambda a, c: [f"{NS}multiscale_merge_kernel<{CTYPE_NAMES[a.dtype]}>"],
        tuple(f"{NS}multiscale_merge_kernel<{CTYPE_NAMES[t]}>" for t in _T),
        multiscale_merge_args,
    ),
    "merge_compress": Op(
        "merge_compress.cu", MergeCompressArgs, merge_compress_config,
        lambda a, c: [_mc_kernel(a.m.dtype, c.variant[0], c.variant[1])],
        tuple(_mc_kernel(t, v, var) for t in _T for v in _vecs(t) for var in range(3)),
        merge_compress_args,
    ),
    "multiscale_tile": Op(
        "multiscale_tile.cu", MultiscaleTileArgs, multiscale_tile_config,
        lambda a, c: [_tile_kernel(c.variant[0], a.dtype)],
        tuple(_tile_kernel(e, t) for e in (0, 1) for t in _T),
        multiscale_tile_args,
    ),
    "fp8_quantize": Op(
        "fp8_quantize.cu", Fp8QuantizeArgs, fp8_quantize_config,
        lambda a, c: _q_kernels(a.dtype, a.format, c.variant[0]),
        tuple(dict.fromkeys(k for t in _T for f in (0, 1) for k in _q_kernels(t, f, 1))),
        fp8_quantize_args,
    ),
    "fp8_gemm": Op(
        "fp8_gemm.cu", Fp8GemmArgs, fp8_gemm_config,
        lambda a, c: [_gemm_kernel(a.out_dtype, c.variant[0], c.variant[1])],
        tuple(_gemm_kernel(t, al, wg) for t in _T for al in (0, 1) for wg in (0, 1)),
        fp8_gemm_args,
    ),
}  # fmt: skip


# ---- NVRTC -------------------------------------------------------------------------

_lock = threading.RLock()
stats = {"compiles": 0}  # NVRTC compilations done by this process (the tests count them)


def _nvrtc():
    from cuda.bindings import nvrtc

    return nvrtc


def _driver():
    from cuda.bindings import driver

    return driver


def nvrtc_version() -> tuple[int, int]:
    nvrtc = _nvrtc()
    err, major, minor = nvrtc.nvrtcVersion()
    _nvrtc_check(err, "nvrtcVersion")
    return major, minor


def _nvrtc_check(err, what: str, log: str = "") -> None:
    if int(err) != 0:
        raise RuntimeError(f"NVRTC {what} failed: {err!r}" + (f"\n{log}" if log else ""))


def _sources(src_dir: Path) -> dict[str, bytes]:
    """Every file a kernel may include, by path relative to src_dir (hashed into the cache key)."""
    files = sorted([*src_dir.glob("cuda/*.cu"), *src_dir.glob("cuda/*.cuh"), *src_dir.glob("cuda/*.h")])
    files += sorted(src_dir.glob("include/nvila/*.h"))
    return {str(f.relative_to(src_dir)): f.read_bytes() for f in files}


def _options(arch: str, src_dir: Path) -> list[str]:
    # -default-device: the headers' unannotated inline helpers (launch planners, launcher
    # declarations) are taken as device functions, which NVRTC allows, and never called
    return [
        "--std=c++20",
        f"--gpu-architecture=sm_{arch}",
        "-default-device",
        f"-I{src_dir / 'include'}",
        f"-I{src_dir / 'cuda'}",
    ]


def _key(source: str, arch: str, src_dir: Path, names: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for part in (source, arch, *_options(arch, Path()), *names, repr(nvrtc_version())):
        h.update(part.encode() + b"\0")
    for rel, text in _sources(src_dir).items():
        h.update(rel.encode() + b"\0" + text + b"\0")
    return h.hexdigest()[:20]


def _compile(source: str, arch: str, src_dir: Path, names: tuple[str, ...]) -> tuple[bytes, dict[str, str]]:
    """NVRTC-compiles csrc/cuda/<source> for sm_<arch>: (cubin, {name expression: lowered name})."""
    nvrtc = _nvrtc()
    path = src_dir / "cuda" / source
    err, prog = nvrtc.nvrtcCreateProgram(path.read_bytes(), str(path).encode(), 0, [], [])
    _nvrtc_check(err, "nvrtcCreateProgram")
    try:
        for n in names:
            _nvrtc_check(nvrtc.nvrtcAddNameExpression(prog, n.encode())[0], f"nvrtcAddNameExpression({n})")
        opts = [o.encode() for o in _options(arch, src_dir)]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        _nvrtc_check(err, f"compiling {path} for sm_{arch}", log.decode(errors="replace").rstrip("\0 "))
        _, size = nvrtc.nvrtcGetCUBINSize(prog)
        cubin = b" " * size
        _nvrtc_check(nvrtc.nvrtcGetCUBIN(prog, cubin)[0], "nvrtcGetCUBIN")
        lowered = {}
        for n in names:
            err, low = nvrtc.nvrtcGetLoweredName(prog, n.encode())
            _nvrtc_check(err, f"nvrtcGetLoweredName({n})")
            lowered[n] = low.decode()
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    stats["compiles"] += 1
    return cubin, lowered


def cubin(source: str, arch: str, src_dir: Path | None = None) -> tuple[Path, dict[str, str]]:
    """The cached cubin of csrc/cuda/<source> for sm_<arch> (compiled on a miss), and its
    kernels' lowered names: <cache>/<stem>-<hash>-sm<arch>.cubin (+ .json)."""
    src_dir = src_dir or source_dir()
    names = tuple(n for op in OPS.values() if op.source == source for n in op.instantiations)
    key = _key(source, arch, src_dir, names)
    path = cache_dir() / f"{Path(source).stem}-{key}-sm{arch}.cubin"
    meta = path.with_suffix(".json")
    with _lock:
        if path.exists() and meta.exists():
            return path, json.loads(meta.read_text())
        data, lowered = _compile(source, arch, src_dir, names)
        path.parent.mkdir(parents=True, exist_ok=True)
        for dst, blob in ((path, data), (meta, json.dumps(lowered, indent=1).encode())):
            tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, dst)  # atomic: concurrent processes never read half a file
        return path, lowered


# ---- driver API: load and launch ---------------------------------------------------


def _cu_check(err, what: str) -> None:
    if int(err) != 0:
        raise RuntimeError(f"CUDA driver {what} failed: {err!r}")


def arch_for(cc: tuple[int, int]) -> str:
    """The NVRTC target for a device: its own arch ('90a' on Hopper, for wgmma), else the newest
    arch NVRTC supports of the same major version (cubins run on later minors)."""
    nvrtc = _nvrtc()
    err, supported = nvrtc.nvrtcGetSupportedArchs()
    _nvrtc_check(err, "nvrtcGetSupportedArchs")
    want = 10 * cc[0] + cc[1]
    ok = [a for a in supported if a // 10 == cc[0] and a <= want]
    if not ok:
        raise RuntimeError(f"NVRTC {nvrtc_version()} cannot compile for compute capability {cc[0]}.{cc[1]}")
    arch = max(ok)
    return f"{arch}a" if arch == 90 else str(arch)


_devices: dict[int, tuple] = {}  # device index -> (context, arch, LaunchTarget)
_functions: dict[tuple[int, str], object] = {}  # (device, name expression) -> CUfunction
_modules: dict[tuple[int, str], tuple] = {}  # (device, source) -> (CUmodule, lowered names)


def _device(index: int) -> tuple:
    with _lock:
        if index not in _devices:
            driver = _driver()
            _cu_check(driver.cuInit(0)[0], "cuInit")
            err, dev = driver.cuDeviceGet(index)
            _cu_check(err, "cuDeviceGet")
            err, ctx = driver.cuDevicePrimaryCtxRetain(dev)  # the context torch's runtime uses
            _cu_check(err, "cuDevicePrimaryCtxRetain")
            cc = torch.cuda.get_device_capability(index)
            arch = arch_for(cc)
            smem = torch.cuda.get_device_properties(index).shared_memory_per_block_optin
            _devices[index] = (ctx, arch, LaunchTarget(10 * cc[0] + cc[1], smem, int(arch == "90a")))
        return _devices[index]


def _function(index: int, source: str, name: str):
    with _lock:
        fn = _functions.get((index, name))
        if fn is not None:
            return fn
        driver = _driver()
        ctx, arch, _ = _device(index)
        _cu_check(driver.cuCtxSetCurrent(ctx)[0], "cuCtxSetCurrent")
        if (index, source) not in _modules:
            path, lowered = cubin(source, arch)
            err, module = driver.cuModuleLoadData(path.read_bytes())
            _cu_check(err, f"cuModuleLoadData({path})")
            _modules[index, source] = (module, lowered)
        module, lowered = _modules[index, source]
        err, fn = driver.cuModuleGetFunction(module, lowered[name].encode())
        _cu_check(err, f"cuModuleGetFunction({name})")
        _functions[index, name] = fn
        return fn


def launch(op_name: str, args: ctypes.Structure, device: torch.device) -> None:
    """Launches op_name's kernels as planned for `args` on torch's current stream of `device`."""
    op = OPS[op_name]
    index = device.index if device.index is not None else torch.cuda.current_device()
    ctx, _, target = _device(index)
    c = op.plan(args, target)
    if c.grid_x == 0:
        return
    if not grid_ok(c):
        raise RuntimeError(f"{op_name}: grid ({c.grid_x}, {c.grid_y}) exceeds CUDA's limits")
    driver = _driver()
    stream = driver.CUstream(torch.cuda.current_stream(index).cuda_stream)
    params = (ctypes.c_void_p * 1)(ctypes.addressof(args))  # one kernel parameter: the struct, by value
    for name in op.kernels(args, c):
        fn = _function(index, op.source, name)
        _cu_check(driver.cuCtxSetCurrent(ctx)[0], "cuCtxSetCurrent")
        if c.smem > 48 * 1024:
            attr = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
            _cu_check(driver.cuFuncSetAttribute(fn, attr, c.smem)[0], "cuFuncSetAttribute")
        err = driver.cuLaunchKernel(
            fn, c.grid_x, c.grid_y, 1, c.block, 1, 1, c.smem, stream, ctypes.addressof(params), 0
        )[0]  # fmt: skip
        _cu_check(err, f"cuLaunchKernel({name})")


# ---- availability and registration -------------------------------------------------


def unavailable_reason() -> str | None:
    """None if the NVRTC path can serve CUDA tensors here (GPU aside), else why not. Cheap: NVRTC
    itself is loaded at the first launch (a missing libnvrtc is reported then)."""
    if torch.version.cuda is None:
        return "this torch is a CPU-only build"
    if importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None:
        return "cuda-python is not installed (pip install cuda-python, or nvila-kernels[nvrtc])"
    if not (source_dir() / "cuda").is_dir():
        return f"the CUDA sources are not installed (looked in {source_dir()})"
    return None


def impl(op_name: str):
    """The Python implementation of nvila::<op_name>_cuda (same arguments as the op)."""
    op = OPS[op_name]

    def run(*schema_args) -> None:
        args = op.make_args(*schema_args)
        device = schema_args[0].device
        _check(device.type == "cuda", f"x: expected a CUDA tensor, got {device}")
        with torch.cuda.device(device):
            launch(op_name, args, device)

    run.__name__ = f"{op_name}_cuda_nvrtc"
    return run


def register(lib: torch.library.Library) -> None:
    """Python CUDA-key implementations of nvila::<op>_cuda (only when _C has no CUDA kernels)."""
    for name in OPS:
        lib.impl(f"{name}_cuda", impl(name), "CUDA")
