"""Public functions: validate arguments (errors name the argument), allocate the
output, pick a backend (nvila_kernels.backends) and call its op."""

from __future__ import annotations

import math

import torch

from . import _ops, backends, reference, resample
from .tiling import TilePlan

__all__ = [
    "spatial_compress",
    "temporal_pool",
    "multiscale_merge",
    "merge_compress",
    "multiscale_tile",
    "multiscale_tile_batch",
    "fp8_quantize",
    "fp8_gemm",
]  # re-exported as nvila_kernels.*; the caps below are module constants

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MERGE_MAX_SCALES = 8  # kMergeMaxScales in csrc/include/nvila/multiscale_merge.h
# multiscale_tile caps (int32 coefficient and pixel offsets stay far from overflow)
TILE_MAX_SCALES = 8  # kTileMaxScales in csrc/include/nvila/multiscale_tile.h
TILE_MAX_SIDE = 16384  # image sides and resized sides, in pixels
TILE_MAX_TILES = 256  # tiles per image
# output channels per token of spatial_compress / merge_compress: the CUDA and Triton
# kernels index the channels of one token in 32 bits
MAX_TOKEN_CHANNELS = 2**31 - 1


def _check_float(t: torch.Tensor, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32, float16 or bfloat16, got {t.dtype}")


def _check_same_device(t: torch.Tensor, name: str, x: torch.Tensor, x_name: str = "x") -> None:
    if t.device != x.device:
        raise ValueError(f"{name}: expected a tensor on {x.device} (the device of {x_name}), got {t.device}")


def _check_out(out: torch.Tensor, shape: tuple[int, ...], x: torch.Tensor, x_name: str = "x") -> None:
    """out= of an op whose output has x's dtype and device (x_name: what x is called in the op)."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out: expected a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != shape:
        raise ValueError(f"out: expected shape {shape}, got {tuple(out.shape)}")
    if out.dtype != x.dtype:
        raise TypeError(f"out: expected dtype {x.dtype} (the dtype of {x_name}), got {out.dtype}")
    _check_same_device(out, "out", x, x_name)
    if not out.is_contiguous():
        raise ValueError("out: expected a contiguous tensor")
    if out.numel() and x.numel() and _overlaps(out, x):
        raise ValueError("out: must not share memory with x")


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the memory spans of a and b intersect (conservative for strided views)."""
    if torch.compiler.is_compiling() or a.device != b.device or a.device.type == "meta":
        return False
    if torch._subclasses.fake_tensor.is_fake(a) or torch._subclasses.fake_tensor.is_fake(b):
        return False
    sa, sb = a.untyped_storage(), b.untyped_storage()
    if sa.data_ptr() != sb.data_ptr():
        return False
    ea, eb = a.element_size(), b.element_size()
    a0 = a.storage_offset() * ea
    b0 = b.storage_offset() * eb
    a1 = a0 + sum((n - 1) * s for n, s in zip(a.shape, a.stride(), strict=True)) * ea + ea
    b1 = b0 + sum((n - 1) * s for n, s in zip(b.shape, b.stride(), strict=True)) * eb + eb
    return a0 < b1 and b0 < a1


def _check_k_eps(k: int, eps: float) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < math.inf:
        raise ValueError(f"eps: expected a float >= 0 and finite, got {eps!r}")


def _check_token_channels(D: int, what: str) -> None:
    if D > MAX_TOKEN_CHANNELS:
        raise ValueError(f"k: expected at most 2^31 - 1 output channels per token, got {what} = {D}")


def _check_ln(
    ln_weight: torch.Tensor | None, ln_bias: torch.Tensor | None, D: int, what: str, x: torch.Tensor, x_name: str = "x"
) -> None:
    """LayerNorm parameters: both None, or weight (and optionally bias) of shape (D,) on x's device."""
    if ln_bias is not None and ln_weight is None:
        raise ValueError("ln_bias: given without ln_weight (LayerNorm is applied when ln_weight is given)")
    for name, t in (("ln_weight", ln_weight), ("ln_bias", ln_bias)):
        if t is None:
            continue
        _check_float(t, name)
        if tuple(t.shape) != (D,):
            raise ValueError(f"{name}: expected shape ({D},) = {what}, got {tuple(t.shape)}")
        _check_same_device(t, name, x, x_name)


class _ReferenceGrad(torch.autograd.Function):
    """Forward by a kernel, backward by autograd through the reference (recomputed from
    the saved inputs): the kernel backends give the same gradients as the reference."""

    @staticmethod
    def forward(ctx, fast, ref, *tensors):
        ctx.ref = ref
        ctx.save_for_backward(*tensors)
        return fast(*tensors)

    @staticmethod
    def backward(ctx, grad):
        needs = ctx.needs_input_grad[2:]
        inputs = [
            t if t is None else t.detach().requires_grad_(n) for t, n in zip(ctx.saved_tensors, needs, strict=True)
        ]
        wanted = [t for t in inputs if t is not None and t.requires_grad]
        with torch.enable_grad():
            grads = iter(torch.autograd.grad(ctx.ref(*inputs), wanted, grad))
        return (None, None, *(next(grads) if t is not None and t.requires_grad else None for t in inputs))


def _with_reference_grad(fast, ref, tensors: tuple, out: torch.Tensor | None) -> torch.Tensor:
    """fast(*tensors); when grad mode is on and an input requires grad, through
    _ReferenceGrad (ref(*tensors) must compute the same function differentiably)."""
    if not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)):
        return fast(*tensors)
    if out is not None:
        raise ValueError("out: not supported when an input requires grad (autograd does not record writes to out)")
    return _ReferenceGrad.apply(fast, ref, *tensors)


def _run(name: str, backend: str, *args) -> None:
    if backend == "triton":
        getattr(torch.ops.nvila, f"{name}_triton")(*args)
    else:
        _ops.op(name, backend)(*args)


def spatial_compress(
    x: torch.Tensor,
    k: int,
    ln_weight: torch.Tensor | None = None,
    ln_bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """NVILA's k x k spatial-to-channel compression, fused with the projector's LayerNorm.

    x: (B, H, W, C) token grid (tokens row-major), float32/float16/bfloat16.
    Returns (B, ceil(H/k), ceil(W/k), k*k*C) in x's dtype: zero rows appended at the
    bottom, then zero columns on the right; output cell (I, J) holds input token
    (k*I + dr, k*J + dc) at channels (dr*k + dc)*C + c. With `ln_weight` (and
    optionally `ln_bias`), each output token is LayerNorm-ed over its k*k*C channels
    (fp32 statistics, biased variance, `eps`), in the same pass.
    `out`: a contiguous tensor of the output's shape and dtype to write into.
    `backend`: see nvila_kernels.backends.
    """
    _check_float(x, "x")
    if x.dim() != 4:
        raise ValueError(f"x: expected a 4-D (B, H, W, C) tensor, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"x: expected a non-empty tensor, got shape {tuple(x.shape)}")
    _check_k_eps(k, eps)
    B, H, W, C = x.shape
    D = k * k * C
    _check_token_channels(D, f"k*k*C for k={k}, C={C}")
    _check_ln(ln_weight, ln_bias, D, f"(k*k*C,) for k={k}, C={C}", x)
    shape = (B, -(-H // k), -(-W // k), D)
    if out is not None:
        _check_out(out, shape, x)

    chosen = backends.resolve("spatial_compress", backend, x.device)
    if chosen == "reference":
        y = reference.spatial_compress(x, k, ln_weight, ln_bias, eps)
        return y if out is None else out.copy_(y)

    def fast(x, ln_weight, ln_bias, out=out):
        if x.stride(-1) != 1:
            x = x.contiguous()
        w = None if ln_weight is None else ln_weight.to(torch.float32).contiguous()
        b = None if ln_bias is None else ln_bias.to(torch.float32).contiguous()
        if out is None:
            out = torch.empty(shape, dtype=x.dtype, device=x.device)
        _run("spatial_compress", chosen, x, k, w, b, float(eps), out)
        return out

    def ref(x, ln_weight, ln_bias):
        return reference.spatial_compress(x, k, ln_weight, ln_bias, eps)

    return _with_reference_grad(fast, ref, (x, ln_weight, ln_bias), out)


def temporal_pool(
    x: torch.Tensor,
    group: int,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """NVILA's temporal compression: mean over non-overlapping groups of `group`
    consecutive frames along dim 0, accumulated in fp32.

    x: (T, ...) float32/float16/bfloat16 with T divisible by `group` (NVILA video:
    (T, 16, 16, H) projector tokens per frame, group 8). Returns (T // group, ...).
    """
    _check_float(x, "x")
    if x.dim() < 1:
        raise ValueError("x: expected at least 1 dimension (frames first), got a 0-d tensor")
    if x.numel() == 0:
        raise ValueError(f"x: expected a non-empty tensor, got shape {tuple(x.shape)}")
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise ValueError(f"group: expected an int >= 1, got {group!r}")
    T = x.shape[0]
    if T % group != 0:
        raise ValueError(f"group: the number of frames T={T} (x.shape[0]) is not divisible by group={group}")
    shape = (T // group, *x.shape[1:])
    if out is not None:
        _check_out(out, shape, x)

    chosen = backends.resolve("temporal_pool", backend, x.device)
    if chosen == "reference":
        y = reference.temporal_pool(x, group)
        return y if out is None else out.copy_(y)

    def fast(x, out=out):
        if x.dim() > 1 and not x[0].is_contiguous():
            x = x.contiguous()
        if out is None:
            out = torch.empty(shape, dtype=x.dtype, device=x.device)
        _run("temporal_pool", chosen, x, group, out)
        return out

    return _with_reference_grad(fast, lambda x: reference.temporal_pool(x, group), (x,), out)


def multiscale_merge(
    features: torch.Tensor,
    plan: TilePlan,
    h: int = 32,
    w: int = 32,
    *,
    out: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """NVILA's multi-scale merge of Dynamic-S2 tile features (NVILA.md section 3).

    features: (n_tiles, h*w, C) float32/float16/bfloat16, the vision tower's tokens
    per tile (row-major h x w grid) in the plan's tile order (nvila_kernels.tiling).
    Per scale, tile (i, j) goes to rows i*h.., columns j*w.. of that scale's map;
    every map is resized to the largest (last) scale's (rows*h, cols*w) with area
    interpolation (adaptive average pooling, fp32 math) and the maps are
    concatenated along channels in ascending scale order.
    Returns (S*C, rows*h, cols*w), channel-first like NVILA. Only Dynamic-S2 plans
    (no NVILA-Lite thumbnail) are supported.
    """
    C = _check_merge_inputs(features, plan, h, w)
    last = plan.scales[-1]
    shape = (len(plan.scales) * C, last.rows * h, last.cols * w)
    if out is not None:
        _check_out(out, shape, features, "features")

    chosen = backends.resolve("multiscale_merge", backend, features.device)
    if chosen == "reference":
        y = reference.multiscale_merge(features, plan, h, w)
        return y if out is None else out.copy_(y)

    def fast(features, out=out):
        features = features.contiguous()
        if out is None:
            out = torch.empty(shape, dtype=features.dtype, device=features.device)
        rows = [s.rows for s in plan.scales]
        cols = [s.cols for s in plan.scales]
        _run("multiscale_merge", chosen, features, rows, cols, h, w, out)
        return out

    return _with_reference_grad(fast, lambda f: reference.multiscale_merge(f, plan, h, w), (features,), out)


def _check_scale_grids(plan: TilePlan) -> None:
    """Every scale of a (possibly hand-made) plan has a grid of ints >= 1 tiles."""
    for s in plan.scales:
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (s.rows, s.cols)):
            raise ValueError(f"plan: expected every scale's rows and cols to be ints >= 1, got {s}")


def _check_merge_inputs(features: torch.Tensor, plan: TilePlan, h: int, w: int) -> int:
    """Checks the tile features, plan and tile grid of multiscale_merge / merge_compress; returns C."""
    _check_float(features, "features")
    if not isinstance(plan, TilePlan):
        raise TypeError(f"plan: expected a nvila_kernels.tiling.TilePlan, got {type(plan).__name__}")
    if plan.thumbnail:
        raise ValueError("plan: NVILA-Lite plans with a thumbnail are not merged (each tile is its own image)")
    if not 1 <= len(plan.scales) <= MERGE_MAX_SCALES:
        raise ValueError(f"plan: expected 1 to {MERGE_MAX_SCALES} scales, got {len(plan.scales)}")
    _check_scale_grids(plan)
    for name, v in (("h", h), ("w", w)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    if features.dim() != 3:
        raise ValueError(f"features: expected a 3-D (n_tiles, h*w, C) tensor, got shape {tuple(features.shape)}")
    n, hw, C = features.shape
    if n != plan.n_tiles:
        raise ValueError(f"features: expected {plan.n_tiles} tiles (plan.n_tiles), got {n} (features.shape[0])")
    if hw != h * w:
        raise ValueError(f"features: expected h*w = {h * w} tokens per tile for h={h}, w={w}, got {hw}")
    if C == 0:
        raise ValueError(f"features: expected at least one channel, got shape {tuple(features.shape)}")
    return C


def merge_compress(
    features: torch.Tensor,
    plan: TilePlan,
    k: int,
    ln_weight: torch.Tensor | None = None,
    ln_bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    h: int = 32,
    w: int = 32,
    out: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """NVILA's fused back half of Dynamic-S2: multiscale_merge, the cut of the merged
    map into per-tile blocks and spatial_compress with LayerNorm, in one pass
    (NVILA.md sections 3-4).

    features: (n_tiles, h*w, C) float32/float16/bfloat16 tile features in the plan's
    order, as for multiscale_merge. The merged (S*C, rows*h, cols*w) map is cut into
    rows x cols blocks of h x w (row-major); each block is space-to-depth'ed by k
    with its own zero padding (bottom rows, then right columns: 32 -> 33 for k=3);
    the per-block Ho x Wo outputs (Ho = ceil(h/k), Wo = ceil(w/k)) are put back in a
    (rows*Ho) x (cols*Wo) grid, flattened row-major. Returns (rows*Ho*cols*Wo, D),
    D = k*k*S*C, channel slot*(S*C) + s*C + c with slot = dr*k + dc, in the features'
    dtype: the merged values are rounded to that dtype (as multiscale_merge stores
    them), then LayerNorm-ed in fp32 over D with `ln_weight` (and optionally
    `ln_bias`), or just rearranged when ln_weight is None. NVILA-8B: 4x3 tiles of
    32x32x1152, k=2 -> (3072, 13824).
    `out`: a contiguous tensor of the output's shape and dtype to write into.
    `backend`: see nvila_kernels.backends.
    """
    C = _check_merge_inputs(features, plan, h, w)
    _check_k_eps(k, eps)
    S = len(plan.scales)
    D = k * k * S * C
    _check_token_channels(D, f"k*k*S*C for k={k}, S={S}, C={C}")
    _check_ln(ln_weight, ln_bias, D, f"(k*k*S*C,) for k={k}, S={S} scales, C={C}", features, "features")
    last = plan.scales[-1]
    shape = (last.rows * -(-h // k) * last.cols * -(-w // k), D)
    if out is not None:
        _check_out(out, shape, features, "features")

    chosen = backends.resolve("merge_compress", backend, features.device)
    if chosen == "reference":
        y = reference.merge_compress(features, plan, k, ln_weight, ln_bias, eps, h, w)
        return y if out is None else out.copy_(y)

    def fast(features, ln_weight, ln_bias, out=out):
        features = features.contiguous()
        wt = None if ln_weight is None else ln_weight.to(torch.float32).contiguous()
        b = None if ln_bias is None else ln_bias.to(torch.float32).contiguous()
        if out is None:
            out = torch.empty(shape, dtype=features.dtype, device=features.device)
        rows = [s.rows for s in plan.scales]
        cols = [s.cols for s in plan.scales]
        _run("merge_compress", chosen, features, rows, cols, h, w, k, wt, b, float(eps), out)
        return out

    def ref(features, ln_weight, ln_bias):
        return reference.merge_compress(features, plan, k, ln_weight, ln_bias, eps, h, w)

    return _with_reference_grad(fast, ref, (features, ln_weight, ln_bias), out)


def _tile_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Validate one image for multiscale_tile; returns it as a contiguous (H, W, 3) view or copy."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(image).__name__}")
    if image.dtype != torch.uint8:
        raise TypeError(f"{name}: expected dtype uint8, got {image.dtype}")
    if image.dim() != 3 or 3 not in (image.shape[-1], image.shape[0]):
        raise ValueError(f"{name}: expected shape (H, W, 3) or (3, H, W), got {tuple(image.shape)}")
    if image.shape[-1] != 3:
        image = image.permute(1, 2, 0)  # (3, H, W) -> (H, W, 3)
    H, W, _ = image.shape
    if H == 0 or W == 0:
        raise ValueError(f"{name}: expected a non-empty image, got shape {tuple(image.shape)}")
    if H > TILE_MAX_SIDE or W > TILE_MAX_SIDE:
        raise ValueError(f"{name}: expected height and width <= {TILE_MAX_SIDE}, got {H}x{W} (H x W)")
    return image.contiguous()


def _check_tile_plan(plan: TilePlan, W: int, H: int, name: str = "plan") -> None:
    if not isinstance(plan, TilePlan):
        raise TypeError(f"{name}: expected a nvila_kernels.tiling.TilePlan, got {type(plan).__name__}")
    if (plan.image_width, plan.image_height) != (W, H):
        raise ValueError(
            f"{name}: made for a {plan.image_width}x{plan.image_height} image, got a {W}x{H} image (W x H)"
        )
    if not 1 <= len(plan.scales) <= TILE_MAX_SCALES:
        raise ValueError(f"{name}: expected 1 to {TILE_MAX_SCALES} scales, got {len(plan.scales)}")
    if isinstance(plan.tile, bool) or not isinstance(plan.tile, int) or plan.tile < 1:
        raise ValueError(f"{name}: expected a tile size (plan.tile) >= 1, got {plan.tile!r}")
    _check_scale_grids(plan)
    if plan.n_tiles > TILE_MAX_TILES:
        raise ValueError(f"{name}: expected at most {TILE_MAX_TILES} tiles, got {plan.n_tiles}")
    for s in plan.scales:
        if s.width > TILE_MAX_SIDE or s.height > TILE_MAX_SIDE:
            raise ValueError(f"{name}: expected resized sides <= {TILE_MAX_SIDE}, got {s.width}x{s.height}")
        if (s.width, s.height) != (s.cols * plan.tile, s.rows * plan.tile):
            raise ValueError(f"{name}: scale {s} is not cols x rows tiles of {plan.tile} pixels")


def _check_mean_std(mean, std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    out = []
    for name, v in (("mean", mean), ("std", std)):
        try:
            vals = tuple(float(x) for x in v)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected 3 floats, got {v!r}") from None
        if len(vals) != 3:
            raise ValueError(f"{name}: expected 3 floats, got {len(vals)}")
        if not all(math.isfinite(x) for x in vals):
            raise ValueError(f"{name}: expected finite values, got {vals}")
        out.append(vals)
    if any(s == 0 for s in out[1]):
        raise ValueError(f"std: expected non-zero values, got {out[1]}")
    return out[0], out[1]


def multiscale_tile(
    image: torch.Tensor,
    plan: TilePlan,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    out_dtype: torch.dtype = torch.float32,
    *,
    exact: bool = True,
    out: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """NVILA's Dynamic-S2 preprocessing of one image (NVILA.md section 2), in one launch.

    image: uint8 (H, W, 3) (or (3, H, W)) RGB. For every scale of `plan`
    (nvila_kernels.tiling: plan_tiles, plan_single, plan_lite) the whole image is
    resized to (scale.height, scale.width) with Pillow's bicubic filter (a = -0.5,
    antialiased when shrinking; nvila_kernels.resample), cut into tile x tile tiles
    (row-major, scales in order) and normalized: (v / 255 - mean) / std per channel,
    as HF's SigLIP image processor. Returns (plan.n_tiles, 3, tile, tile) in out_dtype
    (float32, float16 or bfloat16).

    exact=True reproduces Pillow's fixed-point uint8 algorithm bit for bit (rounding
    and clipping after each pass, Pillow 13's pass order). exact=False keeps both
    passes in fp32 without intermediate rounding and clips the result to [0, 255].
    Caps: image and resized sides <= TILE_MAX_SIDE (16384), at most TILE_MAX_TILES
    (256) tiles and TILE_MAX_SCALES (8) scales.
    """
    image = _tile_image(image)
    H, W, _ = image.shape
    _check_tile_plan(plan, W, H)
    mean, std = _check_mean_std(mean, std)
    if out_dtype not in FLOAT_DTYPES:
        raise TypeError(f"out_dtype: expected float32, float16 or bfloat16, got {out_dtype!r}")
    if not isinstance(exact, bool):
        raise TypeError(f"exact: expected a bool, got {type(exact).__name__}")
    shape = (plan.n_tiles, 3, plan.tile, plan.tile)
    if out is not None:
        if isinstance(out, torch.Tensor) and out.dtype != out_dtype:
            raise TypeError(f"out: expected dtype {out_dtype} (out_dtype), got {out.dtype}")
        _check_out(out, shape, torch.empty(0, dtype=out_dtype, device=image.device), "image")

    chosen = backends.resolve("multiscale_tile", backend, image.device)
    if chosen == "reference":
        y = reference.multiscale_tile(image, plan, mean, std, out_dtype, exact)
        return y if out is None else out.copy_(y)
    if out is None:
        out = torch.empty(shape, dtype=out_dtype, device=image.device)
    widths = tuple(s.width for s in plan.scales)
    heights = tuple(s.height for s in plan.scales)
    coeffs = [t.to(image.device) for t in resample.plan_coeff_tensors(W, H, widths, heights)]
    rows = [s.rows for s in plan.scales]
    cols = [s.cols for s in plan.scales]
    vfirst = [resample.vertical_first(W, H, s.width, s.height) for s in plan.scales]
    _run("multiscale_tile", chosen, image, rows, cols, vfirst, *coeffs, list(mean), list(std), exact, out)
    return out


def multiscale_tile_batch(
    images: list[torch.Tensor],
    plans: list[TilePlan],
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    out_dtype: torch.dtype = torch.float32,
    *,
    exact: bool = True,
    backend: str | None = None,
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """multiscale_tile over images of different sizes, one plan per image.

    Returns (all tiles concatenated in image order, (sum of n_tiles, 3, tile, tile);
    each image's block size plan.block_size). Every image is tiled straight into its
    slice of the one output tensor (one launch per image).
    """
    if not isinstance(images, (list, tuple)) or not isinstance(plans, (list, tuple)):
        raise TypeError("images, plans: expected lists")
    if len(images) != len(plans) or not images:
        raise ValueError(f"images, plans: expected the same non-zero length, got {len(images)} and {len(plans)}")
    tiles = {p.tile if isinstance(p, TilePlan) else None for p in plans}
    if len(tiles) != 1 or None in tiles:
        raise ValueError(f"plans: expected TilePlans with one tile size, got {sorted(map(str, tiles))}")
    for i, im in enumerate(images):
        if not isinstance(im, torch.Tensor):
            raise TypeError(f"images[{i}]: expected a torch.Tensor, got {type(im).__name__}")
    devices = {im.device for im in images}
    if len(devices) != 1:
        raise ValueError(f"images: expected tensors on one device, got {sorted(map(str, devices))}")
    if out_dtype not in FLOAT_DTYPES:
        raise TypeError(f"out_dtype: expected float32, float16 or bfloat16, got {out_dtype!r}")
    T = plans[0].tile
    out = torch.empty(sum(p.n_tiles for p in plans), 3, T, T, dtype=out_dtype, device=images[0].device)
    t0 = 0
    for im, p in zip(images, plans, strict=True):
        multiscale_tile(im, p, mean, std, out_dtype, exact=exact, out=out[t0 : t0 + p.n_tiles], backend=backend)
        t0 += p.n_tiles
    return out, [p.block_size for p in plans]


# ---- FP8 -------------------------------------------------------------------------

FP8_DTYPES = reference.FP8_DTYPES
OUT_DTYPES = FLOAT_DTYPES


def _check_scale(scale: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str = "x") -> None:
    if not isinstance(scale, torch.Tensor):
        raise TypeError(f"{name}: expected a float32 torch.Tensor with one element, got {type(scale).__name__}")
    if scale.dtype != torch.float32 or scale.numel() != 1:
        raise ValueError(
            f"{name}: expected a float32 tensor with one element (per-tensor scale), "
            f"got {scale.dtype} of shape {tuple(scale.shape)}"
        )
    _check_same_device(scale, name, ref, ref_name)
    # A value check needs the value on the host: free for CPU tensors; on a GPU it
    # would be a device sync per call, so there it is the caller's contract.
    if scale.device.type == "cpu" and not torch.compiler.is_compiling() and not _is_fake(scale):
        v = float(scale.reshape(()))
        if not (v > 0 and v != float("inf")):
            raise ValueError(f"{name}: expected a positive finite scale, got {v}")


def _is_fake(t: torch.Tensor) -> bool:
    return torch._subclasses.fake_tensor.is_fake(t)


def fp8_quantize(
    x: torch.Tensor,
    scale: torch.Tensor | None = None,
    fp8_dtype: torch.dtype = torch.float8_e4m3fn,
    *,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor FP8 quantization: returns (q, scale) with x ~ q.float() * scale.

    x: any shape, float32/float16/bfloat16. fp8_dtype: float8_e4m3fn or float8_e5m2.
    Dynamic when `scale` is None: scale = max(amax, 1e-12) / fp8_max, computed on
    the device (no host sync); amax ignores NaN and +-inf. Static: `scale` is a
    positive float32 tensor with one element. The cast saturates: values beyond
    +-fp8_max and +-inf become +-fp8_max; NaN stays NaN. The returned scale is a
    0-d float32 tensor (the dequantization multiplier).
    """
    _check_float(x, "x")
    if fp8_dtype not in FP8_DTYPES:
        raise TypeError(f"fp8_dtype: expected torch.float8_e4m3fn or torch.float8_e5m2, got {fp8_dtype}")
    if x.numel() == 0:
        raise ValueError(f"x: expected a non-empty tensor, got shape {tuple(x.shape)}")
    if scale is not None:
        _check_scale(scale, "scale", x)
    chosen = backends.resolve("fp8_quantize", backend, x.device)
    if chosen == "reference":
        return reference.fp8_quantize(x, scale, fp8_dtype)
    x = x.contiguous()
    q = torch.empty(x.shape, dtype=fp8_dtype, device=x.device)
    scale_out = torch.empty((), dtype=torch.float32, device=x.device)
    s = None if scale is None else scale.reshape(())
    _run("fp8_quantize", chosen, x, s, q, scale_out)
    return q, scale_out


def fp8_gemm(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype = torch.bfloat16,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """out = (a * scale_a) @ (b * scale_b)^T + bias with fp32 accumulation.

    a: (M, K) float8_e4m3fn, b: (N, K) float8_e4m3fn (nn.Linear weight layout),
    scale_a / scale_b: float32 tensors with one element, bias: (N,) float or None,
    out_dtype: bfloat16, float16 or float32. Same semantics as
    torch._scaled_mm(a, b.t(), scale_a, scale_b, bias, out_dtype=out_dtype).
    """
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dtype != torch.float8_e4m3fn:
            raise TypeError(f"{name}: expected dtype torch.float8_e4m3fn, got {t.dtype}")
        if t.dim() != 2:
            raise ValueError(f"{name}: expected a 2-D tensor, got shape {tuple(t.shape)}")
    _check_same_device(b, "b", a, "a")
    M, K = a.shape
    N = b.shape[0]
    if b.shape[1] != K:
        raise ValueError(f"b: expected shape (N, K) with K = {K} (a is {tuple(a.shape)}), got {tuple(b.shape)}")
    if M == 0 or N == 0 or K == 0:
        raise ValueError(f"a, b: expected non-empty matrices, got a {tuple(a.shape)} and b {tuple(b.shape)}")
    _check_scale(scale_a, "scale_a", a, "a")
    _check_scale(scale_b, "scale_b", a, "a")
    if bias is not None:
        _check_float(bias, "bias")
        if tuple(bias.shape) != (N,):
            raise ValueError(f"bias: expected shape ({N},), got {tuple(bias.shape)}")
        _check_same_device(bias, "bias", a, "a")
    if out_dtype not in OUT_DTYPES:
        raise TypeError(f"out_dtype: expected torch.bfloat16, torch.float16 or torch.float32, got {out_dtype}")
    chosen = backends.resolve("fp8_gemm", backend, a.device)
    if chosen == "reference":
        return reference.fp8_gemm(a, b, scale_a, scale_b, bias, out_dtype)
    out = torch.empty((M, N), dtype=out_dtype, device=a.device)
    bias32 = None if bias is None else bias.to(torch.float32).contiguous()
    _run("fp8_gemm", chosen, a.contiguous(), b.contiguous(), scale_a.reshape(()), scale_b.reshape(()), bias32, out)
    return out
