"""Triton kernels of fp8_quantize and fp8_gemm (per-tensor scales, W8A8).

fp8_quantize runs as up to two launches, with no host sync:
  1. (dynamic only) `_amax_kernel`: each program reduces a block of |x| over the
     finite elements and atomic-maxes it into a float32 workspace (zeroed first);
  2. `_quantize_kernel`: each program reads the amax (or the static scale), forms
     scale = max(amax, 1e-12) / fp8_max with IEEE division (as the reference),
     and writes q = saturate(x / scale); program 0 also writes scale_out. q is
     written through a uint8 view (its bits): Triton has no FP8 pointer types
     before sm_89, and the bits are what the encoder produces.
The FP8 encoding is done either by the hardware conversion (cvt.rn.satfinite,
sm_89+; same values as torch, though a NaN's sign bit may differ) or by
`_fp8_encode`, an integer-only round-to-nearest-even encoder that is bit-exact
with torch's cast. The encoder is what runs under the Triton interpreter (whose
own fp8 cast does not round to nearest even and does not saturate) and on GPUs
before sm_89, which have no FP8 conversion instruction.

fp8_gemm is a tiled tl.dot on float8e4nv operands with fp32 accumulation: a is
(M, K) row-major, b is (N, K) row-major (nn.Linear layout), so both tiles are
K-major, the layout sm_90 wgmma wants for FP8. Epilogue: acc * (scale_a * scale_b)
+ bias in fp32, cast to the output dtype. Program ids are grouped along M
(GROUP_M) so that consecutive programs share tiles of b in L2.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference import FP8_AMAX_FLOOR
from ._register import INTERPRET, kernel_op, launcher

_QUANT_BLOCK = 2048
# (mantissa bits, exponent bias) of each FP8 format
_FP8_FORMATS = {torch.float8_e4m3fn: (3, 7), torch.float8_e5m2: (2, 15)}


@triton.jit
def _amax_kernel(x_ptr, amax_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n, other=0.0).to(tl.float32)
    ax = tl.abs(x)
    ax = tl.where(ax < float("inf"), ax, 0.0)  # NaN and +-inf do not count
    tl.atomic_max(amax_ptr, tl.max(ax, axis=0))


@triton.jit
def _fp8_encode(y, MANT: tl.constexpr, BIAS: tl.constexpr):
    """Bits (int32 in [0, 255]) of the FP8 value nearest to y (ties to even).

    y: float32 with |y| <= fp8 max or NaN. FP8 layout: sign | exponent | MANT bits,
    exponent bias BIAS, NaN encoded as sign | 0x7F (as torch does).
    """
    u = y.to(tl.int32, bitcast=True)
    sign = (u >> 24) & 0x80
    a = u & 0x7FFFFFFF
    exp = a >> 23  # biased fp32 exponent
    drop = 23 - MANT  # fp32 mantissa bits dropped in the normal range
    # normal range (exp - 127 >= 1 - BIAS): round the fp32 bits, then re-bias.
    # A carry out of the mantissa correctly bumps the exponent.
    r = a + ((1 << (drop - 1)) - 1) + ((a >> drop) & 1)
    normal = (r >> drop) - ((127 - BIAS) << MANT)
    # subnormal range: integer multiple of 2^(1 - BIAS - MANT), rounded to even;
    # a result of 1 << MANT is the smallest normal, which encodes the same way.
    mant = (a & 0x7FFFFF) | 0x800000
    shift = tl.minimum(drop + (1 - BIAS + 127) - exp, 31)
    shift = tl.maximum(shift, 1)  # only used where exp is in the subnormal range (shift > drop)
    q = mant >> shift
    rem = mant & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    q += ((rem > half) | ((rem == half) & ((q & 1) == 1))).to(tl.int32)
    bits = tl.where(exp >= 127 + 1 - BIAS, normal, q)
    bits = tl.where(a > 0x7F800000, 0x7F, bits)  # NaN
    return sign | bits


@triton.jit
def _quantize_kernel(
    x_ptr,
    scale_ptr,
    q_ptr,
    scale_out_ptr,
    n,
    FP8_MAX: tl.constexpr,
    AMAX_FLOOR: tl.constexpr,
    MANT: tl.constexpr,
    BIAS: tl.constexpr,
    DYNAMIC: tl.constexpr,
    HW_CVT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    s = tl.load(scale_ptr)
    if DYNAMIC:  # scale_ptr holds amax
        s = tl.math.div_rn(tl.maximum(s, AMAX_FLOOR), FP8_MAX)
    if pid == 0:
        tl.store(scale_out_ptr, s)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = tl.math.div_rn(x, s)
    y = tl.clamp(y, -FP8_MAX, FP8_MAX, propagate_nan=tl.PropagateNan.ALL)
    if HW_CVT:
        if MANT == 3:
            bits = y.to(tl.float8e4nv).to(tl.uint8, bitcast=True)
        else:
            bits = y.to(tl.float8e5).to(tl.uint8, bitcast=True)
    else:
        bits = _fp8_encode(y, MANT, BIAS).to(tl.uint8)
    tl.store(q_ptr + offs, bits, mask=mask)


def _capability(device: torch.device) -> tuple[int, int]:
    """The CUDA compute capability of `device`; (9, 0) under the interpreter (tile choice only)."""
    return torch.cuda.get_device_capability(device) if device.type == "cuda" else (9, 0)


def _hardware_fp8_cvt(device: torch.device) -> bool:
    """Whether the compiled kernel may use the FP8 conversion instruction (sm_89+)."""
    return not INTERPRET and device.type == "cuda" and _capability(device) >= (8, 9)


@kernel_op("fp8_quantize")
def fp8_quantize_triton(x: torch.Tensor, scale: torch.Tensor | None, q: torch.Tensor, scale_out: torch.Tensor) -> None:
    n = x.numel()
    mant, bias = _FP8_FORMATS[q.dtype]
    grid = (triton.cdiv(n, _QUANT_BLOCK),)
    dynamic = scale is None
    if dynamic:
        amax = torch.zeros((), dtype=torch.float32, device=x.device)
        launcher(_amax_kernel)[grid](x, amax, n, BLOCK=_QUANT_BLOCK, num_warps=8)
        scale = amax
    launcher(_quantize_kernel)[grid](
        x,
        scale,
        q.view(torch.uint8),  # the bits: FP8 pointer types do not exist before sm_89
        scale_out,
        n,
        FP8_MAX=torch.finfo(q.dtype).max,
        AMAX_FLOOR=FP8_AMAX_FLOOR,
        MANT=mant,
        BIAS=bias,
        DYNAMIC=dynamic,
        HW_CVT=_hardware_fp8_cvt(x.device),
        BLOCK=_QUANT_BLOCK,
        num_warps=8,
    )


@triton.jit
def _fp8_gemm_kernel(
    a_ptr,
    b_ptr,
    scale_a_ptr,
    scale_b_ptr,
    bias_ptr,
    out_ptr,
    M,
    N,
    K,
    M_BUCKET,  # autotune key only
    HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    # grouped program order: GROUP_M row-blocks share each column-block of b in L2
    pid = tl.program_id(0)
    grid_m = tl.cdiv(M, BLOCK_M)
    grid_n = tl.cdiv(N, BLOCK_N)
    width = GROUP_M * grid_n
    first_m = (pid // width) * GROUP_M
    group_size = tl.minimum(grid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % group_size
    pid_n = (pid % width) // group_size

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    # rows past M / N are clamped to the last row (valid memory, never stored)
    rows_a = tl.minimum(offs_m, M - 1).to(tl.int64)
    rows_b = tl.minimum(offs_n, N - 1).to(tl.int64)
    a_ptrs = a_ptr + rows_a[:, None] * K + offs_k[None, :]  # (BLOCK_M, BLOCK_K) tile of a
    b_ptrs = b_ptr + rows_b[None, :] * K + offs_k[:, None]  # (BLOCK_K, BLOCK_N) tile of b^T, K-major
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = offs_k < K - k0
        a = tl.load(a_ptrs, mask=k_ok[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=k_ok[:, None], other=0.0)
        acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K

    y = acc * (tl.load(scale_a_ptr) * tl.load(scale_b_ptr))
    if HAS_BIAS:
        y += tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0)[None, :]
    out_ptrs = out_ptr + offs_m.to(tl.int64)[:, None] * N + offs_n[None, :]
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.store(out_ptrs, y.to(out_ptr.dtype.element_ty), mask=mask)


# Autotune candidates (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) per regime and
# GPU family. Decode-sized problems (M <= 64) stream b: narrow BLOCK_N means more
# programs. On sm_90+ BLOCK_M stays >= 64, the smallest wgmma tile (with BLOCK_M = 16
# Triton falls back to mma.sync and upcasts the fp8 operands to fp16 there); sm_89 has
# a native fp8 mma.sync (m16n8k32 e4m3), so BLOCK_M = 16 wastes nothing on it.
# Large-M tiles: 128 x 128 x 128 is two warpgroups of wgmma m64n128k32 per K step.
GEMM_TILES = {
    ("decode", "sm90"): [(64, 64, 128, 4, 4), (64, 128, 128, 4, 4), (64, 32, 256, 4, 3), (64, 64, 256, 4, 3)],
    ("decode", "sm89"): [(16, 64, 128, 4, 4), (16, 32, 256, 4, 3), (16, 128, 128, 4, 3), (32, 64, 128, 4, 4)],
    ("prefill", "sm90"): [
        (128, 128, 128, 8, 3),
        (128, 256, 128, 8, 3),
        (256, 128, 128, 8, 3),
        (128, 128, 64, 4, 5),
        (64, 128, 128, 4, 4),
    ],
    ("prefill", "sm89"): [(128, 128, 64, 8, 3), (128, 64, 128, 4, 3), (64, 128, 128, 4, 3), (64, 64, 128, 4, 4)],
}
DECODE_MAX_M = 64  # tests/test_triton_aot.py compiles every candidate: wgmma / fp8 mma, fits the SM's smem


def gemm_family(capability: tuple[int, int]) -> str:
    return "sm90" if capability >= (9, 0) else "sm89"


def gemm_regime(M: int) -> str:
    return "decode" if M <= DECODE_MAX_M else "prefill"


def _gemm_config(M: int, N: int, K: int, capability: tuple[int, int]) -> dict:
    """The first (rule-of-thumb) candidate for an (M, N, K) problem on an sm_`capability`
    GPU: what the interpreter runs, and the autotuner's first try."""
    bm, bn, bk, warps, stages = GEMM_TILES[(gemm_regime(M), gemm_family(capability))][0]
    return dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8, num_warps=warps, num_stages=stages)


def _tuner(regime: str, family: str):
    configs = [
        triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8), num_warps=w, num_stages=st)
        for bm, bn, bk, w, st in GEMM_TILES[(regime, family)]
    ]
    # M_BUCKET (a power of two) keys the tuning so that each prompt length does not re-tune
    return triton.autotune(configs=configs, key=["M_BUCKET", "N", "K"])(_fp8_gemm_kernel)


# one autotuner per (regime, family): the candidates differ, and torch.compile's
# wrap_triton supports plain autotuners (no prune_configs_by)
_TUNERS = {key: _tuner(*key) for key in GEMM_TILES} if not INTERPRET else {}


@kernel_op("fp8_gemm")
def fp8_gemm_triton(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    bias: torch.Tensor | None,
    out: torch.Tensor,
) -> None:
    M, K = a.shape
    N = b.shape[0]
    m_bucket = min(triton.next_power_of_2(M), 4096)
    args = (a, b, scale_a, scale_b, bias if bias is not None else out, out, M, N, K, m_bucket)
    if INTERPRET:  # no timing under the interpreter: the rule-of-thumb tiles
        cfg = _gemm_config(M, N, K, _capability(a.device))
        grid = (triton.cdiv(M, cfg["BLOCK_M"]) * triton.cdiv(N, cfg["BLOCK_N"]),)
        _fp8_gemm_kernel[grid](*args, HAS_BIAS=bias is not None, **cfg)
        return
    tuner = _TUNERS[(gemm_regime(M), gemm_family(_capability(a.device)))]

    def grid(meta):
        return (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)

    launcher(tuner)[grid](*args, HAS_BIAS=bias is not None)
