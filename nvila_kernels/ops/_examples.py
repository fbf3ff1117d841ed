"""Small inputs that the ops' refusals (OpSpec.refusals) are made from."""

from __future__ import annotations

import torch

from ..tiling import ScalePlan, TilePlan, plan_lite, plan_tiles

PLAN = plan_tiles(100, 60, (28, 56), 28)  # 1 + 4 tiles of 28 pixels
H4 = dict(h=4, w=4)  # a 4 x 4 token grid per tile
NINE = TilePlan(100, 60, 28, (ScalePlan(28, 28, 1, 1),) * 9, (1, 1))  # one scale too many
ZERO_GRID = TilePlan(100, 60, 28, (ScalePlan(0, 0, 0, 0), ScalePlan(28, 28, 1, 1)), (1, 1))  # a hand-made 0 x 0 scale
LITE = plan_lite(100, 60, 28, 4)


def plan_with(scales, tile=28, w=100, h=60) -> TilePlan:
    return TilePlan(w, h, tile, tuple(scales), (1, 1))


def features(d, n=None, hw=16, C=8, dtype=torch.float32) -> torch.Tensor:
    """(n_tiles, h*w, C) tile features for PLAN with h = w = 4."""
    return torch.randn(PLAN.n_tiles if n is None else n, hw, C, device=d).to(dtype)


def image(d, shape=(60, 100, 3), dtype=torch.uint8) -> torch.Tensor:
    """A random image for PLAN."""
    return torch.randint(0, 256, shape, dtype=torch.uint8).to(dtype).to(d)


def fp8(d, shape) -> torch.Tensor:
    from ..reference import fp8_quantize

    return fp8_quantize(torch.randn(shape))[0].to(d)


def one(d, v=1.0, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(v, dtype=dtype, device=d)


def padded_view(t: torch.Tensor) -> torch.Tensor:
    """t's values in a view whose last dim is padded (stride(-2) > size(-1))."""
    big = torch.zeros(*t.shape[:-1], t.shape[-1] + 3, dtype=t.dtype, device=t.device)
    big[..., : t.shape[-1]] = t
    return big[..., : t.shape[-1]]


def same_as_contiguous(fn, view: torch.Tensor):
    """(fn(view), fn(a contiguous copy of view)): a view is accepted when the two agree."""
    return fn(view), fn(view.contiguous())
