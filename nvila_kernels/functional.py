"""The public functions, re-exported as nvila_kernels.*: one per op (plus
multiscale_tile_batch), each defined in its op's module nvila_kernels/ops/<op>.py,
which also declares the op (ops/_spec.py: OpSpec). The caps are module constants."""

from __future__ import annotations

from .ops import FUNCTIONS
from .ops._checks import FLOAT_DTYPES, MAX_TOKEN_CHANNELS  # noqa: F401
from .ops.fp8_gemm import OUT_DTYPES  # noqa: F401
from .ops.fp8_quantize import FP8_DTYPES  # noqa: F401
from .ops.multiscale_merge import MERGE_MAX_SCALES  # noqa: F401
from .ops.multiscale_tile import TILE_MAX_SCALES, TILE_MAX_SIDE, TILE_MAX_TILES  # noqa: F401

__all__ = list(FUNCTIONS)
globals().update(FUNCTIONS)
