"""Qwen2 decoder (gpt-fast style): GQA attention with q/k/v biases, RoPE, RMSNorm,
SwiGLU MLP, tied or untied LM head, and a static KV cache.

    llm.setup_caches(batch, max_seq_len, dtype, device)
    logits = llm(embeds (B, T, D), input_pos (T,), rope_pos (B, T), mask (B, 1, T, S))
    h = llm.hidden(embeds, input_pos, rope_pos, None, left_pad=pads)  # causal prefill
    logits = llm.logits(h[:, -1])                                      # the head where used
    h = llm.hidden(embeds, input_pos, rope_pos, None, last_only=True)  # (B, 1, D): generation

input_pos are the cache slots written (shared by the batch), rope_pos the rotary
positions per sequence (they differ under left padding), mask the keys each query
may see (True = attend) over the whole cache length S.

mask=None is the prefill of a prompt written from slot 0: query t sees the prompt's
keys 0..t only (the cache's earlier contents are ignored), through SDPA's causal path
(no T x S mask is built, the masked half is skipped, the fused kernels stay on).
left_pad (B ints) are the padding positions at the start of each row of a left-padded
batch: a row's real queries see its real keys only, its padding queries get a zero
attention output.

last_only=True (a causal prefill whose only use is the next token, as in generation):
the last layer computes its keys and values at every position (the cache needs them)
and everything else (queries, attention, output projection, MLP) at the last position
only; the earlier layers are unchanged. The result is the same as hidden(...)[:, -1:]
up to summation order; at Qwen2-7B widths the last layer then costs about 2% of a full
one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import LLMConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class KVCache(nn.Module):
    def __init__(self, batch: int, kv_heads: int, max_seq_len: int, head_dim: int, dtype, device) -> None:
        super().__init__()
        shape = (batch, kv_heads, max_seq_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, kv_heads, T, head_dim) at slots input_pos; return the whole cache."""
        self.k.index_copy_(2, input_pos, k.to(self.k.dtype))
        self.v.index_copy_(2, input_pos, v.to(self.v.dtype))
        return self.k, self.v


def rope_tables(head_dim: int, theta: float, max_seq_len: int, device) -> torch.Tensor:
    """(max_seq_len, head_dim // 2, 2) fp32 cos, sin of position * theta^(-2i/head_dim)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_seq_len, device=device, dtype=torch.float32), inv_freq)
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Qwen2's rotate-half RoPE. x (B, heads, T, head_dim), table (B, T, head_dim // 2, 2)."""
    cos, sin = table[..., 0].unsqueeze(1), table[..., 1].unsqueeze(1)  # (B, 1, T, head_dim // 2)
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, cfg.head_dim
        self.q = nn.Linear(cfg.hidden, cfg.heads * cfg.head_dim)
        self.k = nn.Linear(cfg.hidden, cfg.kv_heads * cfg.head_dim)
        self.v = nn.Linear(cfg.hidden, cfg.kv_heads * cfg.head_dim)
        self.o = nn.Linear(cfg.heads * cfg.head_dim, cfg.hidden, bias=False)
        self.cache: KVCache | None = None

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor,
        input_pos: torch.Tensor,
        mask: torch.Tensor | None,
        left_pad: list[int] | None = None,
        last_only: bool = False,
    ):
        """x (B, T, D) -> (B, T, D), or (B, 1, D) for the last query only (last_only: a
        causal prefill, mask None; every position's k, v still go to the cache)."""
        B, T, _ = x.shape
        xq, rq = (x[:, -1:], rope[:, -1:]) if last_only else (x, rope)
        Tq = xq.shape[1]
        q = self.q(xq).view(B, Tq, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, rq), apply_rope(k, rope)
        if self.cache is None:
            raise RuntimeError("the KV cache is not set up: call setup_caches(batch, max_seq_len) first")
        gqa = self.heads != self.kv_heads
        if mask is None:  # causal prefill: attend over the prompt's own k, v
            self.cache.update(input_pos, k, v)
            y = last_query_attention(q, k, v, left_pad, gqa) if last_only else causal_attention(q, k, v, left_pad, gqa)
        else:
            k, v = self.cache.update(input_pos, k, v)  # (B, kv_heads, S, head_dim)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.o(y.transpose(1, 2).reshape(B, Tq, -1))


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, left_pad: list[int] | None, gqa: bool
) -> torch.Tensor:
    """SDPA with the causal flag, q (B, heads, T, hd), k, v (B, kv_heads, T, hd). Rows of a
    left-padded batch run one by one on their real positions (a fused kernel each); the
    padding queries' outputs are zero."""
    if left_pad is None or not any(left_pad):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    y = q.new_zeros(q.shape)
    for b, p in enumerate(left_pad):
        y[b, :, p:] = F.scaled_dot_product_attention(
            q[b : b + 1, :, p:], k[b : b + 1, :, p:], v[b : b + 1, :, p:], is_causal=True, enable_gqa=gqa
        )[0]
    return y


def last_query_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, left_pad: list[int] | None, gqa: bool
) -> torch.Tensor:
    """The last prompt position's attention, q (B, heads, 1, hd) over k, v (B, kv_heads, T, hd):
    it sees every key of its row but the left padding (no causal flag: SDPA aligns that to
    the first key)."""
    if left_pad is None or not any(left_pad):
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
    T = k.shape[2]
    pads = torch.tensor(left_pad, device=q.device)
    valid = torch.arange(T, device=q.device)[None, :] >= pads[:, None]  # (B, T)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :], enable_gqa=gqa)


class MLP(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(cfg.hidden, cfg.ffn, bias=False)
        self.up = nn.Linear(cfg.hidden, cfg.ffn, bias=False)
        self.down = nn.Linear(cfg.ffn, cfg.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Layer(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.norm1 = RMSNorm(cfg.hidden, cfg.eps)
        self.attn = Attention(cfg)
        self.norm2 = RMSNorm(cfg.hidden, cfg.eps)
        self.mlp = MLP(cfg)

    def forward(self, x, rope, input_pos, mask, left_pad=None, last_only=False):
        a = self.attn(self.norm1(x), rope, input_pos, mask, left_pad, last_only)
        x = (x[:, -1:] if last_only else x) + a
        return x + self.mlp(self.norm2(x))


class Qwen2(nn.Module):
    def __init__(self, cfg: LLMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.hidden)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.eps)
        self.head = None if cfg.tie_embeddings else nn.Linear(cfg.hidden, cfg.vocab, bias=False)
        self.rope: torch.Tensor | None = None
        self.max_batch = self.max_seq_len = 0

    def setup_caches(self, batch: int, max_seq_len: int, dtype=None, device=None) -> None:
        """Allocate the KV caches (batch, kv_heads, max_seq_len, head_dim) and the RoPE table."""
        if max_seq_len > self.cfg.max_seq_len:
            raise ValueError(f"max_seq_len: {max_seq_len} exceeds the model's max_seq_len {self.cfg.max_seq_len}")
        dtype = dtype or self.embed.weight.dtype
        device = device or self.embed.weight.device
        for layer in self.layers:
            layer.attn.cache = KVCache(batch, self.cfg.kv_heads, max_seq_len, self.cfg.head_dim, dtype, device)
        self.rope = rope_tables(self.cfg.head_dim, self.cfg.rope_theta, max_seq_len, device)
        self.max_batch, self.max_seq_len = batch, max_seq_len

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., D) from hidden() -> logits (..., vocab): the final norm and
        the LM head, run only on the positions given."""
        x = self.norm(x)
        return F.linear(x, self.embed.weight) if self.head is None else self.head(x)

    def hidden(
        self,
        embeds: torch.Tensor,
        input_pos: torch.Tensor,
        rope_pos: torch.Tensor,
        mask: torch.Tensor | None,
        left_pad: Sequence[int] | torch.Tensor | None = None,
        *,
        last_only: bool = False,
    ) -> torch.Tensor:
        """embeds (B, T, D) -> the last layer's output (B, T, D), before the final norm.
        mask None: causal prefill from slot 0 (input_pos must be 0..T-1), rows left-padded
        by left_pad (see the module docstring). last_only (causal prefill only): the last
        position's output (B, 1, D), the last layer computed there only (its k, v everywhere)."""
        if self.rope is None:
            raise RuntimeError("call setup_caches(batch, max_seq_len) before running the LLM")
        B, T, _ = embeds.shape
        if mask is None:
            if input_pos.shape != (T,) or int(input_pos[0]) != 0 or int(input_pos[-1]) != T - 1:
                raise ValueError(f"input_pos: a causal prefill (mask=None) writes slots 0..{T - 1}, got {input_pos}")
            if left_pad is not None:
                left_pad = [int(p) for p in left_pad]
                if len(left_pad) != B or not all(0 <= p < T for p in left_pad):
                    raise ValueError(f"left_pad: expected {B} ints in [0, {T}), got {left_pad}")
        elif left_pad is not None:
            raise ValueError("left_pad: only for a causal prefill (mask=None); an explicit mask holds the padding")
        elif last_only:
            raise ValueError("last_only: only for a causal prefill (mask=None)")
        rope = self.rope[rope_pos]  # (B, T, head_dim // 2, 2)
        x = embeds
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, input_pos, mask, left_pad, last_only and i == last)
        return x

    def forward(
        self,
        embeds: torch.Tensor,
        input_pos: torch.Tensor,
        rope_pos: torch.Tensor,
        mask: torch.Tensor | None,
        left_pad: Sequence[int] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """embeds (B, T, D) -> logits (B, T, vocab) in fp32, at every position (generation
        uses hidden() and logits() of the last position only)."""
        return self.logits(self.hidden(embeds, input_pos, rope_pos, mask, left_pad)).float()


def causal_mask(input_pos: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, S) bool: query at slot input_pos[t] sees valid keys at slots <= it, and
    always itself (so a padding query has one key and no NaN)."""
    S = key_valid.shape[1]
    slots = torch.arange(S, device=input_pos.device)
    causal = slots[None, :] <= input_pos[:, None]  # (T, S)
    own = slots[None, :] == input_pos[:, None]
    return ((causal[None] & key_valid[:, None, :]) | own[None]).unsqueeze(1)
