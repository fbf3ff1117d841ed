"""Triton kernel of multiscale_merge: one launch per scale; program (output row y,
block of (channel, x) pairs, x fastest) averages each output's source window of that
scale's map in fp32 and stores into the scale's channel slice of the output."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._register import kernel_op, launcher

_BLOCK = 512


@triton.jit
def _merge_scale_kernel(x_ptr, out_ptr, C, h, w, cols, tile0, in_h, in_w, H, W, c_base, KH, KW, BLOCK: tl.constexpr):
    oy = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < C * W
    c = offs // W
    ox = offs % W
    y0 = (oy * in_h) // H
    y1 = ((oy + 1) * in_h + H - 1) // H
    x0 = (ox * in_w) // W
    x1 = ((ox + 1) * in_w + W - 1) // W
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for dy in range(KH):
        py = y0 + dy
        ti = py // h
        ty = py % h
        for dx in range(KW):
            px = x0 + dx
            tj = px // w
            tx = px % w
            m = mask & (px < x1) & (py < y1)
            src = ((tile0 + ti * cols + tj) * h * w + ty * w + tx) * C + c
            acc += tl.load(x_ptr + src, mask=m, other=0.0).to(tl.float32)
    acc = acc / ((y1 - y0) * (x1 - x0)).to(tl.float32)
    dst = ((c_base + c) * H + oy) * W + ox
    tl.store(out_ptr + dst, acc.to(out_ptr.dtype.element_ty), mask=mask)


def _window(n_in: int, n_out: int) -> int:
    """The largest source window of area resizing n_in -> n_out samples."""
    return max(((o + 1) * n_in + n_out - 1) // n_out - (o * n_in) // n_out for o in range(n_out))


@kernel_op("multiscale_merge")
def multiscale_merge_triton(
    features: torch.Tensor, scale_rows: list[int], scale_cols: list[int], h: int, w: int, out: torch.Tensor
) -> None:
    C = features.shape[2]
    H, W = scale_rows[-1] * h, scale_cols[-1] * w
    if C * H * W == 0:
        return
    tile0 = 0
    for s, (rows, cols) in enumerate(zip(scale_rows, scale_cols, strict=True)):
        in_h, in_w = rows * h, cols * w
        launcher(_merge_scale_kernel)[(H, triton.cdiv(C * W, _BLOCK))](
            features,
            out,
            C,
            h,
            w,
            cols,
            tile0,
            in_h,
            in_w,
            H,
            W,
            s * C,
            _window(in_h, H),
            _window(in_w, W),
            BLOCK=_BLOCK,
            num_warps=4,
        )
        tile0 += rows * cols
