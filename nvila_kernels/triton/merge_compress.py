"""Triton kernel of merge_compress: one program per output token.

The program walks the token's k*k slots and S scales (static loops) in chunks of
BLOCK_C channels; each chunk is the fp32 area average of the scale's source window
(at most KH x KW pixels), rounded to the feature dtype as the merged map stores it,
or zeros for the block's padding. With LayerNorm: three passes (sum, squared
deviations, normalize-and-store) that recompute the chunks (L2-resident on a GPU),
statistics of (x - shift), shift = the row's first value, as in the C++ kernels.
The plan's per-scale (rows, cols, first tile) come in a small int32 tensor.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._register import kernel_op, launcher
from .multiscale_merge import _window


@triton.jit
def _round_to(v, DTYPE: tl.constexpr):
    """fp32 v rounded to DTYPE (to nearest, ties to even) and back. bfloat16 is rounded
    on the bits: the Triton interpreter's fp32 -> bf16 cast truncates."""
    if DTYPE == tl.bfloat16:
        bits = v.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True)
    else:
        return v.to(DTYPE).to(tl.float32)


@triton.jit
def _piece(x_ptr, plan_ptr, bi, bj, I, J, slot, s, c, cm, C, h, w, Hm, Wm, KH, KW, K: tl.constexpr):  # noqa: E741
    """Channels c of scale s at the merged pixel read by `slot` of block (bi, bj)'s
    output cell (I, J), in fp32; zeros where the pixel is the block's padding."""
    y = I * K + slot // K
    x = J * K + slot % K
    valid = (y < h) & (x < w)
    Y = bi * h + y
    X = bj * w + x
    rows = tl.load(plan_ptr + 3 * s).to(tl.int64)
    cols = tl.load(plan_ptr + 3 * s + 1).to(tl.int64)
    tile0 = tl.load(plan_ptr + 3 * s + 2).to(tl.int64)
    in_h = rows * h
    in_w = cols * w
    y0 = (Y * in_h) // Hm
    y1 = ((Y + 1) * in_h + Hm - 1) // Hm
    x0 = (X * in_w) // Wm
    x1 = ((X + 1) * in_w + Wm - 1) // Wm
    acc = tl.zeros(c.shape, dtype=tl.float32)
    for dy in range(KH):
        py = y0 + dy
        for dx in range(KW):
            px = x0 + dx
            m = cm & valid & (py < y1) & (px < x1)
            tok = ((tile0 + (py // h) * cols + px // w) * h + py % h) * w + px % w
            acc += tl.load(x_ptr + tok * C + c, mask=m, other=0.0).to(tl.float32)
    v = _round_to(acc / ((y1 - y0) * (x1 - x0)).to(tl.float32), x_ptr.dtype.element_ty)
    return tl.where(cm & valid, v, 0.0)


# What one walk over a token's pieces does (_token_pass).
_SUM = tl.constexpr(0)  # sum of (v - shift)
_SUM_SQ = tl.constexpr(1)  # sum of ((v - shift) - mean)^2
_STORE = tl.constexpr(2)  # store v, LayerNorm-ed when HAS_LN


@triton.jit
def _token_pass(
    x_ptr, out_row, w_ptr, b_ptr, plan_ptr, bi, bj, I, J, C, h, w, Hm, Wm, KH, KW, shift, mean, rstd,  # noqa: E741
    MODE: tl.constexpr, K: tl.constexpr, S: tl.constexpr, HAS_LN: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_C: tl.constexpr,
):  # fmt: skip
    """One walk over the K*K*S*C channels of a token, slot by scale by channel block;
    returns the sum of MODE (0 for _STORE)."""
    offs = tl.arange(0, BLOCK_C)
    SC = S * C
    acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    for slot in tl.static_range(K * K):
        for s in tl.static_range(S):
            for c0 in range(0, C, BLOCK_C):
                c = c0 + offs
                cm = c < C
                v = _piece(x_ptr, plan_ptr, bi, bj, I, J, slot, s, c, cm, C, h, w, Hm, Wm, KH, KW, K)
                if MODE == _SUM:
                    acc += tl.where(cm, v - shift, 0.0)
                elif MODE == _SUM_SQ:
                    d = tl.where(cm, (v - shift) - mean, 0.0)
                    acc += d * d
                else:
                    ch = slot * SC + s * C + c
                    y = v
                    if HAS_LN:
                        y = ((v - shift) - mean) * rstd * tl.load(w_ptr + ch, mask=cm, other=0.0)
                        if HAS_BIAS:
                            y += tl.load(b_ptr + ch, mask=cm, other=0.0)
                    tl.store(out_row + ch, y.to(out_row.dtype.element_ty), mask=cm)
    return tl.sum(acc, axis=0)


@triton.jit
def _merge_compress_kernel(
    x_ptr,
    out_ptr,
    w_ptr,
    b_ptr,
    plan_ptr,
    C,
    h,
    w,
    Hm,
    Wm,
    Ho,
    Wo,
    GC,
    eps,
    KH,
    KW,
    K: tl.constexpr,
    S: tl.constexpr,
    HAS_LN: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    gy = t // GC
    gx = t % GC
    bi = gy // Ho
    I = gy % Ho  # noqa: E741
    bj = gx // Wo
    J = gx % Wo
    D = K * K * S * C
    out_row = out_ptr + t * D
    shift = 0.0
    mean = 0.0
    rstd = 1.0
    if HAS_LN:
        offs = tl.arange(0, BLOCK_C)
        first = _piece(x_ptr, plan_ptr, bi, bj, I, J, 0, 0, offs, offs < 1, C, h, w, Hm, Wm, KH, KW, K)
        shift = tl.sum(first, axis=0)
        total = _token_pass(
            x_ptr, out_row, w_ptr, b_ptr, plan_ptr, bi, bj, I, J, C, h, w, Hm, Wm, KH, KW, shift, mean, rstd, _SUM, K,
            S, HAS_LN, HAS_BIAS, BLOCK_C,
        )  # fmt: skip
        mean = total / D
        ssd = _token_pass(
            x_ptr, out_row, w_ptr, b_ptr, plan_ptr, bi, bj, I, J, C, h, w, Hm, Wm, KH, KW, shift, mean, rstd, _SUM_SQ,
            K, S, HAS_LN, HAS_BIAS, BLOCK_C,
        )  # fmt: skip
        rstd = 1.0 / tl.sqrt(ssd / D + eps)
    _token_pass(
        x_ptr, out_row, w_ptr, b_ptr, plan_ptr, bi, bj, I, J, C, h, w, Hm, Wm, KH, KW, shift, mean, rstd, _STORE, K, S,
        HAS_LN, HAS_BIAS, BLOCK_C,
    )  # fmt: skip


@kernel_op("merge_compress")
def merge_compress_triton(
    features: torch.Tensor,
    scale_rows: list[int],
    scale_cols: list[int],
    h: int,
    w: int,
    k: int,
    ln_weight: torch.Tensor | None,
    ln_bias: torch.Tensor | None,
    eps: float,
    out: torch.Tensor,
) -> None:
    C = features.shape[2]
    S = len(scale_rows)
    Hm, Wm = scale_rows[-1] * h, scale_cols[-1] * w
    Ho, Wo = -(-h // k), -(-w // k)
    tokens = out.shape[0]
    if tokens == 0:
        return
    plan, tile0 = [], 0
    for rows, cols in zip(scale_rows, scale_cols, strict=True):
        plan += [rows, cols, tile0]
        tile0 += rows * cols
    plan_t = torch.tensor(plan, dtype=torch.int32, device=features.device)  # (S, 3): rows, cols, first tile
    kh = max(_window(r * h, Hm) for r in scale_rows)
    kw = max(_window(c * w, Wm) for c in scale_cols)
    block_c = min(triton.next_power_of_2(C), 1024)
    has_ln = ln_weight is not None
    launcher(_merge_compress_kernel)[(tokens,)](
        features,
        out,
        ln_weight if has_ln else out,
        ln_bias if ln_bias is not None else out,
        plan_t,
        C,
        h,
        w,
        Hm,
        Wm,
        Ho,
        Wo,
        scale_cols[-1] * Wo,
        eps,
        kh,
        kw,
        K=k,
        S=S,
        HAS_LN=has_ln,
        HAS_BIAS=ln_bias is not None,
        BLOCK_C=block_c,
        num_warps=4 if block_c <= 512 else 8,
    )
