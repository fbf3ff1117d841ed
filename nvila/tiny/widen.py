"""`python -m nvila.tiny.widen`: widen the tiny model's LLM (hidden size and head width)
without changing what it computes, so that training can continue from it.

vLLM's CPU attention needs heads of at least 32 channels; the shipped tiny model was first
trained with 4 heads of 16 (hidden 64). A narrower model is embedded in a wider one
exactly (Net2Net-style, zeros in the new channels):

- the residual stream gets the new channels after the old ones, always zero: embeddings,
  the projector's output, o_proj and down_proj write zeros there, and every matrix that
  reads the stream ignores them; the RMSNorm weights are divided by sqrt(new/old hidden),
  since the mean square is taken over more channels (eps then counts for that much more:
  1e-6 against mean squares of order 1, below fp32 rounding);
- every head keeps its number and gets wider: old channel i goes where RoPE turns it at
  the same frequency (inv_freq theta^(-2i/d) at i < d/2, its rotate-half partner d/2
  further), i.e. to r*i and to d'/2 + r*(i - d/2) for r = d'/d; q is scaled by
  sqrt(d'/d) so that q.k / sqrt(d') equals the old q.k / sqrt(d);
- the MLP width, the vision tower and the vocabulary are unchanged.

`noise` > 0 puts N(0, noise^2) into the new (otherwise all-zero, hence gradient-free)
blocks so that training can use them; with noise 0 the widened model gives the same
logits as the old one up to rounding (tests/test_tiny_widen.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import torch

from ..model import NVILA
from ..weights import load, save


def _head_perm(d: int, d_new: int) -> torch.Tensor:
    """Where each of a head's d channels goes in a head of d_new channels (same RoPE freq)."""
    r = d_new // d
    i = torch.arange(d)
    return torch.where(i < d // 2, r * i, d_new // 2 + r * (i - d // 2))


def _head_rows(heads: int, d: int, d_new: int) -> torch.Tensor:
    """Indices in a widened (heads * d_new) projection of the old (heads * d) rows."""
    return (torch.arange(heads)[:, None] * d_new + _head_perm(d, d_new)[None, :]).reshape(-1)


# per parameter (nvila's names, matched at the end): which map each dimension takes
# ("s": the residual stream, "q" / "k": the query / key-value heads, "=": unchanged)
_RULES = {
    "llm.embed.weight": "=s", "llm.head.weight": "=s", "norm.weight": "s", "norm1.weight": "s",
    "norm2.weight": "s", "attn.q.weight": "qs", "attn.q.bias": "q", "attn.k.weight": "ks",
    "attn.k.bias": "k", "attn.v.weight": "ks", "attn.v.bias": "k", "attn.o.weight": "sq",
    "mlp.gate.weight": "=s", "mlp.up.weight": "=s", "mlp.down.weight": "s=",
    "projector.fc1.weight": "s=", "projector.fc1.bias": "s", "projector.fc2.weight": "ss",
    "projector.fc2.bias": "s",
}  # fmt: skip


def widen(model: NVILA, hidden: int, noise: float = 0.0, seed: int = 0) -> NVILA:
    """A copy of `model` whose LLM is `hidden` wide with the same head counts
    (so heads of hidden / heads channels) and the same MLP width; it computes the same
    function when noise == 0."""
    old = model.cfg.llm
    d, H = old.hidden // old.heads, old.hidden
    if hidden <= H or hidden % old.heads or (hidden // old.heads) % d:
        raise ValueError(f"hidden: expected a multiple of the model's {H} that is larger, got {hidden}")
    d_new = hidden // old.heads
    llm = type(old)(**{**old.__dict__, "hidden": hidden})
    new = NVILA(dataclasses.replace(model.cfg, llm=llm), backend=model.backend)
    new.tokenizer = model.tokenizer
    maps = {"s": torch.arange(H), "q": _head_rows(old.heads, d, d_new), "k": _head_rows(old.kv_heads, d, d_new)}
    scale = {"q": math.sqrt(d_new / d), "s": 1.0 / math.sqrt(hidden / H)}  # q.k/sqrt(d); RMSNorm
    g = torch.Generator().manual_seed(seed)
    src = model.state_dict()
    with torch.no_grad():
        for name, p in new.state_dict().items():
            w = src[name]
            if p.shape == w.shape:
                p.copy_(w)
                continue
            rule = next((r for k, r in _RULES.items() if name == k or name.endswith("." + k)), None)
            if rule is None or len(rule) != w.dim():
                raise AssertionError(f"widen: no rule for {name} {tuple(w.shape)} -> {tuple(p.shape)}")
            p.copy_(torch.randn(p.shape, generator=g) * noise)
            idx = [maps.get(r, torch.arange(n)) for r, n in zip(rule, w.shape, strict=True)]
            factor = scale["q"] if rule[0] == "q" else scale["s"] if "norm" in name else 1.0
            p[torch.meshgrid(*idx, indexing="ij")] = w * factor
    return new.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nvila.tiny.widen", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the tiny model's checkpoint directory")
    p.add_argument("--hidden", type=int, required=True, help="the LLM's new width")
    p.add_argument("--noise", type=float, default=0.0, help="std of the weights put into the new blocks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    model = load(args.model, dtype="fp32", backend="reference")
    save(widen(model, args.hidden, args.noise, args.seed), args.out)
    heads = model.cfg.llm.heads
    print(f"saved to {args.out}: LLM hidden {args.hidden}, {heads} heads of {args.hidden // heads}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
