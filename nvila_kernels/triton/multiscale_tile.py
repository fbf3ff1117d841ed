"""Triton kernel of multiscale_tile: one launch for all tiles of all scales. Program
(tile, block of BLOCK output pixels of the tile, row-major) runs both separable bicubic passes for
its pixels, recomputing the first pass at every tap of the second (rounded and
clipped to uint8 in exact mode, as Pillow's intermediate image), and stores the
normalized channels. Per-tile tables give each tile's first coefficient column and
row and its scale's pass order; coefficients come from nvila_kernels.resample."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._register import kernel_op, launcher

_BLOCK = 1024
_ONE = 1 << 22  # fixed-point 1.0 of the weights (nvila_kernels.resample.PRECISION_BITS)


@triton.jit
def _first_pass(img_ptr, W, line, lo, n, w_ptr, K, o, mask, step_line, step_tap, EXACT: tl.constexpr):
    """One channel-triple of the first pass at `line` for outputs o: sum over taps q < n of
    w[o, q] * img[line * step_line + (lo + q) * step_tap]; returns (r, g, b) rounded/clipped."""
    if EXACT:
        r = tl.full(o.shape, 1 << 21, tl.int32)
    else:
        r = tl.zeros(o.shape, tl.float32)
    g = r
    b = r
    for q in range(0, K):
        m = mask & (q < n)
        if EXACT:
            w = tl.load(w_ptr + o * K + q, mask=m, other=0)
        else:
            w = tl.load(w_ptr + o * K + q, mask=m, other=0).to(tl.float32) * (1.0 / 4194304.0)
        p = img_ptr + (line * step_line + (lo + q) * step_tap) * 3
        r += tl.load(p, mask=m, other=0).to(w.dtype) * w
        g += tl.load(p + 1, mask=m, other=0).to(w.dtype) * w
        b += tl.load(p + 2, mask=m, other=0).to(w.dtype) * w
    if EXACT:
        r = tl.minimum(tl.maximum(r >> 22, 0), 255)
        g = tl.minimum(tl.maximum(g >> 22, 0), 255)
        b = tl.minimum(tl.maximum(b >> 22, 0), 255)
    return r, g, b


@triton.jit
def _store(out_ptr, base, p, mask, acc, mean, std, EXACT: tl.constexpr):
    if EXACT:
        level = tl.minimum(tl.maximum(acc >> 22, 0), 255).to(tl.float32)
    else:
        level = tl.minimum(tl.maximum(acc, 0.0), 255.0)
    v = (level / 255.0 - mean) / std
    tl.store(out_ptr + base + p, v.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _tile_kernel(
    img_ptr, out_ptr, xb_ptr, xw_ptr, yb_ptr, yw_ptr, tile_ox_ptr, tile_oy_ptr, tile_vf_ptr,
    W, T, KX, KY, m0, m1, m2, s0, s1, s2, EXACT: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    t = tl.program_id(0).to(tl.int64)
    p = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = p < T * T
    y = p // T
    x = p % T
    ox = tl.load(tile_ox_ptr + t) + x  # coefficient rows of the output columns
    oy = tl.load(tile_oy_ptr + t) + y  # and of the output rows
    vfirst = tl.load(tile_vf_ptr + t)
    xlo = tl.load(xb_ptr + 2 * ox, mask=mask, other=0)
    xn = tl.load(xb_ptr + 2 * ox + 1, mask=mask, other=1)
    ylo = tl.load(yb_ptr + 2 * oy, mask=mask, other=0)
    yn = tl.load(yb_ptr + 2 * oy + 1, mask=mask, other=1)
    if EXACT:
        ar = tl.full([BLOCK], 1 << 21, tl.int32)
    else:
        ar = tl.zeros([BLOCK], tl.float32)
    ag = ar
    ab = ar
    if vfirst == 0:
        # horizontal first: for each source row of the vertical taps, the horizontal pass there
        for j in range(0, KY):
            wy = tl.load(yw_ptr + oy * KY + j, mask=mask & (j < yn), other=0)
            if not EXACT:
                wy = wy.to(tl.float32) * (1.0 / 4194304.0)
            line = tl.minimum(ylo + j, ylo + yn - 1)
            r, g, b = _first_pass(img_ptr, W, line, xlo, xn, xw_ptr, KX, ox, mask, W, 1, EXACT)
            ar += r * wy
            ag += g * wy
            ab += b * wy
    else:
        # vertical first: for each source column of the horizontal taps, the vertical pass there
        for q in range(0, KX):
            m = mask & (q < xn)
            wx = tl.load(xw_ptr + ox * KX + q, mask=m, other=0)
            if not EXACT:
                wx = wx.to(tl.float32) * (1.0 / 4194304.0)
            col = xlo + tl.minimum(q, xn - 1)
            r, g, b = _first_pass(img_ptr, W, col, ylo, yn, yw_ptr, KY, oy, mask, 1, W, EXACT)
            ar += r * wx
            ag += g * wx
            ab += b * wx
    base = t * 3 * T * T
    _store(out_ptr, base, p, mask, ar, m0, s0, EXACT)
    _store(out_ptr, base + T * T, p, mask, ag, m1, s1, EXACT)
    _store(out_ptr, base + 2 * T * T, p, mask, ab, m2, s2, EXACT)


@kernel_op("multiscale_tile")
def multiscale_tile_triton(
    image: torch.Tensor,
    scale_rows: list[int],
    scale_cols: list[int],
    vertical_first: list[bool],
    xbounds: torch.Tensor,
    xweights: torch.Tensor,
    ybounds: torch.Tensor,
    yweights: torch.Tensor,
    mean: list[float],
    std: list[float],
    exact: bool,
    out: torch.Tensor,
) -> None:
    n_tiles, _, T, _ = out.shape
    W = image.shape[1]
    tile_ox, tile_oy, tile_vf = [], [], []
    xoff = yoff = 0
    for rows, cols, vf in zip(scale_rows, scale_cols, vertical_first, strict=True):
        for r in range(rows):
            for c in range(cols):
                tile_ox.append(xoff + c * T)
                tile_oy.append(yoff + r * T)
                tile_vf.append(int(vf))
        xoff += cols * T
        yoff += rows * T
    tables = [torch.tensor(v, dtype=torch.int64, device=image.device) for v in (tile_ox, tile_oy, tile_vf)]
    launcher(_tile_kernel)[(n_tiles, triton.cdiv(T * T, _BLOCK))](
        image, out, xbounds, xweights, ybounds, yweights, *tables,
        W, T, xweights.shape[1], yweights.shape[1], *mean, *std,
        EXACT=exact, BLOCK=_BLOCK, num_warps=4,
    )  # fmt: skip
