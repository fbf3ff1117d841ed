"""Triton kernels, registered as torch ops (torch.library.triton_op).

Importing this package needs `triton`. On a machine without a GPU the kernels run
under the Triton interpreter when TRITON_INTERPRET=1 is set before the import.
Every module here (one per op, or per family: fp8.py) is imported, which registers
its ops (kernel_op in _register.py): adding an op adds a file and touches nothing else.

Numerics: fp32 accumulation like the other backends. Under the interpreter,
bfloat16 values in the fp32-subnormal range (|x| < 1.2e-38) are not converted
exactly (a limit of the interpreter's bf16 emulation, see tests/test_temporal_pool.py).
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
