"""Every op's accepted inputs and the error for each violation: one case per row of
docs/INPUTS.md.

Where a case runs follows from where the input is decided:
- a refusal made by the argument checks (nvila_kernels.functional, the planners, the
  layers) happens before a backend is chosen, so it is tested once, with backend
  selection replaced by a failure: the test proves no backend is reached;
- a refusal made by backend selection itself (an unknown or unavailable backend) is
  tested once, as is;
- an accepted input (strided, transposed, expanded views) and a refusal a kernel itself
  makes run on every backend present (reference, cpu, emu, Triton (its interpreter
  without a GPU), cuda with a GPU): a view must give what the same backend gives for a
  contiguous copy.
A refused input must raise the documented exception type with a message naming the
argument. test_doc_table_matches_the_cases keeps docs/INPUTS.md and this file in step
(ids, ops, arguments, error types and fragments).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from conftest import KERNEL_BACKENDS, TOL, backend_device
from torch import nn

import nvila_kernels as nk
from nvila_kernels import reference
from nvila_kernels.layers import Fp8Linear, SpatialCompress, TemporalPool, quantize_linears
from nvila_kernels.tiling import ScalePlan, TilePlan, plan_lite, plan_single, plan_tiles

DOC = Path(__file__).resolve().parents[1] / "docs" / "INPUTS.md"
BACKENDS = ["reference"] + KERNEL_BACKENDS  # every backend that validates its inputs here
OTHER = "meta"  # a second device on any machine, to mix devices
E4M3 = torch.float8_e4m3fn


class Case(NamedTuple):
    id: str
    op: str
    argument: str
    accepted: str
    violation: str
    exc: type[Exception] | None  # None: accepted; call returns (got, expected)
    match: str  # message fragment (plain text); "" for accepted rows
    call: Any  # call(backend, device)
    stage: str  # CHECKS, SELECTION or BACKEND: who decides (see the module docstring)


CHECKS = "checks"  # refused by the argument checks, before a backend is chosen: run once
SELECTION = "selection"  # refused by backend selection: run once
BACKEND = "backend"  # accepted, or refused by a kernel: run on every backend
CASES: list[Case] = []


def case(id, op, argument, accepted, violation, exc, match, call, stage=None):
    """One row of docs/INPUTS.md. stage defaults to BACKEND for accepted inputs, CHECKS for refusals."""
    if stage is None:
        stage = BACKEND if exc is None else CHECKS
    CASES.append(Case(id, op, argument, accepted, violation, exc, match, call, stage))


# ---- inputs -------------------------------------------------------------------------


def sc_x(d, shape=(1, 4, 4, 3), dtype=torch.float32):
    return torch.randn(shape, device=d).to(dtype)


PLAN = plan_tiles(100, 60, (28, 56), 28)  # 1 + n tiles of 28 pixels
H4 = dict(h=4, w=4)
# a 5x3 image, upscaled (few taps): the views below run the (slow) kernels on every backend
SMALL_PLAN = plan_tiles(5, 3, (4, 8), 4)


def feats(d, n=None, hw=16, C=8, dtype=torch.float32):
    return torch.randn(PLAN.n_tiles if n is None else n, hw, C, device=d).to(dtype)


def img(d, shape=(60, 100, 3), dtype=torch.uint8):
    return torch.randint(0, 256, shape, dtype=torch.uint8).to(dtype).to(d)


def fp8(d, shape):
    return reference.fp8_quantize(torch.randn(shape))[0].to(d)


def one(d, v=1.0, dtype=torch.float32):
    return torch.tensor(v, dtype=dtype, device=d)


def plan_with(scales, tile=28, w=100, h=60):
    return TilePlan(w, h, tile, tuple(scales), (1, 1))


def padded_view(t: torch.Tensor) -> torch.Tensor:
    """t's values in a view whose last dim is padded (stride(-2) > size(-1))."""
    big = torch.zeros(*t.shape[:-1], t.shape[-1] + 3, dtype=t.dtype, device=t.device)
    big[..., : t.shape[-1]] = t
    return big[..., : t.shape[-1]]


def same_as_contiguous(fn, view: torch.Tensor):
    """(fn(view), fn(a contiguous copy of view)): a view is accepted when the two agree."""
    return fn(view), fn(view.contiguous())


# ---- spatial_compress -----------------------------------------------------------------

SC = "spatial_compress"
sc = nk.spatial_compress
F = "float32, float16 or bfloat16"
case(
    "sc-x-type",
    SC,
    "x",
    "a torch.Tensor",
    "a list",
    TypeError,
    "x: expected a torch.Tensor",
    lambda b, d: sc([[1.0]], 2, backend=b),
)
case(
    "sc-x-dtype",
    SC,
    "x",
    F,
    "float64",
    TypeError,
    "x: expected dtype float32, float16 or bfloat16",
    lambda b, d: sc(sc_x(d, dtype=torch.float64), 2, backend=b),
)
case(
    "sc-x-rank",
    SC,
    "x",
    "4-D (B, H, W, C)",
    "3-D",
    ValueError,
    "x: expected a 4-D (B, H, W, C) tensor",
    lambda b, d: sc(sc_x(d, (4, 4, 3)), 2, backend=b),
)
case(
    "sc-x-empty",
    SC,
    "x",
    "non-empty",
    "H = 0",
    ValueError,
    "x: expected a non-empty tensor",
    lambda b, d: sc(sc_x(d, (1, 0, 4, 3)), 2, backend=b),
)
case(
    "sc-x-padded-view",
    SC,
    "x",
    "any strides with channel stride 1 (read in place)",
    "padded rows (view)",
    None,
    "",
    lambda b, d: same_as_contiguous(lambda v: sc(v, 2, backend=b), padded_view(sc_x(d, (2, 5, 3, 4)))),
)
case(
    "sc-x-transposed-view",
    SC,
    "x",
    "H/W transposed view (read in place)",
    "transposed H and W",
    None,
    "",
    lambda b, d: same_as_contiguous(lambda v: sc(v, 2, backend=b), sc_x(d, (2, 5, 3, 4)).transpose(1, 2)),
)
case(
    "sc-x-expanded-view",
    SC,
    "x",
    "expanded (stride 0) view",
    "expand of one token",
    None,
    "",
    lambda b, d: same_as_contiguous(lambda v: sc(v, 2, backend=b), sc_x(d, (1, 1, 1, 8)).expand(2, 3, 3, 8)),
)
case(
    "sc-x-channel-strided-view",
    SC,
    "x",
    "channel stride != 1 (copied first)",
    "every other channel",
    None,
    "",
    lambda b, d: same_as_contiguous(lambda v: sc(v, 2, backend=b), sc_x(d, (1, 4, 4, 6))[..., ::2]),
)
case(
    "sc-k-zero",
    SC,
    "k",
    "int >= 1 (k > H, W allowed: zero padding)",
    "0",
    ValueError,
    "k: expected an int >= 1",
    lambda b, d: sc(sc_x(d), 0, backend=b),
)
case(
    "sc-k-float",
    SC,
    "k",
    "int >= 1",
    "2.0",
    ValueError,
    "k: expected an int >= 1",
    lambda b, d: sc(sc_x(d), 2.0, backend=b),
)
case(
    "sc-k-bool",
    SC,
    "k",
    "int >= 1",
    "True",
    ValueError,
    "k: expected an int >= 1",
    lambda b, d: sc(sc_x(d), True, backend=b),
)
case(
    "sc-k-token-channels",
    SC,
    "k",
    "k*k*C <= 2^31 - 1 (kernels index a token's channels in 32 bits)",
    "k = 2, C = 2^29 (meta x)",
    ValueError,
    "k: expected at most 2^31 - 1 output channels per token",
    lambda b, d: sc(torch.empty(1, 1, 1, 2**29, device=OTHER), 2, backend=b),
)
case(
    "sc-eps-negative",
    SC,
    "eps",
    "finite float >= 0",
    "-1.0",
    ValueError,
    "eps: expected a float >= 0 and finite",
    lambda b, d: sc(sc_x(d), 2, one(d, 1.0).expand(12), None, -1.0, backend=b),
)
case(
    "sc-eps-nan",
    SC,
    "eps",
    "finite float >= 0",
    "nan",
    ValueError,
    "eps: expected a float >= 0 and finite",
    lambda b, d: sc(sc_x(d), 2, None, None, float("nan"), backend=b),
)
case(
    "sc-eps-inf",
    SC,
    "eps",
    "finite float >= 0",
    "inf",
    ValueError,
    "eps: expected a float >= 0 and finite",
    lambda b, d: sc(sc_x(d), 2, torch.ones(12, device=d), None, float("inf"), backend=b),
)
case(
    "sc-ln_weight-shape",
    SC,
    "ln_weight",
    "(k*k*C,)",
    "(k*k*C + 1,)",
    ValueError,
    "ln_weight: expected shape (12,)",
    lambda b, d: sc(sc_x(d), 2, torch.ones(13, device=d), backend=b),
)
case(
    "sc-ln_weight-dtype",
    SC,
    "ln_weight",
    F + " (any, independent of x)",
    "int64",
    TypeError,
    "ln_weight: expected dtype float32, float16 or bfloat16",
    lambda b, d: sc(sc_x(d), 2, torch.ones(12, dtype=torch.int64, device=d), backend=b),
)
case(
    "sc-ln_weight-device",
    SC,
    "ln_weight",
    "x's device",
    "meta tensor, x on the backend's device",
    ValueError,
    "ln_weight: expected a tensor on",
    lambda b, d: sc(sc_x(d), 2, torch.ones(12, device=OTHER), backend=b),
)
case(
    "sc-ln_weight-strided-view",
    SC,
    "ln_weight",
    "any strides (copied)",
    "every other element",
    None,
    "",
    lambda b, d: (lambda x: same_as_contiguous(lambda v: sc(x, 2, v, backend=b), torch.randn(24, device=d)[::2]))(
        sc_x(d)
    ),
)
case(
    "sc-ln_bias-without-weight",
    SC,
    "ln_bias",
    "only with ln_weight",
    "ln_bias alone",
    ValueError,
    "ln_bias: given without ln_weight",
    lambda b, d: sc(sc_x(d), 2, None, torch.ones(12, device=d), backend=b),
)
case(
    "sc-ln_bias-shape",
    SC,
    "ln_bias",
    "(k*k*C,)",
    "(11,)",
    ValueError,
    "ln_bias: expected shape (12,)",
    lambda b, d: sc(sc_x(d), 2, torch.ones(12, device=d), torch.ones(11, device=d), backend=b),
)
case(
    "sc-out-type",
    SC,
    "out",
    "a torch.Tensor",
    "a list",
    TypeError,
    "out: expected a torch.Tensor",
    lambda b, d: sc(sc_x(d), 2, out=[], backend=b),
)
case(
    "sc-out-shape",
    SC,
    "out",
    "the output's shape",
    "one row short",
    ValueError,
    "out: expected shape (1, 2, 2, 12)",
    lambda b, d: sc(sc_x(d), 2, out=torch.empty(1, 1, 2, 12, device=d), backend=b),
)
case(
    "sc-out-dtype",
    SC,
    "out",
    "x's dtype",
    "float16 for float32 x",
    TypeError,
    "out: expected dtype torch.float32",
    lambda b, d: sc(sc_x(d), 2, out=torch.empty(1, 2, 2, 12, dtype=torch.float16, device=d), backend=b),
)
case(
    "sc-out-device",
    SC,
    "out",
    "x's device",
    "meta",
    ValueError,
    "out: expected a tensor on",
    lambda b, d: sc(sc_x(d), 2, out=torch.empty(1, 2, 2, 12, device=OTHER), backend=b),
)
case(
    "sc-out-strided",
    SC,
    "out",
    "contiguous",
    "a transposed view",
    ValueError,
    "out: expected a contiguous tensor",
    lambda b, d: sc(sc_x(d), 2, out=torch.empty(1, 2, 2, 12, device=d).transpose(1, 2), backend=b),
)
case(
    "sc-out-aliases-x",
    SC,
    "out",
    "memory apart from x",
    "out is x (k = 1)",
    ValueError,
    "out: must not share memory with x",
    lambda b, d: (lambda x: sc(x, 1, out=x, backend=b))(sc_x(d)),
)

# ---- temporal_pool --------------------------------------------------------------------

TP = "temporal_pool"
tp = nk.temporal_pool


def tp_x(d, shape=(4, 3, 5), dtype=torch.float32):
    return torch.randn(shape, device=d).to(dtype)


case(
    "tp-x-type",
    TP,
    "x",
    "a torch.Tensor",
    "a float",
    TypeError,
    "x: expected a torch.Tensor",
    lambda b, d: tp(1.0, 1, backend=b),
)
case(
    "tp-x-dtype",
    TP,
    "x",
    F,
    "int32",
    TypeError,
    "x: expected dtype float32, float16 or bfloat16",
    lambda b, d: tp(torch.ones(4, 3, dtype=torch.int32, device=d), 2, backend=b),
)
case(
    "tp-x-rank",
    TP,
    "x",
    ">= 1 dims, frames first",
    "0-d",
    ValueError,
    "x: expected at least 1 dimension",
    lambda b, d: tp(one(d), 1, backend=b),
)
case(
    "tp-x-empty",
    TP,
    "x",
    "non-empty",
    "(4, 0)",
    ValueError,
    "x: expected a non-empty tensor",
    lambda b, d: tp(tp_x(d, (4, 0)), 2, backend=b),
)
case(
    "tp-x-frame-strided-view",
    TP,
    "x",
    "any frame stride, contiguous frames (read in place)",
    "every other frame",
    None,
    "",
    lambda b, d: same_as_contiguous(lambda v: tp(v, 2, backend=b), tp_x(d, (8, 3, 5))[::2]),
)
case(
    "tp-x-expanded-view",
    TP,
    "x",
    "expanded frames (stride 0)",
    "one frame expanded to 4",
    None,
    "",
    lambda b, d: same_as_contiguous(lambda v: tp(v, 2, backend=b), tp_x(d, (1, 3, 5)).expand(4, 3, 5)),
)
case(
    "tp-x-1d-strided-view",
    TP,
    "x",
    "1-D strided",
    "every other element",
    None,
    "",
    lambda b, d: same_as_contiguous(lambda v: tp(v, 2, backend=b), tp_x(d, (16,))[::2]),
)
case(
    "tp-x-noncontiguous-frames",
    TP,
    "x",
    "non-contiguous frames (copied first)",
    "transposed frames",
    None,
    "",
    lambda b, d: same_as_contiguous(lambda v: tp(v, 2, backend=b), tp_x(d).transpose(1, 2)),
)
case(
    "tp-group-zero",
    TP,
    "group",
    "int >= 1",
    "0",
    ValueError,
    "group: expected an int >= 1",
    lambda b, d: tp(tp_x(d), 0, backend=b),
)
case(
    "tp-group-float",
    TP,
    "group",
    "int >= 1",
    "2.0",
    ValueError,
    "group: expected an int >= 1",
    lambda b, d: tp(tp_x(d), 2.0, backend=b),
)
case(
    "tp-group-not-divisor",
    TP,
    "group",
    "divides x.shape[0]",
    "3 for 4 frames",
    ValueError,
    "group: the number of frames T=4 (x.shape[0]) is not divisible by group=3",
    lambda b, d: tp(tp_x(d), 3, backend=b),
)
case(
    "tp-out-shape",
    TP,
    "out",
    "(T // group, ...)",
    "(4, 3, 5)",
    ValueError,
    "out: expected shape (2, 3, 5)",
    lambda b, d: tp(tp_x(d), 2, out=tp_x(d), backend=b),
)
case(
    "tp-out-dtype",
    TP,
    "out",
    "x's dtype",
    "bfloat16",
    TypeError,
    "out: expected dtype torch.float32",
    lambda b, d: tp(tp_x(d), 2, out=tp_x(d, (2, 3, 5), torch.bfloat16), backend=b),
)
case(
    "tp-out-device",
    TP,
    "out",
    "x's device",
    "meta",
    ValueError,
    "out: expected a tensor on",
    lambda b, d: tp(tp_x(d), 2, out=torch.empty(2, 3, 5, device=OTHER), backend=b),
)
case(
    "tp-out-strided",
    TP,
    "out",
    "contiguous",
    "a transposed view",
    ValueError,
    "out: expected a contiguous tensor",
    lambda b, d: tp(tp_x(d), 2, out=torch.empty(2, 5, 3, device=d).transpose(1, 2), backend=b),
)

# ---- multiscale_merge / merge_compress -------------------------------------------------

MM, MC = "multiscale_merge", "merge_compress"
mm, mc = nk.multiscale_merge, nk.merge_compress
MM_OUT = (2 * 8, PLAN.scales[-1].rows * 4, PLAN.scales[-1].cols * 4)
MC_D = 2 * 2 * 2 * 8
MC_TOKENS = PLAN.scales[-1].rows * 2 * PLAN.scales[-1].cols * 2
NINE = plan_with([ScalePlan(28, 28, 1, 1)] * 9)
ZERO_GRID = plan_with([ScalePlan(0, 0, 0, 0), ScalePlan(28, 28, 1, 1)])
LITE = plan_lite(100, 60, 28, 4)

for P, fn, k in ((MM, mm, ()), (MC, mc, (2,))):  # k: merge_compress's positional k
    p = "mm" if P == MM else "mc"
    case(
        f"{p}-features-type",
        P,
        "features",
        "a torch.Tensor",
        "None",
        TypeError,
        "features: expected a torch.Tensor",
        lambda b, d, fn=fn, k=k: fn(None, PLAN, *k, **H4, backend=b),
    )
    case(
        f"{p}-features-dtype",
        P,
        "features",
        F,
        "float64",
        TypeError,
        "features: expected dtype float32, float16 or bfloat16",
        lambda b, d, fn=fn, k=k: fn(feats(d, dtype=torch.float64), PLAN, *k, **H4, backend=b),
    )
    case(
        f"{p}-features-rank",
        P,
        "features",
        "3-D (n_tiles, h*w, C)",
        "2-D",
        ValueError,
        "features: expected a 3-D (n_tiles, h*w, C) tensor",
        lambda b, d, fn=fn, k=k: fn(feats(d)[0], PLAN, *k, **H4, backend=b),
    )
    case(
        f"{p}-features-tiles",
        P,
        "features",
        "plan.n_tiles tiles",
        "one tile more",
        ValueError,
        f"features: expected {PLAN.n_tiles} tiles (plan.n_tiles)",
        lambda b, d, fn=fn, k=k: fn(feats(d, PLAN.n_tiles + 1), PLAN, *k, **H4, backend=b),
    )
    case(
        f"{p}-features-tokens",
        P,
        "features",
        "h*w tokens per tile",
        "15 tokens for h = w = 4",
        ValueError,
        "features: expected h*w = 16 tokens per tile",
        lambda b, d, fn=fn, k=k: fn(feats(d, hw=15), PLAN, *k, **H4, backend=b),
    )
    case(
        f"{p}-features-empty",
        P,
        "features",
        "C >= 1",
        "C = 0",
        ValueError,
        "features: expected at least one channel",
        lambda b, d, fn=fn, k=k: fn(feats(d, C=0), PLAN, *k, **H4, backend=b),
    )
    case(
        f"{p}-features-strided-view",
        P,
        "features",
        "any strides (copied)",
        "padded channels",
        None,
        "",
        lambda b, d, fn=fn, k=k: same_as_contiguous(lambda v: fn(v, PLAN, *k, **H4, backend=b), padded_view(feats(d))),
    )
    case(
        f"{p}-plan-type",
        P,
        "plan",
        "a TilePlan",
        "a tuple",
        TypeError,
        "plan: expected a nvila_kernels.tiling.TilePlan",
        lambda b, d, fn=fn, k=k: fn(feats(d), (1, 2), *k, **H4, backend=b),
    )
    case(
        f"{p}-plan-thumbnail",
        P,
        "plan",
        "no thumbnail (plan_tiles, plan_single)",
        "a plan_lite plan",
        ValueError,
        "plan: NVILA-Lite plans with a thumbnail are not merged",
        lambda b, d, fn=fn, k=k: fn(feats(d, LITE.n_tiles), LITE, *k, **H4, backend=b),
    )
    case(
        f"{p}-plan-scales",
        P,
        "plan",
        "1 to 8 scales",
        "9 scales",
        ValueError,
        "plan: expected 1 to 8 scales",
        lambda b, d, fn=fn, k=k: fn(feats(d, 9), NINE, *k, **H4, backend=b),
    )
    case(
        f"{p}-plan-grid",
        P,
        "plan",
        "every scale rows, cols ints >= 1",
        "a hand-made 0 x 0 scale",
        ValueError,
        "plan: expected every scale's rows and cols to be ints >= 1",
        lambda b, d, fn=fn, k=k: fn(feats(d, 1), ZERO_GRID, *k, **H4, backend=b),
    )
    case(
        f"{p}-h-zero",
        P,
        "h",
        "int >= 1",
        "0",
        ValueError,
        "h: expected an int >= 1",
        lambda b, d, fn=fn, k=k: fn(feats(d), PLAN, *k, h=0, w=4, backend=b),
    )
    case(
        f"{p}-w-bool",
        P,
        "w",
        "int >= 1",
        "True",
        ValueError,
        "w: expected an int >= 1",
        lambda b, d, fn=fn, k=k: fn(feats(d), PLAN, *k, h=4, w=True, backend=b),
    )
    shape = MM_OUT if P == MM else (MC_TOKENS, MC_D)
    case(
        f"{p}-out-shape",
        P,
        "out",
        "the output's shape",
        "one more row",
        ValueError,
        f"out: expected shape {shape}",
        lambda b, d, fn=fn, k=k, s=shape: fn(
            feats(d), PLAN, *k, **H4, out=torch.empty(s[0] + 1, *s[1:], device=d), backend=b
        ),
    )
    case(
        f"{p}-out-dtype",
        P,
        "out",
        "features' dtype",
        "float16",
        TypeError,
        "out: expected dtype torch.float32 (the dtype of features)",
        lambda b, d, fn=fn, k=k, s=shape: fn(
            feats(d), PLAN, *k, **H4, out=torch.empty(s, dtype=torch.float16, device=d), backend=b
        ),
    )
    case(
        f"{p}-out-device",
        P,
        "out",
        "features' device",
        "meta",
        ValueError,
        "out: expected a tensor on",
        lambda b, d, fn=fn, k=k, s=shape: fn(feats(d), PLAN, *k, **H4, out=torch.empty(s, device=OTHER), backend=b),
    )
    case(
        f"{p}-out-strided",
        P,
        "out",
        "contiguous",
        "a padded view",
        ValueError,
        "out: expected a contiguous tensor",
        lambda b, d, fn=fn, k=k, s=shape: fn(
            feats(d), PLAN, *k, **H4, out=padded_view(torch.empty(s, device=d)), backend=b
        ),
    )

case(
    "mc-k-zero",
    MC,
    "k",
    "int >= 1 (k > h, w allowed)",
    "0",
    ValueError,
    "k: expected an int >= 1",
    lambda b, d: mc(feats(d), PLAN, 0, **H4, backend=b),
)
case(
    "mc-k-token-channels",
    MC,
    "k",
    "k*k*S*C <= 2^31 - 1",
    "k = 2, S = 2, C = 2^28 (meta features)",
    ValueError,
    "k: expected at most 2^31 - 1 output channels per token",
    lambda b, d: mc(torch.empty(PLAN.n_tiles, 16, 2**28, device=OTHER), PLAN, 2, **H4, backend=b),
)
case(
    "mc-eps-negative",
    MC,
    "eps",
    "finite float >= 0",
    "-1.0",
    ValueError,
    "eps: expected a float >= 0 and finite",
    lambda b, d: mc(feats(d), PLAN, 2, None, None, -1.0, **H4, backend=b),
)
case(
    "mc-eps-inf",
    MC,
    "eps",
    "finite float >= 0",
    "inf",
    ValueError,
    "eps: expected a float >= 0 and finite",
    lambda b, d: mc(feats(d), PLAN, 2, torch.ones(MC_D, device=d), None, float("inf"), **H4, backend=b),
)
case(
    "mc-ln_weight-shape",
    MC,
    "ln_weight",
    "(k*k*S*C,)",
    "(k*k*C,), one scale's",
    ValueError,
    f"ln_weight: expected shape ({MC_D},) = (k*k*S*C,)",
    lambda b, d: mc(feats(d), PLAN, 2, torch.ones(MC_D // 2, device=d), **H4, backend=b),
)
case(
    "mc-ln_weight-dtype",
    MC,
    "ln_weight",
    F,
    "float64",
    TypeError,
    "ln_weight: expected dtype float32",
    lambda b, d: mc(feats(d), PLAN, 2, torch.ones(MC_D, dtype=torch.float64, device=d), **H4, backend=b),
)
case(
    "mc-ln_weight-device",
    MC,
    "ln_weight",
    "features' device",
    "meta",
    ValueError,
    "ln_weight: expected a tensor on",
    lambda b, d: mc(feats(d), PLAN, 2, torch.ones(MC_D, device=OTHER), **H4, backend=b),
)
case(
    "mc-ln_bias-without-weight",
    MC,
    "ln_bias",
    "only with ln_weight",
    "ln_bias alone",
    ValueError,
    "ln_bias: given without ln_weight",
    lambda b, d: mc(feats(d), PLAN, 2, None, torch.ones(MC_D, device=d), **H4, backend=b),
)

# ---- multiscale_tile / multiscale_tile_batch ---------------------------------------------

MT, MTB = "multiscale_tile", "multiscale_tile_batch"
mt, mtb = nk.multiscale_tile, nk.multiscale_tile_batch
MT_OUT = (PLAN.n_tiles, 3, 28, 28)
case(
    "mt-image-type",
    MT,
    "image",
    "a torch.Tensor",
    "a list",
    TypeError,
    "image: expected a torch.Tensor",
    lambda b, d: mt([[0]], PLAN, backend=b),
)
case(
    "mt-image-dtype",
    MT,
    "image",
    "uint8",
    "float32",
    TypeError,
    "image: expected dtype uint8",
    lambda b, d: mt(img(d, dtype=torch.float32), PLAN, backend=b),
)
case(
    "mt-image-rank",
    MT,
    "image",
    "(H, W, 3) or (3, H, W)",
    "(H, W)",
    ValueError,
    "image: expected shape (H, W, 3) or (3, H, W)",
    lambda b, d: mt(img(d)[..., 0], PLAN, backend=b),
)
case(
    "mt-image-channels",
    MT,
    "image",
    "3 channels",
    "(H, W, 4)",
    ValueError,
    "image: expected shape (H, W, 3) or (3, H, W)",
    lambda b, d: mt(img(d, (60, 100, 4)), PLAN, backend=b),
)
case(
    "mt-image-empty",
    MT,
    "image",
    "H, W >= 1",
    "H = 0",
    ValueError,
    "image: expected a non-empty image",
    lambda b, d: mt(img(d, (0, 100, 3)), PLAN, backend=b),
)
case(
    "mt-image-side",
    MT,
    "image",
    "H, W <= 16384",
    "H = 16385",
    ValueError,
    "image: expected height and width <= 16384",
    lambda b, d: mt(img(d, (16385, 1, 3)), PLAN, backend=b),
)
case(
    "mt-image-chw-view",
    MT,
    "image",
    "(3, H, W) and any strides (copied)",
    "channels-first",
    None,
    "",
    lambda b, d: (
        lambda im: (mt(im.permute(2, 0, 1).contiguous(), SMALL_PLAN, backend=b), mt(im, SMALL_PLAN, backend=b))
    )(img(d, (3, 5, 3))),
)
case(
    "mt-image-strided-view",
    MT,
    "image",
    "any strides (copied)",
    "a crop of a larger image",
    None,
    "",
    lambda b, d: same_as_contiguous(lambda v: mt(v, SMALL_PLAN, backend=b), img(d, (5, 7, 3))[1:4, 1:6]),
)
case(
    "mt-plan-type",
    MT,
    "plan",
    "a TilePlan",
    "None",
    TypeError,
    "plan: expected a nvila_kernels.tiling.TilePlan",
    lambda b, d: mt(img(d), None, backend=b),
)
case(
    "mt-plan-image-size",
    MT,
    "plan",
    "made for this image's W x H",
    "a plan for 100 x 61",
    ValueError,
    "plan: made for a 100x61 image, got a 100x60 image",
    lambda b, d: mt(img(d), plan_tiles(100, 61, (28, 56), 28), backend=b),
)
case(
    "mt-plan-scales",
    MT,
    "plan",
    "1 to 8 scales",
    "9 scales",
    ValueError,
    "plan: expected 1 to 8 scales",
    lambda b, d: mt(img(d), NINE, backend=b),
)
case(
    "mt-plan-tiles",
    MT,
    "plan",
    "<= 256 tiles",
    "17 x 17 + 1 tiles",
    ValueError,
    "plan: expected at most 256 tiles",
    lambda b, d: mt(img(d), plan_tiles(100, 60, (28, 28 * 17), 28, 289), backend=b),
)
case(
    "mt-plan-side",
    MT,
    "plan",
    "resized sides <= 16384",
    "a 16400-pixel tile",
    ValueError,
    "plan: expected resized sides <= 16384",
    lambda b, d: mt(img(d), plan_single(100, 60, 16400), backend=b),
)
case(
    "mt-plan-inconsistent",
    MT,
    "plan",
    "scale sides = cols, rows x tile",
    "a 56-pixel scale of 1 x 1 28-pixel tiles",
    ValueError,
    "plan: scale",
    lambda b, d: mt(img(d), plan_with([ScalePlan(56, 56, 1, 1)]), backend=b),
)
case(
    "mt-plan-tile",
    MT,
    "plan",
    "plan.tile int >= 1",
    "0",
    ValueError,
    "plan: expected a tile size (plan.tile) >= 1",
    lambda b, d: mt(img(d), plan_with([ScalePlan(0, 0, 1, 1)], tile=0), backend=b),
)
case(
    "mt-plan-grid",
    MT,
    "plan",
    "every scale rows, cols ints >= 1",
    "a 0 x 0 scale",
    ValueError,
    "plan: expected every scale's rows and cols to be ints >= 1",
    lambda b, d: mt(img(d), ZERO_GRID, backend=b),
)
case(
    "mt-mean-type",
    MT,
    "mean",
    "3 finite floats",
    "None",
    TypeError,
    "mean: expected 3 floats",
    lambda b, d: mt(img(d), PLAN, None, backend=b),
)
case(
    "mt-mean-text",
    MT,
    "mean",
    "3 finite floats",
    "'abc'",
    TypeError,
    "mean: expected 3 floats",
    lambda b, d: mt(img(d), PLAN, "abc", backend=b),
)
case(
    "mt-mean-length",
    MT,
    "mean",
    "3 finite floats",
    "2 floats",
    ValueError,
    "mean: expected 3 floats, got 2",
    lambda b, d: mt(img(d), PLAN, (0.5, 0.5), backend=b),
)
case(
    "mt-mean-inf",
    MT,
    "mean",
    "3 finite floats",
    "inf",
    ValueError,
    "mean: expected finite values",
    lambda b, d: mt(img(d), PLAN, (float("inf"), 0.5, 0.5), backend=b),
)
case(
    "mt-std-zero",
    MT,
    "std",
    "3 finite non-zero floats",
    "0",
    ValueError,
    "std: expected non-zero values",
    lambda b, d: mt(img(d), PLAN, std=(0.5, 0.0, 0.5), backend=b),
)
case(
    "mt-std-nan",
    MT,
    "std",
    "3 finite non-zero floats",
    "nan",
    ValueError,
    "std: expected finite values",
    lambda b, d: mt(img(d), PLAN, std=(0.5, float("nan"), 0.5), backend=b),
)
case(
    "mt-out_dtype",
    MT,
    "out_dtype",
    F,
    "int32",
    TypeError,
    "out_dtype: expected float32, float16 or bfloat16",
    lambda b, d: mt(img(d), PLAN, out_dtype=torch.int32, backend=b),
)
case(
    "mt-exact",
    MT,
    "exact",
    "bool",
    "1",
    TypeError,
    "exact: expected a bool",
    lambda b, d: mt(img(d), PLAN, exact=1, backend=b),
)
case(
    "mt-out-shape",
    MT,
    "out",
    "(n_tiles, 3, tile, tile)",
    "one tile short",
    ValueError,
    f"out: expected shape {MT_OUT}",
    lambda b, d: mt(img(d), PLAN, out=torch.empty(MT_OUT, device=d)[1:], backend=b),
)
case(
    "mt-out-dtype",
    MT,
    "out",
    "out_dtype",
    "float16 for out_dtype float32",
    TypeError,
    "out: expected dtype torch.float32 (out_dtype)",
    lambda b, d: mt(img(d), PLAN, out=torch.empty(MT_OUT, dtype=torch.float16, device=d), backend=b),
)
case(
    "mt-out-device",
    MT,
    "out",
    "image's device",
    "meta",
    ValueError,
    "out: expected a tensor on",
    lambda b, d: mt(img(d), PLAN, out=torch.empty(MT_OUT, device=OTHER), backend=b),
)
case(
    "mt-out-strided",
    MT,
    "out",
    "contiguous",
    "a transposed view",
    ValueError,
    "out: expected a contiguous tensor",
    lambda b, d: mt(img(d), PLAN, out=torch.empty(MT_OUT, device=d).transpose(2, 3), backend=b),
)
case(
    "mtb-images-type",
    MTB,
    "images",
    "lists (or tuples)",
    "a tensor",
    TypeError,
    "images, plans: expected lists",
    lambda b, d: mtb(img(d), [PLAN], backend=b),
)
case(
    "mtb-lengths",
    MTB,
    "images",
    "as many images as plans, >= 1",
    "2 images, 1 plan",
    ValueError,
    "images, plans: expected the same non-zero length",
    lambda b, d: mtb([img(d)] * 2, [PLAN], backend=b),
)
case(
    "mtb-empty",
    MTB,
    "images",
    "as many images as plans, >= 1",
    "no images",
    ValueError,
    "images, plans: expected the same non-zero length",
    lambda b, d: mtb([], [], backend=b),
)
case(
    "mtb-plans-tile",
    MTB,
    "plans",
    "TilePlans of one tile size",
    "tiles 28 and 56",
    ValueError,
    "plans: expected TilePlans with one tile size",
    lambda b, d: mtb([img(d)] * 2, [PLAN, plan_single(100, 60, 56)], backend=b),
)
case(
    "mtb-image-item",
    MTB,
    "images",
    "torch.Tensors",
    "a list",
    TypeError,
    "images[1]: expected a torch.Tensor",
    lambda b, d: mtb([img(d), [0]], [PLAN, PLAN], backend=b),
)
case(
    "mtb-devices",
    MTB,
    "images",
    "one device",
    "the backend's device and meta",
    ValueError,
    "images: expected tensors on one device",
    lambda b, d: mtb([img(d), img(OTHER)], [PLAN] * 2, backend=b),
)
case(
    "mtb-out_dtype",
    MTB,
    "out_dtype",
    F,
    "the string 'float32'",
    TypeError,
    "out_dtype: expected float32, float16 or bfloat16",
    lambda b, d: mtb([img(d)], [PLAN], out_dtype="float32", backend=b),
)
case(
    "mtb-plan-image-size",
    MTB,
    "plan",
    "plans[i] made for images[i]",
    "a plan for 10 x 10",
    ValueError,
    "plan: made for a 10x10 image",
    lambda b, d: mtb([img(d)], [plan_single(10, 10, 28)], backend=b),
)

# ---- fp8_quantize / fp8_gemm --------------------------------------------------------------

FQ, FG = "fp8_quantize", "fp8_gemm"
fq, fg = nk.fp8_quantize, nk.fp8_gemm
case(
    "fq-x-type",
    FQ,
    "x",
    "a torch.Tensor",
    "a list",
    TypeError,
    "x: expected a torch.Tensor",
    lambda b, d: fq([1.0], backend=b),
)
case(
    "fq-x-dtype",
    FQ,
    "x",
    F,
    "int64",
    TypeError,
    "x: expected dtype float32, float16 or bfloat16",
    lambda b, d: fq(torch.arange(4, device=d), backend=b),
)
case(
    "fq-x-empty",
    FQ,
    "x",
    "non-empty, any shape (0-d too)",
    "(0,)",
    ValueError,
    "x: expected a non-empty tensor",
    lambda b, d: fq(torch.zeros(0, device=d), backend=b),
)
case(
    "fq-x-transposed-view",
    FQ,
    "x",
    "any strides (copied)",
    "a transposed view",
    None,
    "",
    lambda b, d: same_as_contiguous(lambda v: fq(v, backend=b)[0].view(torch.uint8), torch.randn(5, 7, device=d).t()),
)
case(
    "fq-fp8_dtype",
    FQ,
    "fp8_dtype",
    "float8_e4m3fn, float8_e5m2",
    "float16",
    TypeError,
    "fp8_dtype: expected torch.float8_e4m3fn or torch.float8_e5m2",
    lambda b, d: fq(torch.ones(4, device=d), None, torch.float16, backend=b),
)
case(
    "fq-scale-type",
    FQ,
    "scale",
    "None or a float32 tensor with one element",
    "the float 1.0",
    TypeError,
    "scale: expected a float32 torch.Tensor with one element",
    lambda b, d: fq(torch.ones(4, device=d), 1.0, backend=b),
)
case(
    "fq-scale-dtype",
    FQ,
    "scale",
    "float32",
    "float64",
    ValueError,
    "scale: expected a float32 tensor with one element",
    lambda b, d: fq(torch.ones(4, device=d), one(d, dtype=torch.float64), backend=b),
)
case(
    "fq-scale-numel",
    FQ,
    "scale",
    "one element (any shape)",
    "2 elements",
    ValueError,
    "scale: expected a float32 tensor with one element",
    lambda b, d: fq(torch.ones(4, device=d), torch.ones(2, device=d), backend=b),
)
case(
    "fq-scale-device",
    FQ,
    "scale",
    "x's device",
    "meta",
    ValueError,
    "scale: expected a tensor on",
    lambda b, d: fq(torch.ones(4, device=d), one(OTHER), backend=b),
)
for v, name in ((0.0, "zero"), (-1.0, "negative"), (float("nan"), "nan"), (float("inf"), "inf")):
    case(
        f"fq-scale-{name}",
        FQ,
        "scale",
        "positive, finite (checked for CPU tensors; on a GPU: caller's contract)",
        repr(v),
        ValueError,
        "scale: expected a positive finite scale",
        lambda b, d, v=v: fq(torch.ones(4, device=d), one(d, v), backend=b),
    )

A_, B_ = (4, 32), (8, 32)
case(
    "fg-a-type",
    FG,
    "a",
    "a torch.Tensor",
    "a list",
    TypeError,
    "a: expected a torch.Tensor",
    lambda b, d: fg([[0]], fp8(d, B_), one(d), one(d), backend=b),
)
case(
    "fg-a-dtype",
    FG,
    "a",
    "float8_e4m3fn",
    "float32",
    TypeError,
    "a: expected dtype torch.float8_e4m3fn",
    lambda b, d: fg(torch.ones(A_, device=d), fp8(d, B_), one(d), one(d), backend=b),
)
case(
    "fg-b-dtype",
    FG,
    "b",
    "float8_e4m3fn",
    "float8_e5m2",
    TypeError,
    "b: expected dtype torch.float8_e4m3fn",
    lambda b, d: fg(fp8(d, A_), fp8(d, B_).to(torch.float8_e5m2), one(d), one(d), backend=b),
)
case(
    "fg-a-rank",
    FG,
    "a",
    "2-D (M, K)",
    "1-D",
    ValueError,
    "a: expected a 2-D tensor",
    lambda b, d: fg(fp8(d, (32,)), fp8(d, B_), one(d), one(d), backend=b),
)
case(
    "fg-b-rank",
    FG,
    "b",
    "2-D (N, K)",
    "3-D",
    ValueError,
    "b: expected a 2-D tensor",
    lambda b, d: fg(fp8(d, A_), fp8(d, (1, 8, 32)), one(d), one(d), backend=b),
)
case(
    "fg-b-k-mismatch",
    FG,
    "b",
    "(N, K) with a's K",
    "K = 16 for a's 32",
    ValueError,
    "b: expected shape (N, K) with K = 32",
    lambda b, d: fg(fp8(d, A_), fp8(d, (8, 16)), one(d), one(d), backend=b),
)
case(
    "fg-b-device",
    FG,
    "b",
    "a's device",
    "meta",
    ValueError,
    "b: expected a tensor on",
    lambda b, d: fg(fp8(d, A_), fp8("cpu", B_).to(OTHER), one(d), one(d), backend=b),
)
case(
    "fg-empty",
    FG,
    "a",
    "M, N, K >= 1",
    "M = 0",
    ValueError,
    "a, b: expected non-empty matrices",
    lambda b, d: fg(fp8(d, (0, 32)), fp8(d, B_), one(d), one(d), backend=b),
)
case(
    "fg-a-b-views",
    FG,
    "a",
    "any strides (copied)",
    "a, b transposed views",
    None,
    "",
    lambda b, d: (
        lambda a, w: (
            fg(a, w, one(d, 0.5), one(d), backend=b),
            fg(a.contiguous(), w.contiguous(), one(d, 0.5), one(d), backend=b),
        )
    )(fp8(d, (32, 4)).t(), fp8(d, (32, 8)).t()),
)
case(
    "fg-scale_a-numel",
    FG,
    "scale_a",
    "float32 with one element",
    "(2,)",
    ValueError,
    "scale_a: expected a float32 tensor with one element",
    lambda b, d: fg(fp8(d, A_), fp8(d, B_), torch.ones(2, device=d), one(d), backend=b),
)
case(
    "fg-scale_b-zero",
    FG,
    "scale_b",
    "positive, finite (CPU tensors checked)",
    "0",
    ValueError,
    "scale_b: expected a positive finite scale",
    lambda b, d: fg(fp8(d, A_), fp8(d, B_), one(d), one(d, 0.0), backend=b),
)
case(
    "fg-scale_a-device",
    FG,
    "scale_a",
    "a's device",
    "meta",
    ValueError,
    "scale_a: expected a tensor on",
    lambda b, d: fg(fp8(d, A_), fp8(d, B_), one(OTHER), one(d), backend=b),
)
case(
    "fg-bias-shape",
    FG,
    "bias",
    "(N,)",
    "(N + 1,)",
    ValueError,
    "bias: expected shape (8,)",
    lambda b, d: fg(fp8(d, A_), fp8(d, B_), one(d), one(d), torch.ones(9, device=d), backend=b),
)
case(
    "fg-bias-dtype",
    FG,
    "bias",
    F,
    "int32",
    TypeError,
    "bias: expected dtype float32, float16 or bfloat16",
    lambda b, d: fg(fp8(d, A_), fp8(d, B_), one(d), one(d), torch.ones(8, dtype=torch.int32, device=d), backend=b),
)
case(
    "fg-bias-device",
    FG,
    "bias",
    "a's device",
    "meta",
    ValueError,
    "bias: expected a tensor on",
    lambda b, d: fg(fp8(d, A_), fp8(d, B_), one(d), one(d), torch.ones(8, device=OTHER), backend=b),
)
case(
    "fg-out_dtype",
    FG,
    "out_dtype",
    "bfloat16, float16, float32",
    "float8_e4m3fn",
    TypeError,
    "out_dtype: expected torch.bfloat16, torch.float16 or torch.float32",
    lambda b, d: fg(fp8(d, A_), fp8(d, B_), one(d), one(d), out_dtype=E4M3, backend=b),
)

# ---- backends (every op resolves its backend the same way: nvila_kernels.backends.resolve) ----

OP_CALLS = {
    SC: lambda b, d: sc(sc_x(d), 2, backend=b),
    TP: lambda b, d: tp(tp_x(d), 2, backend=b),
    MM: lambda b, d: mm(feats(d), PLAN, **H4, backend=b),
    MC: lambda b, d: mc(feats(d), PLAN, 2, **H4, backend=b),
    MT: lambda b, d: mt(img(d), PLAN, backend=b),
    FQ: lambda b, d: fq(torch.ones(4, device=d), backend=b),
    FG: lambda b, d: fg(fp8(d, A_), fp8(d, B_), one(d), one(d), backend=b),
}
SHORT = {SC: "sc", TP: "tp", MM: "mm", MC: "mc", MT: "mt", FQ: "fq", FG: "fg"}
for P, call in OP_CALLS.items():
    p = SHORT[P]
    case(
        f"{p}-backend-name",
        P,
        "backend",
        "None, reference, cpu, cuda, triton, emu",
        "'gpu'",
        ValueError,
        "backend: expected one of reference, cpu, cuda, triton, emu",
        lambda b, d, c=call: c("gpu", "cpu"),
        SELECTION,
    )
    case(
        f"{p}-backend-cuda-on-cpu",
        P,
        "backend",
        "a backend that runs on the tensors' device",
        "'cuda' with CPU tensors",
        RuntimeError,
        f"{P}: backend 'cuda' is not available",
        lambda b, d, c=call: c("cuda", "cpu"),
        SELECTION,
    )
    case(
        f"{p}-backend-cpu-on-meta",
        P,
        "backend",
        "a backend that runs on the tensors' device",
        "'cpu' with meta tensors",
        RuntimeError,
        f"{P}: backend 'cpu' is not available",
        lambda b, d, c=call: c("cpu", OTHER),
        SELECTION,
    )
case(
    "sc-backend-env",
    SC,
    "NVILA_KERNELS_BACKEND",
    "unset, or a backend name",
    "'gpu'",
    ValueError,
    "NVILA_KERNELS_BACKEND: expected one of",
    lambda b, d: sc(sc_x("cpu"), 2),
    SELECTION,
)

# ---- tile plans (pure Python, no backend) --------------------------------------------------

PT = "plan_tiles"
case(
    "pt-width",
    PT,
    "width",
    "int >= 1",
    "0",
    ValueError,
    "width: expected an int >= 1",
    lambda b, d: plan_tiles(0, 60),
)
case(
    "pt-height",
    PT,
    "height",
    "int >= 1",
    "60.0",
    ValueError,
    "height: expected an int >= 1",
    lambda b, d: plan_tiles(100, 60.0),
)
case(
    "pt-tile",
    PT,
    "tile",
    "int >= 1",
    "0",
    ValueError,
    "tile: expected an int >= 1",
    lambda b, d: plan_tiles(100, 60, tile=0),
)
case(
    "pt-max_tiles",
    PT,
    "max_tiles",
    "int >= (scales[-1] / scales[0])^2",
    "3 for scales (28, 56)",
    ValueError,
    "max_tiles: expected at least (scales[-1] / scales[0])^2 = 4",
    lambda b, d: plan_tiles(100, 60, (28, 56), 28, 3),
)
case(
    "pt-scales-empty",
    PT,
    "scales",
    "non-empty ints >= 1",
    "()",
    ValueError,
    "scales: expected a non-empty sequence of ints >= 1",
    lambda b, d: plan_tiles(100, 60, ()),
)
case(
    "pt-scales-multiple",
    PT,
    "scales",
    "multiples of the smallest",
    "(28, 42)",
    ValueError,
    "scales: expected multiples of the smallest scale 28",
    lambda b, d: plan_tiles(100, 60, (28, 42), 28),
)
case(
    "ps-tile",
    "plan_single",
    "tile",
    "int >= 1",
    "-1",
    ValueError,
    "tile: expected an int >= 1",
    lambda b, d: plan_single(100, 60, -1),
)
case(
    "pl-max_tiles",
    "plan_lite",
    "max_tiles",
    "int >= 1",
    "0",
    ValueError,
    "max_tiles: expected an int >= 1",
    lambda b, d: plan_lite(100, 60, 28, 0),
)

# ---- layers ------------------------------------------------------------------------------

FL = "Fp8Linear"
case(
    "fl-activation_scale-negative",
    FL,
    "activation_scale",
    "'dynamic' or a positive finite float",
    "-1.0",
    ValueError,
    "activation_scale: expected a positive finite float",
    lambda b, d: Fp8Linear(4, 4, activation_scale=-1.0),
)
case(
    "fl-activation_scale-text",
    FL,
    "activation_scale",
    "'dynamic' or a positive finite float",
    "'static'",
    ValueError,
    "activation_scale: expected 'dynamic' or a positive float",
    lambda b, d: Fp8Linear(4, 4, activation_scale="static"),
)
case(
    "fl-from_linear-type",
    FL,
    "linear",
    "an nn.Linear",
    "an nn.Conv1d",
    TypeError,
    "linear: expected a torch.nn.Linear",
    lambda b, d: Fp8Linear.from_linear(nn.Conv1d(4, 4, 1)),
)
FP8_LINEAR = Fp8Linear.from_linear(nn.Linear(16, 8))  # quantized here, outside the refusals below
case(
    "fl-x-features",
    FL,
    "x",
    "(..., in_features)",
    "last dim in_features + 1",
    ValueError,
    "x: expected last dim 16 (in_features)",
    lambda b, d: FP8_LINEAR(torch.ones(2, 17)),
)
case(
    "fl-x-dtype",
    FL,
    "x",
    F,
    "float64",
    TypeError,
    "x: expected dtype float32, float16 or bfloat16",
    lambda b, d: FP8_LINEAR(torch.ones(2, 16, dtype=torch.float64)),
)
QL = "quantize_linears"
case(
    "ql-module",
    QL,
    "module",
    "an nn.Module",
    "a dict",
    TypeError,
    "module: expected a torch.nn.Module",
    lambda b, d: quantize_linears({}),
)
case(
    "ql-filter",
    QL,
    "filter",
    "None or a callable (name, linear) -> bool",
    "True",
    TypeError,
    "filter: expected None or a callable",
    lambda b, d: quantize_linears(nn.Linear(4, 4), filter=True),
)
case(
    "scl-channels",
    "SpatialCompress",
    "channels",
    "int >= 1",
    "0",
    ValueError,
    "channels: expected an int >= 1",
    lambda b, d: SpatialCompress(0),
)
case(
    "scl-k",
    "SpatialCompress",
    "k",
    "int >= 1",
    "0",
    ValueError,
    "k: expected an int >= 1",
    lambda b, d: SpatialCompress(4, k=0),
)
case(
    "scl-x-channels",
    "SpatialCompress",
    "x",
    "(B, H, W, channels) or (B, N, channels)",
    "5 channels for 4",
    ValueError,
    "x: expected (B, H, W, 4) or (B, N, 4)",
    lambda b, d: SpatialCompress(4, backend=b).to(d)(torch.ones(1, 2, 2, 5, device=d)),
)
case(
    "scl-x-tokens",
    "SpatialCompress",
    "x",
    "(B, N, C) with N a perfect square",
    "N = 5",
    ValueError,
    "x: expected (B, N, C) tokens of a square grid",
    lambda b, d: SpatialCompress(4, backend=b).to(d)(torch.ones(1, 5, 4, device=d)),
)
case(
    "tpl-group",
    "TemporalPool",
    "group",
    "int >= 1",
    "0",
    ValueError,
    "group: expected an int >= 1",
    lambda b, d: TemporalPool(0),
)


# ---- the tests --------------------------------------------------------------------------


def _params():
    out = []
    for c in CASES:
        for b in BACKENDS if c.stage == BACKEND else [None]:
            out.append(pytest.param(c, b, id=c.id if b is None else f"{c.id}-{b}"))
    return out


def _no_backend_selection(op, backend, device):
    raise AssertionError(f"{op}: a backend was being chosen; this refusal must come from the argument checks")


@pytest.mark.parametrize("c, backend", _params())
def test_input(c: Case, backend, monkeypatch):
    device = backend_device(backend) if backend is not None else torch.device("cpu")
    if c.stage == CHECKS:
        monkeypatch.setattr(nk.backends, "resolve", _no_backend_selection)
    if c.argument == "NVILA_KERNELS_BACKEND":
        monkeypatch.setenv("NVILA_KERNELS_BACKEND", "gpu")
    if c.exc is None:
        got, expected = c.call(backend, device)
        atol, rtol = TOL[torch.float32]
        torch.testing.assert_close(got.float().cpu(), expected.float().cpu(), atol=atol, rtol=rtol)
        return
    with pytest.raises(c.exc, match=re.escape(c.match)):
        c.call(backend, device)


def test_cases_are_well_formed():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for c in CASES:
        assert c.stage in (CHECKS, SELECTION, BACKEND), c.id
        assert c.exc is not None or c.stage == BACKEND, f"{c.id}: an accepted input runs on every backend"
        if c.exc is not None:
            assert c.argument in c.match, f"{c.id}: the message fragment {c.match!r} does not name {c.argument!r}"


def _doc_rows() -> list[list[str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [x.strip() for x in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) == 6 and cells[0] not in ("op", "---"):
            rows.append(cells)
    return rows


def _code(cell: str) -> str:
    m = re.fullmatch(r"`(.*)`", cell)
    return m.group(1) if m else cell


def test_doc_table_matches_the_cases():
    """docs/INPUTS.md: one row per case, same op, argument, error type and message fragment."""
    rows = _doc_rows()
    doc = {_code(r[5]): r for r in rows}
    assert len(doc) == len(rows), "duplicate test ids in docs/INPUTS.md"
    cases = {c.id: c for c in CASES}
    assert sorted(set(doc) - set(cases)) == [], "rows of docs/INPUTS.md without a test case"
    assert sorted(set(cases) - set(doc)) == [], "test cases missing from docs/INPUTS.md"
    for cid, (op, argument, _accepted, _violation, error, _) in doc.items():
        c = cases[cid]
        assert (_code(op), _code(argument)) == (c.op, c.argument), cid
        want = "accepted" if c.exc is None else f"{c.exc.__name__} `{c.match}`"
        assert error == want, f"{cid}: docs/INPUTS.md says {error!r}, the test checks {want!r}"
