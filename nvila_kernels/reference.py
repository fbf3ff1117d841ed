"""Pure-PyTorch reference of every op: the test oracle, written for clarity.

Math is done in float32 and the result cast back to the input dtype, as the
kernels do. These functions compose standard torch ops, so they also work under
autograd and torch.compile.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def spatial_compress(
    x: torch.Tensor,
    k: int,
    ln_weight: torch.Tensor | None = None,
    ln_bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """NVILA's k x k space-to-depth, optionally followed by LayerNorm.

    x: (B, H, W, C) token grid, tokens row-major.
    Returns (B, ceil(H/k), ceil(W/k), k*k*C): zero rows appended at the bottom,
    then zero columns on the right, until H and W are multiples of k; output cell
    (I, J) holds input token (k*I + dr, k*J + dc) at channels slot*C + c with
    slot = dr*k + dc. With ln_weight, LayerNorm over the last dim (eps, affine).
    """
    B, H, W, C = x.shape
    xf = x.float()
    pad_h, pad_w = (-H) % k, (-W) % k
    xf = F.pad(xf, (0, 0, 0, pad_w, 0, pad_h))  # (B, Hp, Wp, C)
    Ho, Wo = (H + pad_h) // k, (W + pad_w) // k
    y = xf.view(B, Ho, k, Wo, k, C)  # (B, I, dr, J, dc, C)
    y = y.permute(0, 1, 3, 2, 4, 5).reshape(B, Ho, Wo, k * k * C)  # (B, I, J, (dr, dc, C))
    if ln_weight is not None:
        bias = None if ln_bias is None else ln_bias.float()
        y = F.layer_norm(y, (k * k * C,), ln_weight.float(), bias, eps)
    return y.to(x.dtype)


def temporal_pool(x: torch.Tensor, group: int) -> torch.Tensor:
    """Mean over non-overlapping groups of `group` consecutive frames (dim 0).

    x: (T, ...) with T divisible by group. Returns (T // group, ...), fp32 sums.
    """
    T = x.shape[0]
    y = x.float().reshape(T // group, group, *x.shape[1:]).mean(dim=1)
    return y.to(x.dtype)
