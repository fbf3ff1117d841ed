"""multiscale_merge: NVILA's multi-scale merge of Dynamic-S2 tile features."""

from __future__ import annotations

import torch

from .. import reference
from ..tiling import TilePlan
from . import _examples as ex
from ._checks import check_float, check_plan_type, check_positive_int, check_scale_grids
from ._spec import FLOAT_NAMES as F
from ._spec import OTHER_DEVICE as OTHER
from ._spec import Accepted, OpSpec, Output, Refusal

__all__ = ["multiscale_merge"]

MERGE_MAX_SCALES = 8  # kMergeMaxScales in csrc/include/nvila/multiscale_merge.h


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
    return SPEC.run(dict(features=features, plan=plan, h=h, w=w), out, backend)


def check_merge_inputs(features: torch.Tensor, plan: TilePlan, h: int, w: int) -> int:
    """Checks the tile features, plan and tile grid of multiscale_merge / merge_compress; returns C."""
    check_float(features, "features")
    check_plan_type(plan)
    if plan.thumbnail:
        raise ValueError("plan: NVILA-Lite plans with a thumbnail are not merged (each tile is its own image)")
    if not 1 <= len(plan.scales) <= MERGE_MAX_SCALES:
        raise ValueError(f"plan: expected 1 to {MERGE_MAX_SCALES} scales, got {len(plan.scales)}")
    check_scale_grids(plan)
    check_positive_int(h, "h")
    check_positive_int(w, "w")
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


def check(a: dict) -> Output:
    features, plan, h, w = a["features"], a["plan"], a["h"], a["w"]
    C = check_merge_inputs(features, plan, h, w)
    last = plan.scales[-1]
    shape = (len(plan.scales) * C, last.rows * h, last.cols * w)
    return Output(shape, features.dtype, features, "features", "the dtype of features")


def kernel_args(a: dict, out: torch.Tensor) -> tuple:
    plan = a["plan"]
    rows = [s.rows for s in plan.scales]
    cols = [s.cols for s in plan.scales]
    return a["features"].contiguous(), rows, cols, a["h"], a["w"], out


def merge_refusals(p: str, fn, k: tuple, out_shape: tuple) -> tuple[Refusal, ...]:
    """The refusals multiscale_merge (p "mm") and merge_compress (p "mc", k = (2,)) share:
    fn(features, plan, *k, h=, w=, out=) refuses them alike."""
    feats, PLAN, H4 = ex.features, ex.PLAN, ex.H4
    s = out_shape
    return (
        Refusal(f"{p}-features-type", "features", "a torch.Tensor", "None", TypeError,
                "features: expected a torch.Tensor", lambda d: fn(None, PLAN, *k, **H4)),
        Refusal(f"{p}-features-dtype", "features", F, "float64", TypeError, f"features: expected dtype {F}",
                lambda d: fn(feats(d, dtype=torch.float64), PLAN, *k, **H4)),
        Refusal(f"{p}-features-rank", "features", "3-D (n_tiles, h*w, C)", "2-D", ValueError,
                "features: expected a 3-D (n_tiles, h*w, C) tensor", lambda d: fn(feats(d)[0], PLAN, *k, **H4)),
        Refusal(f"{p}-features-tiles", "features", "plan.n_tiles tiles", "one tile more", ValueError,
                f"features: expected {PLAN.n_tiles} tiles (plan.n_tiles)",
                lambda d: fn(feats(d, PLAN.n_tiles + 1), PLAN, *k, **H4)),
        Refusal(f"{p}-features-tokens", "features", "h*w tokens per tile", "15 tokens for h = w = 4", ValueError,
                "features: expected h*w = 16 tokens per tile", lambda d: fn(feats(d, hw=15), PLAN, *k, **H4)),
        Refusal(f"{p}-features-empty", "features", "C >= 1", "C = 0", ValueError,
                "features: expected at least one channel", lambda d: fn(feats(d, C=0), PLAN, *k, **H4)),
        Refusal(f"{p}-plan-type", "plan", "a TilePlan", "a tuple", TypeError,
                "plan: expected a nvila_kernels.tiling.TilePlan", lambda d: fn(feats(d), (1, 2), *k, **H4)),
        Refusal(f"{p}-plan-thumbnail", "plan", "no thumbnail (plan_tiles, plan_single)", "a plan_lite plan",
                ValueError, "plan: NVILA-Lite plans with a thumbnail are not merged",
                lambda d: fn(feats(d, ex.LITE.n_tiles), ex.LITE, *k, **H4)),
        Refusal(f"{p}-plan-scales", "plan", "1 to 8 scales", "9 scales", ValueError, "plan: expected 1 to 8 scales",
                lambda d: fn(feats(d, 9), ex.NINE, *k, **H4)),
        Refusal(f"{p}-plan-grid", "plan", "every scale rows, cols ints >= 1", "a hand-made 0 x 0 scale", ValueError,
                "plan: expected every scale's rows and cols to be ints >= 1",
                lambda d: fn(feats(d, 1), ex.ZERO_GRID, *k, **H4)),
        Refusal(f"{p}-h-zero", "h", "int >= 1", "0", ValueError, "h: expected an int >= 1",
                lambda d: fn(feats(d), PLAN, *k, h=0, w=4)),
        Refusal(f"{p}-w-bool", "w", "int >= 1", "True", ValueError, "w: expected an int >= 1",
                lambda d: fn(feats(d), PLAN, *k, h=4, w=True)),
        Refusal(f"{p}-out-shape", "out", "the output's shape", "one more row", ValueError, f"out: expected shape {s}",
                lambda d: fn(feats(d), PLAN, *k, **H4, out=torch.empty(s[0] + 1, *s[1:], device=d))),
        Refusal(f"{p}-out-dtype", "out", "features' dtype", "float16", TypeError,
                "out: expected dtype torch.float32 (the dtype of features)",
                lambda d: fn(feats(d), PLAN, *k, **H4, out=torch.empty(s, dtype=torch.float16, device=d))),
        Refusal(f"{p}-out-device", "out", "features' device", "meta", ValueError, "out: expected a tensor on",
                lambda d: fn(feats(d), PLAN, *k, **H4, out=torch.empty(s, device=OTHER))),
        Refusal(f"{p}-out-strided", "out", "contiguous", "a padded view", ValueError,
                "out: expected a contiguous tensor",
                lambda d: fn(feats(d), PLAN, *k, **H4, out=ex.padded_view(torch.empty(s, device=d)))),
    )  # fmt: skip


_last = ex.PLAN.scales[-1]
mm, same = multiscale_merge, ex.same_as_contiguous
SPEC = OpSpec(
    name="multiscale_merge",
    # the plan's scales as (rows, cols) lists, ascending; out is (S*C, rows[-1]*h, cols[-1]*w)
    schema="(Tensor features, int[] scale_rows, int[] scale_cols, int h, int w, Tensor(a!) out) -> ()",
    reference=reference.multiscale_merge,
    check=check,
    kernel_args=kernel_args,
    example=lambda d, backend: multiscale_merge(ex.features(d), ex.PLAN, **ex.H4, backend=backend),
    differentiable=("features",),
    accepts=(
        Accepted(
            "mm-features-strided-view",
            "features",
            "any strides (copied)",
            "padded channels",
            lambda d, b: same(lambda v: mm(v, ex.PLAN, **ex.H4, backend=b), ex.padded_view(ex.features(d))),
        ),
    ),
    refusals=merge_refusals("mm", multiscale_merge, (), (2 * 8, _last.rows * 4, _last.cols * 4)),
)
