"""Triton kernels, registered as torch ops (torch.library.triton_op).

Importing this package needs `triton`. On a machine without a GPU the kernels run
under the Triton interpreter when TRITON_INTERPRET=1 is set before the import.
"""

from . import spatial_compress, temporal_pool  # noqa: F401  (registers the ops)
