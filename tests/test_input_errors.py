"""Every op's accepted inputs and the error for each violation: one case per row of
docs/INPUTS.md. Each op declares the views it takes and the inputs it refuses
(nvila_kernels/ops/<op>.py: OpSpec.accepts, OpSpec.refusals) and a valid call
(OpSpec.example, for the backend-selection rows); this file enumerates them. The tile
planners and the layers have their cases here.

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


# ---- every op's declared inputs (nvila_kernels/ops/<op>.py: OpSpec.accepts, .refusals) -----

for spec in OPS.values():
    for v in spec.accepts:
        case(v.id, spec.name, v.argument, v.accepted, v.view, None, "", lambda b, d, v=v: v.call(d, b))
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
    "spatial_compress",
    "NVILA_KERNELS_BACKEND",
    "unset, or a backend name",
    "'gpu'",
    ValueError,
    "NVILA_KERNELS_BACKEND: expected one of",
    lambda b, d: OPS["spatial_compress"].example("cpu", None),
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
