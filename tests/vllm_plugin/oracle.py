"""The oracle of the vLLM tests: nvila's prompt tokens and greedy tokens for a prompt, on the
checkpoint vLLM serves (the shipped tiny model, read by nvila.load and by vLLM through the
plugin)."""

from __future__ import annotations

from nvila.generate import generate_ids
from nvila.model import NVILA
from nvila.scoring import prompt_embeds


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
