"""The ops, one module each: nvila_kernels/ops/<op>.py holds the op's declaration
(`SPEC`, an OpSpec: schema, reference, argument checks, output, refusals) and its
public function(s) (the module's `__all__`). Every module here is found by name, so
adding an op adds a file and touches nothing else in this package."""

from __future__ import annotations

import importlib
import pkgutil

from ._spec import OpSpec

__all__ = ["OPS", "FUNCTIONS"]

_modules = [
    importlib.import_module(f"{__name__}.{m.name}")
    for m in pkgutil.iter_modules(__path__)
    if not m.name.startswith("_")
]
OPS: dict[str, OpSpec] = {m.SPEC.name: m.SPEC for m in _modules}  # op name -> its declaration
FUNCTIONS = {name: getattr(m, name) for m in _modules for name in m.__all__}  # the public functions, by name
