"""Every op's accepted inputs and the error for each violation: one case per row of
docs/INPUTS.md. The refusals of the ops' argument checks are declared with each op
(nvila_kernels/ops/<op>.py: OpSpec.refusals) and enumerated here; the accepted views,
backend selection, the tile planners and the layers have their cases in this file.

Where a case runs follows from where the input is decided:
- a refusal made by the argument checks (each op's `check`, the planners, the layers)
  happens before a backend is chosen, so it is tested once, with backend selection
  replaced by a failure: the test proves no backend is reached;
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
from nvila_kernels.layers import Fp8Linear, SpatialCompress, TemporalPool, quantize_linears
from nvila_kernels.ops import OPS
from nvila_kernels.ops._examples import H4, PLAN, fp8, one, padded_view
from nvila_kernels.ops._examples import features as feats
from nvila_kernels.ops._examples import image as img
from nvila_kernels.tiling import plan_lite, plan_single, plan_tiles

DOC = Path(__file__).resolve().parents[1] / "docs" / "INPUTS.md"
BACKENDS = ["reference"] + KERNEL_BACKENDS  # every backend that validates its inputs here
OTHER = "meta"  # a second device on any machine, to mix devices


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


# ---- the refusals every op declares (nvila_kernels/ops/<op>.py: OpSpec.refusals) ----------

for spec in OPS.values():
    for r in spec.refusals:
        case(
            r.id,
            r.function or spec.name,
            r.argument,
            r.accepted,
            r.violation,
            r.error,
            r.message,
            lambda b, d, r=r: r.call(d),
        )

# ---- accepted views (run on every backend) ------------------------------------------------


def sc_x(d, shape=(1, 4, 4, 3), dtype=torch.float32):
    return torch.randn(shape, device=d).to(dtype)


def tp_x(d, shape=(4, 3, 5), dtype=torch.float32):
    return torch.randn(shape, device=d).to(dtype)


# a 5x3 image, upscaled (few taps): the views below run the (slow) kernels on every backend
SMALL_PLAN = plan_tiles(5, 3, (4, 8), 4)


def same_as_contiguous(fn, view: torch.Tensor):
    """(fn(view), fn(a contiguous copy of view)): a view is accepted when the two agree."""
    return fn(view), fn(view.contiguous())


# ---- spatial_compress -----------------------------------------------------------------

SC = "spatial_compress"
sc = nk.spatial_compress
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

# ---- temporal_pool --------------------------------------------------------------------

TP = "temporal_pool"
tp = nk.temporal_pool
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

# ---- multiscale_merge / merge_compress -------------------------------------------------

MM, MC = "multiscale_merge", "merge_compress"
mm, mc = nk.multiscale_merge, nk.merge_compress
for P, fn, k in ((MM, mm, ()), (MC, mc, (2,))):  # k: merge_compress's positional k
    case(
        f"{'mm' if P == MM else 'mc'}-features-strided-view",
        P,
        "features",
        "any strides (copied)",
        "padded channels",
        None,
        "",
        lambda b, d, fn=fn, k=k: same_as_contiguous(lambda v: fn(v, PLAN, *k, **H4, backend=b), padded_view(feats(d))),
    )


# ---- multiscale_tile / multiscale_tile_batch ---------------------------------------------

MT, MTB = "multiscale_tile", "multiscale_tile_batch"
mt, mtb = nk.multiscale_tile, nk.multiscale_tile_batch
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

# ---- fp8_quantize / fp8_gemm --------------------------------------------------------------

FQ, FG = "fp8_quantize", "fp8_gemm"
fq, fg = nk.fp8_quantize, nk.fp8_gemm
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
A_, B_ = (4, 32), (8, 32)
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

# ---- backends (every op resolves its backend the same way: nvila_kernels.backends.resolve) ----

for P, spec in OPS.items():  # spec.example(device, backend): a valid call
    p = "".join(w[0] for w in P.split("_"))  # sc, tp, mm, mc, mt, fq, fg
    case(
        f"{p}-backend-name",
        P,
        "backend",
        "None, reference, cpu, cuda, triton, emu",
        "'gpu'",
        ValueError,
        "backend: expected one of reference, cpu, cuda, triton, emu",
        lambda b, d, e=spec.example: e("cpu", "gpu"),
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
        lambda b, d, e=spec.example: e("cpu", "cuda"),
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
        lambda b, d, e=spec.example: e(OTHER, "cpu"),
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
    "float32, float16 or bfloat16",
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
