"""Triton kernel of temporal_pool: program (g, n-block) sums `group` frames in fp32."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._register import kernel_op, launcher

_BLOCK = 1024


@triton.jit
def _temporal_pool_kernel(x_ptr, out_ptr, N, sT, group, BLOCK: tl.constexpr):
    g = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for t in range(group):
        acc += tl.load(x_ptr + (g * group + t) * sT + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + g * N + offs, (acc / group).to(out_ptr.dtype.element_ty), mask=mask)


@kernel_op("temporal_pool")
def temporal_pool_triton(x: torch.Tensor, group: int, out: torch.Tensor) -> None:
    T = x.shape[0]
    N = x.numel() // T
    if N == 0:
        return
    launcher(_temporal_pool_kernel)[(T // group, triton.cdiv(N, _BLOCK))](
        x, out, N, x.stride(0), group, BLOCK=_BLOCK, num_warps=4
    )
