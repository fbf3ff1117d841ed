"""The torch ops, defined from the op declarations (nvila_kernels/ops: OpSpec.schema).

Each op exists once per compiled backend, with the same schema:
  nvila::<op>_cpu     C++ CPU kernel                     (CPU key, from _C)
  nvila::<op>_emu     CUDA kernel under the SIMT emulator (CPU key, from _C; tests)
  nvila::<op>_cuda    CUDA kernel                        (CUDA key, from _C)
  nvila::<op>_triton  Triton kernel                      (triton_op, nvila_kernels/triton)
Ops write into a caller-provided `out` (so `out=` costs no allocation); the
public functions (nvila_kernels/ops/<op>.py) validate, allocate and dispatch.
"""

from __future__ import annotations

import torch

from .ops import OPS

# op name -> schema (without the name). Ops mutate only their output arguments.
SCHEMAS = {name: spec.schema for name, spec in OPS.items()}

# backends whose kernels live in the compiled extension
COMPILED_BACKENDS = ("cpu", "emu", "cuda")

_lib = torch.library.Library("nvila", "DEF")


def _fake_out_only(*args, **kwargs) -> None:
    """Fake kernel: the ops only write their outputs, whose metadata the caller owns."""
    return None


for _op, _schema in SCHEMAS.items():
    for _backend in COMPILED_BACKENDS:
        _name = f"{_op}_{_backend}"
        _lib.define(_name + _schema)
        torch.library.register_fake(f"nvila::{_name}", _fake_out_only, lib=_lib)


def op(name: str, backend: str):
    """The torch op implementing `name` on a compiled backend, e.g. op("spatial_compress", "cpu")."""
    return getattr(torch.ops.nvila, f"{name}_{backend}").default
