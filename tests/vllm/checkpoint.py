"""A random-weight NVILA checkpoint that vLLM's CPU attention can run: the shipped tiny
model's shapes and tokenizer (nvila.tiny), its LLM with heads of 32 (2 heads, 1 KV head;
vLLM's CPU kernels have no head size 16). Written with nvila.save, read back by nvila.load
(the oracle) and by vLLM through the plugin."""

from __future__ import annotations

import os
from dataclasses import replace

import torch

import nvila
from nvila import TINY_MODEL
from nvila.config import preset
from nvila.model import NVILA
from nvila.tokenizer import Tokenizer


def write_checkpoint(path: str, seed: int = 0) -> str:
    """Write the checkpoint to `path` (a directory) and return it."""
    tokenizer = Tokenizer.from_dir(os.path.join(TINY_MODEL, "llm"))
    base = preset("tiny-shapes")
    cfg = replace(base, llm=replace(base.llm, heads=2, kv_heads=1, vocab=len(tokenizer)))
    torch.manual_seed(seed)
    model = NVILA(cfg, backend="reference")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("embed.weight", "pos.weight", "head.weight")):
                p.normal_(0.0, 0.5)
    model.tokenizer = tokenizer
    nvila.save(model, path)
    return path
