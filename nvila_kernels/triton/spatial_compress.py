"""Triton kernel of spatial_compress: one program per output token.

The program walks the token's k*k source tokens (a static loop over slots) in
chunks of BLOCK_C channels. With LayerNorm it makes three passes over the row:
sum (mean), sum of squared deviations (variance), normalize-and-store; the second
and third passes re-read the row, which is L2-resident on a GPU by then.
Padding tokens contribute zeros to the statistics, as in NVILA. Statistics are
taken of (x - shift), shift = the row's first value, as in the C++ kernels.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._register import kernel_op, launcher


@triton.jit
def _slot_source(x_ptr, b, I, J, slot, H, W, sB, sH, sW, K: tl.constexpr):  # noqa: E741
    """Pointer to channel 0 of the input token feeding `slot` of output cell (I, J),
    and whether that token exists (False: zero padding)."""
    h = I * K + slot // K
    w = J * K + slot % K
    return x_ptr + b * sB + h * sH + w * sW, (h < H) & (w < W)


@triton.jit
def _spatial_compress_kernel(
    x_ptr,
    out_ptr,
    w_ptr,
    b_ptr,
    H,
    W,
    C,
    Ho,
    Wo,
    sB,
    sH,
    sW,
    eps,
    K: tl.constexpr,
    HAS_LN: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    J = row % Wo
    I = (row // Wo) % Ho  # noqa: E741
    b = row // (Wo * Ho)
    D = K * K * C
    out_row = out_ptr + row * D
    offs = tl.arange(0, BLOCK_C)
    if HAS_LN:
        # statistics of (x - shift), shift = the row's first value (see csrc/include/nvila/layernorm.h)
        shift = tl.load(x_ptr + b * sB + (I * K) * sH + (J * K) * sW).to(tl.float32)
        acc = tl.zeros([BLOCK_C], dtype=tl.float32)
        for slot in tl.static_range(K * K):
            src, valid = _slot_source(x_ptr, b, I, J, slot, H, W, sB, sH, sW, K)
            for c0 in range(0, C, BLOCK_C):
                c = c0 + offs
                v = tl.load(src + c, mask=(c < C) & valid, other=0.0).to(tl.float32)
                acc += tl.where(c < C, v - shift, 0.0)
        mean = tl.sum(acc, axis=0) / D
        acc2 = tl.zeros([BLOCK_C], dtype=tl.float32)
        for slot in tl.static_range(K * K):
            src, valid = _slot_source(x_ptr, b, I, J, slot, H, W, sB, sH, sW, K)
            for c0 in range(0, C, BLOCK_C):
                c = c0 + offs
                v = tl.load(src + c, mask=(c < C) & valid, other=0.0).to(tl.float32)
                d = tl.where(c < C, (v - shift) - mean, 0.0)
                acc2 += d * d
        rstd = 1.0 / tl.sqrt(tl.sum(acc2, axis=0) / D + eps)
        for slot in tl.static_range(K * K):
            src, valid = _slot_source(x_ptr, b, I, J, slot, H, W, sB, sH, sW, K)
            for c0 in range(0, C, BLOCK_C):
                c = c0 + offs
                cm = c < C
                v = tl.load(src + c, mask=cm & valid, other=0.0).to(tl.float32)
                y = ((v - shift) - mean) * rstd * tl.load(w_ptr + slot * C + c, mask=cm, other=0.0)
                if HAS_BIAS:
                    y += tl.load(b_ptr + slot * C + c, mask=cm, other=0.0)
                tl.store(out_row + slot * C + c, y.to(out_ptr.dtype.element_ty), mask=cm)
    else:
        for slot in tl.static_range(K * K):
            src, valid = _slot_source(x_ptr, b, I, J, slot, H, W, sB, sH, sW, K)
            for c0 in range(0, C, BLOCK_C):
                c = c0 + offs
                cm = c < C
                v = tl.load(src + c, mask=cm & valid, other=0.0)
                tl.store(out_row + slot * C + c, v, mask=cm)


@kernel_op("spatial_compress")
def spatial_compress_triton(
    x: torch.Tensor,
    k: int,
    ln_weight: torch.Tensor | None,
    ln_bias: torch.Tensor | None,
    eps: float,
    out: torch.Tensor,
) -> None:
    B, H, W, C = x.shape
    Ho, Wo = out.shape[1], out.shape[2]
    rows = B * Ho * Wo
    if rows == 0:
        return
    block_c = min(triton.next_power_of_2(C), 1024)
    has_ln = ln_weight is not None
    launcher(_spatial_compress_kernel)[(rows,)](
        x,
        out,
        ln_weight if has_ln else out,
        ln_bias if ln_bias is not None else out,
        H,
        W,
        C,
        Ho,
        Wo,
        x.stride(0),
        x.stride(1),
        x.stride(2),
        eps,
        K=k,
        HAS_LN=has_ln,
        HAS_BIAS=ln_bias is not None,
        BLOCK_C=block_c,
        num_warps=4 if block_c <= 512 else 8,
    )
