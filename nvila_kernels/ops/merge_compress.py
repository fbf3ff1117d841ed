"""merge_compress: multiscale_merge + the cut into tile blocks + spatial_compress, in one pass."""

from __future__ import annotations

import torch

from .. import reference
from ..tiling import TilePlan
from . import _examples as ex
from ._checks import check_eps, check_layernorm, check_positive_int, check_token_channels
from ._spec import FLOAT_NAMES as F
from ._spec import OTHER_DEVICE as OTHER
from ._spec import Accepted, OpSpec, Output, Refusal
from .multiscale_merge import check_merge_inputs, merge_refusals

__all__ = ["merge_compress"]


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
    args = dict(features=features, plan=plan, k=k, ln_weight=ln_weight, ln_bias=ln_bias, eps=eps, h=h, w=w)
    return SPEC.run(args, out, backend)


def check(a: dict) -> Output:
    features, plan, k, h, w = a["features"], a["plan"], a["k"], a["h"], a["w"]
    C = check_merge_inputs(features, plan, h, w)
    check_positive_int(k, "k")
    check_eps(a["eps"])
    S = len(plan.scales)
    D = k * k * S * C
    check_token_channels(D, f"k*k*S*C for k={k}, S={S}, C={C}")
    what = f"(k*k*S*C,) for k={k}, S={S} scales, C={C}"
    check_layernorm(a["ln_weight"], a["ln_bias"], D, what, features, "features")
    last = plan.scales[-1]
    shape = (last.rows * -(-h // k) * last.cols * -(-w // k), D)
    return Output(shape, features.dtype, features, "features", "the dtype of features")


def kernel_args(a: dict, out: torch.Tensor) -> tuple:
    plan, wt, b = a["plan"], a["ln_weight"], a["ln_bias"]
    wt = None if wt is None else wt.to(torch.float32).contiguous()
    b = None if b is None else b.to(torch.float32).contiguous()
    rows = [s.rows for s in plan.scales]
    cols = [s.cols for s in plan.scales]
    return a["features"].contiguous(), rows, cols, a["h"], a["w"], a["k"], wt, b, float(a["eps"]), out


_last = ex.PLAN.scales[-1]
D = 2 * 2 * 2 * 8  # k = 2, two scales, C = 8
mc, feats, PLAN, H4 = merge_compress, ex.features, ex.PLAN, ex.H4
same = ex.same_as_contiguous
SPEC = OpSpec(
    name="merge_compress",
    # multiscale_merge's plan, then spatial_compress's k / LayerNorm per h x w block; out is (tokens, k*k*S*C)
    schema=(
        "(Tensor features, int[] scale_rows, int[] scale_cols, int h, int w, int k, Tensor? ln_weight, "
        "Tensor? ln_bias, float eps, Tensor(a!) out) -> ()"
    ),
    reference=reference.merge_compress,
    check=check,
    kernel_args=kernel_args,
    example=lambda d, backend: mc(feats(d), PLAN, 2, **H4, backend=backend),
    differentiable=("features", "ln_weight", "ln_bias"),
    accepts=(
        Accepted("mc-features-strided-view", "features", "any strides (copied)", "padded channels",
                 lambda d, b: same(lambda v: mc(v, PLAN, 2, **H4, backend=b), ex.padded_view(feats(d)))),
    ),
    refusals=merge_refusals("mc", mc, (2,), (_last.rows * 2 * _last.cols * 2, D)) + (
        Refusal("mc-k-zero", "k", "int >= 1 (k > h, w allowed)", "0", ValueError, "k: expected an int >= 1",
                lambda d: mc(feats(d), PLAN, 0, **H4)),
        Refusal("mc-k-token-channels", "k", "k*k*S*C <= 2^31 - 1", "k = 2, S = 2, C = 2^28 (meta features)",
                ValueError, "k: expected at most 2^31 - 1 output channels per token",
                lambda d: mc(torch.empty(PLAN.n_tiles, 16, 2**28, device=OTHER), PLAN, 2, **H4)),
        Refusal("mc-eps-negative", "eps", "finite float >= 0", "-1.0", ValueError,
                "eps: expected a float >= 0 and finite", lambda d: mc(feats(d), PLAN, 2, None, None, -1.0, **H4)),
        Refusal("mc-eps-inf", "eps", "finite float >= 0", "inf", ValueError, "eps: expected a float >= 0 and finite",
                lambda d: mc(feats(d), PLAN, 2, torch.ones(D, device=d), None, float("inf"), **H4)),
        Refusal("mc-ln_weight-shape", "ln_weight", "(k*k*S*C,)", "(k*k*C,), one scale's", ValueError,
                f"ln_weight: expected shape ({D},) = (k*k*S*C,)",
                lambda d: mc(feats(d), PLAN, 2, torch.ones(D // 2, device=d), **H4)),
        Refusal("mc-ln_weight-dtype", "ln_weight", F, "float64", TypeError, "ln_weight: expected dtype float32",
                lambda d: mc(feats(d), PLAN, 2, torch.ones(D, dtype=torch.float64, device=d), **H4)),
        Refusal("mc-ln_weight-device", "ln_weight", "features' device", "meta", ValueError,
                "ln_weight: expected a tensor on", lambda d: mc(feats(d), PLAN, 2, torch.ones(D, device=OTHER), **H4)),
        Refusal("mc-ln_bias-without-weight", "ln_bias", "only with ln_weight", "ln_bias alone", ValueError,
                "ln_bias: given without ln_weight",
                lambda d: mc(feats(d), PLAN, 2, None, torch.ones(D, device=d), **H4)),
    ),
)  # fmt: skip
