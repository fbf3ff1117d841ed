"""The projector: Dynamic-S2 merge + k x k spatial-to-channel compression with the first
LayerNorm fused (one op), then the rest of the MLP (NVILA.md sections 3-4).

    2x2 (mlp_downsample):          LN(4C) | Linear(4C->H) GELU Linear(H->H)
    3x3 (mlp_downsample_3x3_fix):  LN(9C) | Linear(9C->3C) GELU LN(3C) Linear(3C->H) GELU Linear(H->H)

`ln` holds the first LayerNorm's weights (checkpoint `layers.1`); it is applied inside
merge_compress / spatial_compress, never as a module call. GELUs are the exact erf form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import nvila_kernels as nk
from nvila_kernels.tiling import TilePlan

from .config import NVILAConfig


def merge_compress(
    features: torch.Tensor,
    plan: TilePlan,
    k: int,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
    backend: str | None = None,
) -> torch.Tensor:
    """features (n_tiles, h*w, C) of a Dynamic-S2 (or single-tile) plan -> LayerNorm-ed
    projector input (n_tokens, k*k*S*C) in NVILA's order: the merged multi-scale map is
    cut into rows x cols blocks of h x w, each block is compressed on its own, the
    blocks' outputs are put back into one grid and flattened row-major (one fused
    nvila_kernels.merge_compress call)."""
    n, hw, C = features.shape
    h = w = int(round(hw**0.5))
    if h * w != hw:
        raise ValueError(f"features: expected a square token grid per tile, got {hw} tokens")
    return nk.merge_compress(features, plan, k, ln_weight, ln_bias, eps, h=h, w=w, backend=backend)


class Projector(nn.Module):
    def __init__(self, cfg: NVILAConfig) -> None:
        super().__init__()
        self.k = cfg.k
        self.eps = cfg.projector_eps
        C, H = cfg.mm_hidden, cfg.llm.hidden
        D = self.k * self.k * C
        self.ln = nn.LayerNorm(D, eps=cfg.projector_eps)
        if self.k == 2:
            self.fc1 = nn.Linear(D, H)
            self.fc2 = nn.Linear(H, H)
        else:
            self.fc1 = nn.Linear(D, 3 * C)
            self.ln2 = nn.LayerNorm(3 * C, eps=cfg.projector_eps)
            self.fc2 = nn.Linear(3 * C, H)
            self.fc3 = nn.Linear(H, H)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        """The projector after its first LayerNorm: (n, k*k*C) -> (n, H)."""
        x = F.gelu(self.fc1(x))
        if self.k == 2:
            return self.fc2(x)
        return self.fc3(F.gelu(self.fc2(self.ln2(x))))

    def forward(self, features: torch.Tensor, plan: TilePlan, backend: str | None = None) -> torch.Tensor:
        """features (n_tiles, h*w, C') of one image (C' = mm_hidden) -> (n_tokens, H)."""
        x = merge_compress(features, plan, self.k, self.ln.weight, self.ln.bias, self.eps, backend=backend)
        return self.mlp(x)

    def compress_tiles(self, features: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """Every tile its own image (NVILA-Lite, video frames): (n, h*w, C') -> (n, h'*w', H)."""
        n, hw, C = features.shape
        side = int(round(hw**0.5))
        x = nk.spatial_compress(
            features.view(n, side, side, C), self.k, self.ln.weight, self.ln.bias, self.eps, backend=backend
        )  # (n, h', w', k*k*C)
        return self.mlp(x.reshape(n, -1, x.shape[-1]))
