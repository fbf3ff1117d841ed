"""SigLIP vision tower (NVILA.md section 1): patch conv, learned position embeddings,
pre-norm blocks with a GELU-tanh MLP. Returns hidden_states[select_layer], the output
of a block before the post-LayerNorm; the blocks after it and the post-LayerNorm are
never built."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VisionConfig


class Attention(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.q = nn.Linear(cfg.hidden, cfg.hidden)
        self.k = nn.Linear(cfg.hidden, cfg.hidden)
        self.v = nn.Linear(cfg.hidden, cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = (p(x).view(B, N, self.heads, D // self.heads).transpose(1, 2) for p in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim)
        return self.out(y.transpose(1, 2).reshape(B, N, D))


class MLP(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden, cfg.mlp)
        self.fc2 = nn.Linear(cfg.mlp, cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTower(nn.Module):
    """pixels (n, 3, image, image) normalized to [-1, 1] -> features (n, grid*grid, hidden),
    tokens row-major over the patch grid."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch = nn.Conv2d(3, cfg.hidden, cfg.patch, stride=cfg.patch)
        self.pos = nn.Embedding(cfg.grid * cfg.grid, cfg.hidden)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.computed_layers))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        n, c, h, w = pixels.shape
        if (c, h, w) != (3, self.cfg.image, self.cfg.image):
            raise ValueError(f"pixels: expected (n, 3, {self.cfg.image}, {self.cfg.image}), got {tuple(pixels.shape)}")
        x = self.patch(pixels.to(self.patch.weight.dtype))  # (n, D, grid, grid)
        x = x.flatten(2).transpose(1, 2) + self.pos.weight  # (n, grid*grid, D)
        for block in self.blocks:
            x = block(x)
        return x
