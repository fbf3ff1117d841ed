"""Pure-PyTorch reference of every op: the test oracle, written for clarity.

Math is done in float32 and the result cast back to the input dtype, as the
kernels do. These functions compose standard torch ops, so they also work under
autograd and torch.compile.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "spatial_compress",
    "temporal_pool",
    "multiscale_merge",
    "merge_compress",
    "multiscale_tile",
    "fp8_quantize",
    "fp8_gemm",
    "FP8_DTYPES",
    "FP8_AMAX_FLOOR",
]


def spatial_compress(
    x: torch.Tensor,
    k: int,
    ln_weight: torch.Tensor | None = None,
    ln_bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """NVILA's k x k space-to-depth, optionally followed by LayerNorm.

    x: (B, H, W, C) token grid, tokens row-major.
    Returns (B, ceil(H/k), ceil(W/k), k*k*C): zero rows appended at the bottom,
    then zero columns on the right, until H and W are multiples of k; output cell
    (I, J) holds input token (k*I + dr, k*J + dc) at channels slot*C + c with
    slot = dr*k + dc. With ln_weight, LayerNorm over the last dim (eps, affine).
    """
    B, H, W, C = x.shape
    xf = x.float()
    pad_h, pad_w = (-H) % k, (-W) % k
    xf = F.pad(xf, (0, 0, 0, pad_w, 0, pad_h))  # (B, Hp, Wp, C)
    Ho, Wo = (H + pad_h) // k, (W + pad_w) // k
    y = xf.view(B, Ho, k, Wo, k, C)  # (B, I, dr, J, dc, C)
    y = y.permute(0, 1, 3, 2, 4, 5).reshape(B, Ho, Wo, k * k * C)  # (B, I, J, (dr, dc, C))
    if ln_weight is not None:
        bias = None if ln_bias is None else ln_bias.float()
        y = F.layer_norm(y, (k * k * C,), ln_weight.float(), bias, eps)
    return y.to(x.dtype)


def temporal_pool(x: torch.Tensor, group: int) -> torch.Tensor:
    """Mean over non-overlapping groups of `group` consecutive frames (dim 0).

    x: (T, ...) with T divisible by group. Returns (T // group, ...), fp32 sums.
    """
    T = x.shape[0]
    y = x.float().reshape(T // group, group, *x.shape[1:]).mean(dim=1)
    return y.to(x.dtype)


def multiscale_merge(features: torch.Tensor, plan, h: int = 32, w: int = 32) -> torch.Tensor:
    """NVILA's multi-scale merge (NVILA.md section 3).

    features: (n_tiles, h*w, C), tiles in the plan's order (per scale row-major,
    scales as listed in plan.scales). Each scale's tiles are placed into one
    (rows*h, cols*w) map, resized to the last (largest) scale's size with area
    interpolation in fp32, and the maps are concatenated along channels:
    returns (S*C, rows[-1]*h, cols[-1]*w) in features' dtype.
    """
    C = features.shape[-1]
    last = plan.scales[-1]
    size = (last.rows * h, last.cols * w)
    maps, t0 = [], 0
    for s in plan.scales:
        n = s.rows * s.cols
        m = features[t0 : t0 + n].float().reshape(s.rows, s.cols, h, w, C)
        m = m.permute(4, 0, 2, 1, 3).reshape(1, C, s.rows * h, s.cols * w)
        maps.append(F.interpolate(m, size=size, mode="area")[0])
        t0 += n
    return torch.cat(maps, dim=0).to(features.dtype)


def merge_compress(
    features: torch.Tensor,
    plan,
    k: int,
    ln_weight: torch.Tensor | None = None,
    ln_bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    h: int = 32,
    w: int = 32,
) -> torch.Tensor:
    """NVILA's back half of Dynamic-S2 (NVILA.md sections 3-4), as the literal composition:
    multiscale_merge, cut the merged map into rows x cols blocks of h x w (row-major),
    spatial_compress (k, padding, LayerNorm) of each block on its own, and the per-block
    (Ho, Wo) outputs put back in a (rows*Ho, cols*Wo) grid flattened row-major.

    features: (n_tiles, h*w, C). Returns (rows*Ho*cols*Wo, k*k*S*C) in features' dtype,
    Ho = ceil(h/k), Wo = ceil(w/k); channel slot*(S*C) + s*C + c.
    """
    merged = multiscale_merge(features, plan, h, w)  # (S*C, rows*h, cols*w)
    SC = merged.shape[0]
    rows, cols = plan.scales[-1].rows, plan.scales[-1].cols
    blocks = merged.permute(1, 2, 0).reshape(rows, h, cols, w, SC)  # (bi, y, bj, x, S*C)
    blocks = blocks.permute(0, 2, 1, 3, 4).reshape(rows * cols, h, w, SC)  # (bi*cols + bj, y, x, S*C)
    y = spatial_compress(blocks, k, ln_weight, ln_bias, eps)  # (rows*cols, Ho, Wo, D)
    Ho, Wo, D = y.shape[1:]
    y = y.reshape(rows, cols, Ho, Wo, D).permute(0, 2, 1, 3, 4)  # (bi, I, bj, J, D)
    return y.reshape(rows * Ho * cols * Wo, D)


def _resample_axis(x: torch.Tensor, in_size: int, out_size: int, axis: int, exact: bool) -> torch.Tensor:
    """One Pillow bicubic pass along `axis` of an (H, W, 3) int64 (exact) or float64 image."""
    from .resample import PRECISION_BITS, coeffs

    bounds, weights = (torch.from_numpy(a.astype("int64")).to(x.device) for a in coeffs(in_size, out_size))
    acc = torch.zeros((), dtype=torch.int64 if exact else torch.float64)
    shape = [1, 1, 1]
    shape[axis] = out_size
    for k in range(weights.shape[1]):
        idx = (bounds[:, 0] + k).clamp(max=in_size - 1)  # taps past a row's count have weight 0
        w = weights[:, k].reshape(shape)
        acc = acc + x.index_select(axis, idx) * (w if exact else w.double() / (1 << PRECISION_BITS))
    if not exact:
        return acc
    return ((acc + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS).clamp(0, 255)


def multiscale_tile(
    image: torch.Tensor,
    plan,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    out_dtype: torch.dtype = torch.float32,
    exact: bool = True,
) -> torch.Tensor:
    """NVILA's Dynamic-S2 preprocessing (NVILA.md section 2): every tile of every scale.

    image: (H, W, 3) uint8. Per scale of `plan` the whole image is resized to
    (scale.height, scale.width) with Pillow's bicubic (nvila_kernels.resample:
    fixed-point weights, uint8 rounding and clipping after each pass, Pillow's pass
    order); exact=False keeps both passes in float64 without rounding and clips the
    result to [0, 255]. Tiles are cut row-major, scales in order, and normalized:
    (v / 255 - mean) / std per channel. Returns (n_tiles, 3, tile, tile) in out_dtype.
    """
    from .resample import vertical_first

    H, W, _ = image.shape
    T = plan.tile
    x = image.to(torch.int64 if exact else torch.float64)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=image.device).reshape(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=image.device).reshape(3, 1, 1)
    tiles = []
    for s in plan.scales:
        if vertical_first(W, H, s.width, s.height):
            r = _resample_axis(_resample_axis(x, H, s.height, 0, exact), W, s.width, 1, exact)
        else:
            r = _resample_axis(_resample_axis(x, W, s.width, 1, exact), H, s.height, 0, exact)
        v = r.clamp(0, 255).to(torch.float32).permute(2, 0, 1)  # (3, height, width)
        v = (v / 255.0 - mean_t) / std_t
        v = v.reshape(3, s.rows, T, s.cols, T).permute(1, 3, 0, 2, 4).reshape(s.n_tiles, 3, T, T)
        tiles.append(v)
    return torch.cat(tiles).to(out_dtype)


# ---- FP8 -------------------------------------------------------------------------

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
# Dynamic scales use max(amax, FP8_AMAX_FLOOR): an all-zero tensor gets a tiny,
# finite scale instead of 0 (which would turn 0/0 into NaN).
FP8_AMAX_FLOOR = 1e-12


def fp8_quantize(
    x: torch.Tensor, scale: torch.Tensor | None = None, fp8_dtype: torch.dtype = torch.float8_e4m3fn
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor quantization to FP8: returns (q, scale) with x ~ q.float() * scale.

    Dynamic (scale None): scale = max(amax, FP8_AMAX_FLOOR) / fp8_max, where amax is
    the largest |x| over the FINITE elements (NaN and +-inf do not poison it).
    Static: the given scale (one positive float32 element).
    q = saturate(x / scale): values beyond +-fp8_max (and +-inf) become +-fp8_max,
    NaN stays NaN; rounding to nearest even. scale is returned as a 0-d float32.
    """
    fmax = torch.finfo(fp8_dtype).max
    xf = x.float()
    if scale is None:
        finite = torch.where(torch.isfinite(xf), xf.abs(), torch.zeros_like(xf))
        amax = finite.amax() if xf.numel() else torch.zeros((), device=x.device)
        scale = torch.clamp(amax, min=FP8_AMAX_FLOOR) / fmax
    scale = scale.reshape(()).float()
    q = (xf / scale).clamp(-fmax, fmax).to(fp8_dtype)
    return q, scale


def fp8_gemm(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """(a * scale_a) @ (b * scale_b)^T + bias, fp32 accumulation.

    a: (M, K) and b: (N, K) in float8_e4m3fn (b in nn.Linear weight layout).
    Computed as (a @ b^T) * (scale_a * scale_b) + bias in fp32, then cast.
    """
    acc = a.float() @ b.float().t()  # (M, N)
    y = acc * (scale_a.float().reshape(()) * scale_b.float().reshape(()))
    if bias is not None:
        y = y + bias.float()
    return y.to(out_dtype)
