"""nvila_kernels: fused kernels of NVILA for PyTorch (CPU C++, CUDA, Triton).

Works with no compiled extension at all (the PyTorch reference backend), and
says what it found: `python -m nvila_kernels` or `nvila_kernels.info()`.
"""

from . import _ops, backends, layers, reference  # noqa: F401  (_ops defines the op schemas first)
from .backends import info
from .functional import (
    fp8_gemm,
    fp8_quantize,
    merge_compress,
    multiscale_merge,
    multiscale_tile,
    multiscale_tile_batch,
    spatial_compress,
    temporal_pool,
)

__version__ = "0.1.0"
__all__ = [
    "spatial_compress",
    "temporal_pool",
    "multiscale_merge",
    "merge_compress",
    "multiscale_tile",
    "multiscale_tile_batch",
    "fp8_quantize",
    "fp8_gemm",
    "layers",
    "info",
    "reference",
    "backends",
    "__version__",
]

backends.load(_ops._lib)
