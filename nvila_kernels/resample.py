"""Pillow's bicubic resampling coefficients (Image.resize(..., Image.BICUBIC) on uint8
images), computed once per (in_size, out_size) on the host and handed to every
multiscale_tile kernel (reference, CPU, CUDA, Triton), so all of them use the same
weights.

Pillow resizes separably (horizontal pass first, then vertical), each pass with
fixed-point weights. Per output sample o of an axis resized in -> out:
  scale = in / out, filterscale = max(scale, 1), support = 2 * filterscale
  center = (o + 0.5) * scale
  lo = int(center - support + 0.5) clipped to >= 0, hi = int(center + support + 0.5) clipped to <= in
  w[j] = bicubic((lo + j - center + 0.5) / filterscale) for j < hi - lo, a = -0.5, then
  divided by their (sequential) sum, in double;
  fixed point: int(w * 2^22 + 0.5) for w >= 0, int(w * 2^22 - 0.5) for w < 0 (truncation).
A pass then computes clip_uint8((sum_j w[j] * x[lo + j] + 2^21) >> 22).
Shrinking widens the filter by the scale factor (antialiasing); resizing to the same
size gives the identity (one weight 2^22), which equals Pillow skipping that pass.

Pass order (Pillow 13, found by matching its output): horizontal first, except when
the height shrinks and loses more than twice as many pixels as the width,
(in_h - out_h) > 2 * (in_w - out_w); then vertical first (`vertical_first`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = [
    "taps",
    "coeffs",
    "vertical_first",
    "plan_coeff_tensors",
    "plan_coeffs",
    "PRECISION_BITS",
    "BICUBIC_A",
    "BICUBIC_SUPPORT",
]

PRECISION_BITS = 22  # 32 - 8 - 2, as Pillow's 8-bit resampling
BICUBIC_A = -0.5
BICUBIC_SUPPORT = 2.0


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic with a = -0.5, evaluated in the same operation order as Pillow."""
    x = np.abs(x)
    a = BICUBIC_A
    inner = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    outer = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, inner, np.where(x < 2.0, outer, 0.0))


def taps(in_size: int, out_size: int) -> int:
    """Largest number of input samples one output sample reads (Pillow's ksize)."""
    filterscale = max(in_size / out_size, 1.0)
    return int(math.ceil(BICUBIC_SUPPORT * filterscale)) * 2 + 1


@functools.lru_cache(maxsize=256)
def _coeffs_cached(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = BICUBIC_SUPPORT * filterscale
    ksize = taps(in_size, out_size)
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    lo = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    hi = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64)
    n = hi - lo
    j = np.arange(ksize, dtype=np.int64)
    valid = j[None, :] < n[:, None]
    w = _bicubic(((j[None, :] + lo[:, None]).astype(np.float64) - center[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where(valid, w, 0.0)
    total = np.zeros(out_size, dtype=np.float64)
    for k in range(ksize):  # sequential sum, as Pillow (numpy's sum is pairwise)
        total += w[:, k]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
    one = float(1 << PRECISION_BITS)
    fixed = np.trunc(np.where(w < 0, w * one - 0.5, w * one + 0.5)).astype(np.int32)
    bounds = np.stack([lo, n], axis=1).astype(np.int32)
    bounds.setflags(write=False)
    fixed.setflags(write=False)
    return bounds, fixed


def coeffs(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(bounds, weights) of resizing `in_size` samples to `out_size` with Pillow's bicubic.

    bounds: (out_size, 2) int32 [first input sample, number of taps];
    weights: (out_size, taps(in_size, out_size)) int32 fixed-point weights (2^22 = 1),
    zero past each row's number of taps. Read-only arrays (cached).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"in_size, out_size: expected ints >= 1, got {in_size}, {out_size}")
    return _coeffs_cached(int(in_size), int(out_size))


def vertical_first(in_w: int, in_h: int, out_w: int, out_h: int) -> bool:
    """Whether Pillow 13 runs the vertical pass before the horizontal one."""
    return out_h < in_h and (in_h - out_h) > 2 * (in_w - out_w)


@functools.lru_cache(maxsize=64)
def _plan_coeff_arrays(in_w: int, in_h: int, widths: tuple[int, ...], heights: tuple[int, ...]):
    return (*plan_coeffs(in_w, list(widths)), *plan_coeffs(in_h, list(heights)))


@torch.compiler.assume_constant_result
def plan_coeff_tensors(in_w: int, in_h: int, widths: tuple[int, ...], heights: tuple[int, ...]):
    """(xbounds, xweights, ybounds, yweights) int32 CPU tensors of plan_coeffs for every
    scale's width and height: what the multiscale_tile ops take. Cached; under
    torch.compile the result is a graph constant. The tensors share memory with the
    cached arrays: read them, never write."""
    return tuple(torch.from_numpy(a) for a in _plan_coeff_arrays(in_w, in_h, tuple(widths), tuple(heights)))


def plan_coeffs(in_size: int, out_sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """coeffs for several output sizes of one axis, concatenated along outputs
    (the scales of a plan); weights padded with zeros to the largest tap count."""
    parts = [coeffs(in_size, o) for o in out_sizes]
    k = max(w.shape[1] for _, w in parts)
    bounds = np.concatenate([b for b, _ in parts])  # new, writable arrays
    weights = np.concatenate([np.pad(w, ((0, 0), (0, k - w.shape[1]))) for _, w in parts])
    return bounds, weights
