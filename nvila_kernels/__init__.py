"""nvila_kernels: fused kernels of NVILA for PyTorch (CPU C++, CUDA, Triton).

Works with no compiled extension at all (the PyTorch reference backend), and
says what it found: `python -m nvila_kernels` or `nvila_kernels.info()`.
"""

from . import _ops, backends, functional, layers, reference  # noqa: F401  (_ops defines the op schemas first)
from .backends import info
from .functional import *  # noqa: F403  (the public functions: functional.__all__)

__version__ = "0.1.0"
__all__ = [*functional.__all__, "layers", "info", "reference", "backends", "__version__"]

backends.load(_ops._lib)
