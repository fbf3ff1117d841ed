"""Writes docs/API.md, the API reference, from the docstrings and signatures of the
public names of nvila_kernels (tests/test_docs.py fails when the file is stale):

    python docs/gen_api.py
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nvila_kernels  # noqa: E402
from nvila_kernels import backends, layers, processor, tiling  # noqa: E402

# (section title, module, names), in the order a user meets them
SECTIONS = [
    ("Ops (`nvila_kernels`)", nvila_kernels, None),
    (
        "Layers (`nvila_kernels.layers`)",
        layers,
        [
            "Fp8Linear",
            "quantize_linears",
            "fp8_cpu_path",
            "fp8_gemm_dequantized",
            "SpatialCompress",
            "TemporalPool",
        ],
    ),
    ("Preprocessing (`nvila_kernels.processor`)", processor, ["DynamicS2Preprocessor", "NVILAImageProcessor"]),
    (
        "Tile plans (`nvila_kernels.tiling`)",
        tiling,
        ["plan_tiles", "plan_single", "plan_lite", "TilePlan", "ScalePlan"],
    ),
    (
        "Backends (`nvila_kernels.backends`)",
        backends,
        ["resolve", "available_backends", "unavailable_reason", "cpu_isa"],
    ),
]


def _public_ops() -> list[str]:
    return [
        n
        for n in nvila_kernels.__all__
        if callable(getattr(nvila_kernels, n)) and not inspect.ismodule(getattr(nvila_kernels, n))
    ]


def _entry(module, name: str) -> str:
    obj = getattr(module, name)
    kind = "class" if inspect.isclass(obj) else "def"
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        sig = "(...)"
    doc = inspect.getdoc(obj) or "(no docstring)"
    return f"### `{name}`\n\n```python\n{kind} {name}{sig}\n```\n\n{doc}\n"


def render() -> str:
    parts = [
        "# nvila_kernels API reference\n",
        "Generated from the docstrings by `python docs/gen_api.py`; do not edit by hand.\n",
        "Every op takes `backend=None` (automatic: see Backends) or one of "
        f"{', '.join(f'`{b}`' for b in backends.BACKENDS)}; argument errors raise ValueError/TypeError "
        "naming the argument.\n",
    ]
    for title, module, names in SECTIONS:
        parts.append(f"## {title}\n")
        for name in names if names is not None else _public_ops():
            parts.append(_entry(module, name))
    return "\n".join(parts)


if __name__ == "__main__":
    out = ROOT / "docs" / "API.md"
    out.write_text(render())
    print(f"wrote {out}")
