"""Triton kernels, registered as torch ops (torch.library.triton_op).

Importing this package needs `triton`. On a machine without a GPU the kernels run
under the Triton interpreter when TRITON_INTERPRET=1 is set before the import.

Numerics: fp32 accumulation like the other backends. Under the interpreter,
bfloat16 values in the fp32-subnormal range (|x| < 1.2e-38) are not converted
exactly (a limit of the interpreter's bf16 emulation, see tests/test_temporal_pool.py).
"""

from . import fp8, merge_compress, multiscale_merge, multiscale_tile, spatial_compress, temporal_pool  # noqa: F401  (registers the ops)
