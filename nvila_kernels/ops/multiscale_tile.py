"""multiscale_tile: NVILA's Dynamic-S2 preprocessing of one image in one launch
(and multiscale_tile_batch, one launch per image into one output)."""

from __future__ import annotations

import math

import torch

from .. import reference, resample
from ..tiling import TilePlan, plan_single, plan_tiles
from . import _examples as ex
from ._checks import FLOAT_DTYPES, check_plan_type, check_scale_grids, check_tensor
from ._spec import FLOAT_NAMES as F
from ._spec import OTHER_DEVICE as OTHER
from ._spec import Accepted, OpSpec, Output, Refusal

__all__ = ["multiscale_tile", "multiscale_tile_batch"]

# caps (int32 coefficient and pixel offsets stay far from overflow)
TILE_MAX_SCALES = 8  # kTileMaxScales in csrc/include/nvila/multiscale_tile.h
TILE_MAX_SIDE = 16384  # image sides and resized sides, in pixels
TILE_MAX_TILES = 256  # tiles per image


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
    args = dict(image=image, plan=plan, mean=mean, std=std, out_dtype=out_dtype, exact=exact)
    return SPEC.run(args, out, backend)


def _checked_image(image, name: str = "image") -> torch.Tensor:
    """Validate one image; returns it as a contiguous (H, W, 3) view or copy."""
    check_tensor(image, name)
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


def _check_plan(plan: TilePlan, W: int, H: int) -> None:
    check_plan_type(plan)
    if (plan.image_width, plan.image_height) != (W, H):
        raise ValueError(f"plan: made for a {plan.image_width}x{plan.image_height} image, got a {W}x{H} image (W x H)")
    if not 1 <= len(plan.scales) <= TILE_MAX_SCALES:
        raise ValueError(f"plan: expected 1 to {TILE_MAX_SCALES} scales, got {len(plan.scales)}")
    if isinstance(plan.tile, bool) or not isinstance(plan.tile, int) or plan.tile < 1:
        raise ValueError(f"plan: expected a tile size (plan.tile) >= 1, got {plan.tile!r}")
    check_scale_grids(plan)
    if plan.n_tiles > TILE_MAX_TILES:
        raise ValueError(f"plan: expected at most {TILE_MAX_TILES} tiles, got {plan.n_tiles}")
    for s in plan.scales:
        if s.width > TILE_MAX_SIDE or s.height > TILE_MAX_SIDE:
            raise ValueError(f"plan: expected resized sides <= {TILE_MAX_SIDE}, got {s.width}x{s.height}")
        if (s.width, s.height) != (s.cols * plan.tile, s.rows * plan.tile):
            raise ValueError(f"plan: scale {s} is not cols x rows tiles of {plan.tile} pixels")


def _checked_floats(name: str, v) -> tuple[float, ...]:
    """mean or std: 3 finite floats."""
    try:
        vals = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected 3 floats, got {v!r}") from None
    if len(vals) != 3:
        raise ValueError(f"{name}: expected 3 floats, got {len(vals)}")
    if not all(math.isfinite(x) for x in vals):
        raise ValueError(f"{name}: expected finite values, got {vals}")
    return vals


def _check_out_dtype(out_dtype) -> None:
    if out_dtype not in FLOAT_DTYPES:
        raise TypeError(f"out_dtype: expected float32, float16 or bfloat16, got {out_dtype!r}")


def check(a: dict) -> Output:
    """Also puts the image back as (H, W, 3) and mean / std as float tuples."""
    image = a["image"] = _checked_image(a["image"])
    H, W, _ = image.shape
    plan = a["plan"]
    _check_plan(plan, W, H)
    a["mean"] = _checked_floats("mean", a["mean"])
    std = a["std"] = _checked_floats("std", a["std"])
    if any(s == 0 for s in std):
        raise ValueError(f"std: expected non-zero values, got {std}")
    _check_out_dtype(a["out_dtype"])
    if not isinstance(a["exact"], bool):
        raise TypeError(f"exact: expected a bool, got {type(a['exact']).__name__}")
    return Output((plan.n_tiles, 3, plan.tile, plan.tile), a["out_dtype"], image, "image", "out_dtype")


def kernel_args(a: dict, out: torch.Tensor) -> tuple:
    image, plan = a["image"], a["plan"]
    H, W, _ = image.shape
    widths = tuple(s.width for s in plan.scales)
    heights = tuple(s.height for s in plan.scales)
    coeffs = [t.to(image.device) for t in resample.plan_coeff_tensors(W, H, widths, heights)]
    rows = [s.rows for s in plan.scales]
    cols = [s.cols for s in plan.scales]
    vfirst = [resample.vertical_first(W, H, s.width, s.height) for s in plan.scales]
    return image, rows, cols, vfirst, *coeffs, list(a["mean"]), list(a["std"]), a["exact"], out


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
        check_tensor(im, f"images[{i}]")
    devices = {im.device for im in images}
    if len(devices) != 1:
        raise ValueError(f"images: expected tensors on one device, got {sorted(map(str, devices))}")
    _check_out_dtype(out_dtype)
    T = plans[0].tile
    out = torch.empty(sum(p.n_tiles for p in plans), 3, T, T, dtype=out_dtype, device=images[0].device)
    t0 = 0
    for im, p in zip(images, plans, strict=True):
        multiscale_tile(im, p, mean, std, out_dtype, exact=exact, out=out[t0 : t0 + p.n_tiles], backend=backend)
        t0 += p.n_tiles
    return out, [p.block_size for p in plans]


mt, mtb, img, PLAN = multiscale_tile, multiscale_tile_batch, ex.image, ex.PLAN
MTB = "multiscale_tile_batch"
OUT = (PLAN.n_tiles, 3, 28, 28)
same, SMALL = ex.same_as_contiguous, plan_tiles(5, 3, (4, 8), 4)
SPEC = OpSpec(
    name="multiscale_tile",
    # one image (H, W, 3) uint8 -> every tile of every scale (n_tiles, 3, T, T); per-scale grids and pass
    # order, Pillow's fixed-point bicubic coefficients per output column / row (nvila_kernels/resample.py)
    schema=(
        "(Tensor image, int[] scale_rows, int[] scale_cols, bool[] vertical_first, Tensor xbounds, Tensor xweights, "
        "Tensor ybounds, Tensor yweights, float[] mean, float[] std, bool exact, Tensor(a!) out) -> ()"
    ),
    reference=reference.multiscale_tile,
    check=check,
    kernel_args=kernel_args,
    example=lambda d, backend: mt(img(d), PLAN, backend=backend),
    accepts=(
        # a 5x3 image, upscaled (few taps): these run the (slow) kernels on every backend
        Accepted("mt-image-chw-view", "image", "(3, H, W) and any strides (copied)", "channels-first",
                 lambda d, b: (lambda im: (mt(im.permute(2, 0, 1).contiguous(), SMALL, backend=b),
                                           mt(im, SMALL, backend=b)))(img(d, (3, 5, 3)))),
        Accepted("mt-image-strided-view", "image", "any strides (copied)", "a crop of a larger image",
                 lambda d, b: same(lambda v: mt(v, SMALL, backend=b), img(d, (5, 7, 3))[1:4, 1:6])),
    ),
    refusals=(
        Refusal("mt-image-type", "image", "a torch.Tensor", "a list", TypeError, "image: expected a torch.Tensor",
                lambda d: mt([[0]], PLAN)),
        Refusal("mt-image-dtype", "image", "uint8", "float32", TypeError, "image: expected dtype uint8",
                lambda d: mt(img(d, dtype=torch.float32), PLAN)),
        Refusal("mt-image-rank", "image", "(H, W, 3) or (3, H, W)", "(H, W)", ValueError,
                "image: expected shape (H, W, 3) or (3, H, W)", lambda d: mt(img(d)[..., 0], PLAN)),
        Refusal("mt-image-channels", "image", "3 channels", "(H, W, 4)", ValueError,
                "image: expected shape (H, W, 3) or (3, H, W)", lambda d: mt(img(d, (60, 100, 4)), PLAN)),
        Refusal("mt-image-empty", "image", "H, W >= 1", "H = 0", ValueError, "image: expected a non-empty image",
                lambda d: mt(img(d, (0, 100, 3)), PLAN)),
        Refusal("mt-image-side", "image", "H, W <= 16384", "H = 16385", ValueError,
                "image: expected height and width <= 16384", lambda d: mt(img(d, (16385, 1, 3)), PLAN)),
        Refusal("mt-plan-type", "plan", "a TilePlan", "None", TypeError,
                "plan: expected a nvila_kernels.tiling.TilePlan", lambda d: mt(img(d), None)),
        Refusal("mt-plan-image-size", "plan", "made for this image's W x H", "a plan for 100 x 61", ValueError,
                "plan: made for a 100x61 image, got a 100x60 image",
                lambda d: mt(img(d), plan_tiles(100, 61, (28, 56), 28))),
        Refusal("mt-plan-scales", "plan", "1 to 8 scales", "9 scales", ValueError, "plan: expected 1 to 8 scales",
                lambda d: mt(img(d), ex.NINE)),
        Refusal("mt-plan-tiles", "plan", "<= 256 tiles", "17 x 17 + 1 tiles", ValueError,
                "plan: expected at most 256 tiles", lambda d: mt(img(d), plan_tiles(100, 60, (28, 28 * 17), 28, 289))),
        Refusal("mt-plan-side", "plan", "resized sides <= 16384", "a 16400-pixel tile", ValueError,
                "plan: expected resized sides <= 16384", lambda d: mt(img(d), plan_single(100, 60, 16400))),
        Refusal("mt-plan-inconsistent", "plan", "scale sides = cols, rows x tile",
                "a 56-pixel scale of 1 x 1 28-pixel tiles", ValueError, "plan: scale",
                lambda d: mt(img(d), ex.plan_with([ex.ScalePlan(56, 56, 1, 1)]))),
        Refusal("mt-plan-tile", "plan", "plan.tile int >= 1", "0", ValueError,
                "plan: expected a tile size (plan.tile) >= 1",
                lambda d: mt(img(d), ex.plan_with([ex.ScalePlan(0, 0, 1, 1)], tile=0))),
        Refusal("mt-plan-grid", "plan", "every scale rows, cols ints >= 1", "a 0 x 0 scale", ValueError,
                "plan: expected every scale's rows and cols to be ints >= 1", lambda d: mt(img(d), ex.ZERO_GRID)),
        Refusal("mt-mean-type", "mean", "3 finite floats", "None", TypeError, "mean: expected 3 floats",
                lambda d: mt(img(d), PLAN, None)),
        Refusal("mt-mean-text", "mean", "3 finite floats", "'abc'", TypeError, "mean: expected 3 floats",
                lambda d: mt(img(d), PLAN, "abc")),
        Refusal("mt-mean-length", "mean", "3 finite floats", "2 floats", ValueError, "mean: expected 3 floats, got 2",
                lambda d: mt(img(d), PLAN, (0.5, 0.5))),
        Refusal("mt-mean-inf", "mean", "3 finite floats", "inf", ValueError, "mean: expected finite values",
                lambda d: mt(img(d), PLAN, (float("inf"), 0.5, 0.5))),
        Refusal("mt-std-zero", "std", "3 finite non-zero floats", "0", ValueError, "std: expected non-zero values",
                lambda d: mt(img(d), PLAN, std=(0.5, 0.0, 0.5))),
        Refusal("mt-std-nan", "std", "3 finite non-zero floats", "nan", ValueError, "std: expected finite values",
                lambda d: mt(img(d), PLAN, std=(0.5, float("nan"), 0.5))),
        Refusal("mt-out_dtype", "out_dtype", F, "int32", TypeError, f"out_dtype: expected {F}",
                lambda d: mt(img(d), PLAN, out_dtype=torch.int32)),
        Refusal("mt-exact", "exact", "bool", "1", TypeError, "exact: expected a bool",
                lambda d: mt(img(d), PLAN, exact=1)),
        Refusal("mt-out-shape", "out", "(n_tiles, 3, tile, tile)", "one tile short", ValueError,
                f"out: expected shape {OUT}", lambda d: mt(img(d), PLAN, out=torch.empty(OUT, device=d)[1:])),
        Refusal("mt-out-dtype", "out", "out_dtype", "float16 for out_dtype float32", TypeError,
                "out: expected dtype torch.float32 (out_dtype)",
                lambda d: mt(img(d), PLAN, out=torch.empty(OUT, dtype=torch.float16, device=d))),
        Refusal("mt-out-device", "out", "image's device", "meta", ValueError, "out: expected a tensor on",
                lambda d: mt(img(d), PLAN, out=torch.empty(OUT, device=OTHER))),
        Refusal("mt-out-strided", "out", "contiguous", "a transposed view", ValueError,
                "out: expected a contiguous tensor",
                lambda d: mt(img(d), PLAN, out=torch.empty(OUT, device=d).transpose(2, 3))),
        # multiscale_tile_batch: its own arguments, then multiscale_tile's per image
        Refusal("mtb-images-type", "images", "lists (or tuples)", "a tensor", TypeError,
                "images, plans: expected lists", lambda d: mtb(img(d), [PLAN]), MTB),
        Refusal("mtb-lengths", "images", "as many images as plans, >= 1", "2 images, 1 plan", ValueError,
                "images, plans: expected the same non-zero length", lambda d: mtb([img(d)] * 2, [PLAN]), MTB),
        Refusal("mtb-empty", "images", "as many images as plans, >= 1", "no images", ValueError,
                "images, plans: expected the same non-zero length", lambda d: mtb([], []), MTB),
        Refusal("mtb-plans-tile", "plans", "TilePlans of one tile size", "tiles 28 and 56", ValueError,
                "plans: expected TilePlans with one tile size",
                lambda d: mtb([img(d)] * 2, [PLAN, plan_single(100, 60, 56)]), MTB),
        Refusal("mtb-image-item", "images", "torch.Tensors", "a list", TypeError,
                "images[1]: expected a torch.Tensor", lambda d: mtb([img(d), [0]], [PLAN, PLAN]), MTB),
        Refusal("mtb-devices", "images", "one device", "the backend's device and meta", ValueError,
                "images: expected tensors on one device", lambda d: mtb([img(d), img(OTHER)], [PLAN] * 2), MTB),
        Refusal("mtb-out_dtype", "out_dtype", F, "the string 'float32'", TypeError, f"out_dtype: expected {F}",
                lambda d: mtb([img(d)], [PLAN], out_dtype="float32"), MTB),
        Refusal("mtb-plan-image-size", "plan", "plans[i] made for images[i]", "a plan for 10 x 10", ValueError,
                "plan: made for a 10x10 image", lambda d: mtb([img(d)], [plan_single(10, 10, 28)]), MTB),
    ),
)  # fmt: skip
