"""The oracle of the vLLM tests: a random-weight NVILA checkpoint that vLLM's CPU attention
can run (the shipped tiny model's shapes and tokenizer, its LLM with heads of 32: 2 heads,
1 KV head; vLLM's CPU kernels have no head size 16), written with nvila.save and read back by
nvila.load and by vLLM through the plugin; and nvila's prompt tokens and greedy tokens."""

from __future__ import annotations

import os
from dataclasses import replace

import torch

import nvila
from nvila import TINY_MODEL
from nvila.config import preset
from nvila.generate import generate_ids
from nvila.model import NVILA
from nvila.scoring import prompt_embeds
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


def nvila_greedy(ref: NVILA, text: str, images=(), video=None, max_tokens: int = 8) -> tuple[list[int], list[int]]:
    """nvila's prompt ids for a user message (visual tokens as the placeholder id vLLM's
    prompt holds there) and its greedy tokens, the stop token included."""
    tok = ref.tokenizer
    embeds, ids = prompt_embeds(ref, text, images, video)
    place = tok.encode("<vila/video>" if video is not None else "<image>")[0]
    prompt = [place if i < 0 else int(i) for i in ids]
    out = []
    for t, alive in generate_ids(ref, [embeds], max_tokens, stop_id=tok.stop_ids):
        out.append(int(t[0]))
        if not alive[0]:
            break
    return prompt, out
