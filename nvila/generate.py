"""Text generation (gpt-fast style): one prefill over the whole prompt, then one decode
step per token against the static KV cache. Greedy or sampled (temperature, top-p),
stops at the checkpoint's stop tokens (generation_config.json's eos_token_id, the
tokenizer's eos, <|im_end|>); a batch of prompts is left-padded. Answers are decoded as
VILA decodes them: special tokens skipped, whitespace stripped.

    for piece in nvila.generate(model, "Describe.", images=["cat.jpg"], stream=True):
        print(piece, end="", flush=True)
    answers = nvila.generate_batch(model, [("Hi", [], None), ("<image>What?", [img], None)])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .llm import causal_mask
from .model import NVILA
from .scoring import prompt_embeds


def sample(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0, generator=None) -> torch.Tensor:
    """Next tokens (B,) from logits (B, vocab): argmax when temperature == 0, else a draw
    from softmax(logits / temperature) restricted to the smallest set of tokens whose
    probability reaches top_p."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        p, idx = probs.sort(dim=-1, descending=True)
        drop = p.cumsum(dim=-1) - p >= top_p  # tokens after the nucleus is full; the first always stays
        p = p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, idx, p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def prefill(model: NVILA, x: torch.Tensor, rope_pos, left_pad: Sequence[int]) -> torch.Tensor:
    """Logits (B, vocab) fp32 of the last prompt position, x (B, T, H) left-padded by
    left_pad, written to cache slots 0..T-1: causal attention without a mask; the last
    layer (but its keys and values) and the LM head on the last position only."""
    pos = torch.arange(x.shape[1], device=x.device)
    h = model.llm.hidden(x, pos, rope_pos, None, left_pad=left_pad, last_only=True)
    return model.llm.logits(h[:, -1]).float()


def decode_one(model: NVILA, x: torch.Tensor, input_pos, rope_pos, key_valid) -> torch.Tensor:
    """Logits (B, vocab) fp32 of one new token per sequence, x (B, 1, H), against the
    cache's valid keys. Fixed shapes for a given batch and cache length, so torch.compile
    (generate(..., compile=True)) traces it once."""
    h = model.llm.hidden(x, input_pos, rope_pos, causal_mask(input_pos, key_valid))
    return model.llm.logits(h[:, -1]).float()


_compiled_decode = None


def _decode_fn(compile: bool):
    global _compiled_decode
    if not compile:
        return decode_one
    if _compiled_decode is None:
        _compiled_decode = torch.compile(decode_one, fullgraph=True, dynamic=False)
    return _compiled_decode


@torch.inference_mode()
def generate_ids(
    model: NVILA,
    embeds: Sequence[torch.Tensor],
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop_id: int | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    compile: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (tokens (B,), alive (B,) bool) per step for prompts given as embeddings
    [(T_b, H)]; a sequence stops after emitting stop_id (one id or several; the stop token
    is yielded with alive False) or after max_new_tokens. compile: run the decode step through
    torch.compile (gpt-fast style; the first call pays the compilation)."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: expected an int >= 1, got {max_new_tokens!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature: expected a float >= 0, got {temperature!r}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p: expected 0 < top_p <= 1, got {top_p!r}")
    llm, dev = model.llm, model.device
    B, lens = len(embeds), [e.shape[0] for e in embeds]
    T = max(lens)
    S = T + max_new_tokens
    llm.setup_caches(B, S, model.dtype, dev)
    x = torch.zeros(B, T, llm.cfg.hidden, dtype=model.dtype, device=dev)
    pad = torch.tensor([T - n for n in lens], device=dev)
    key_valid = torch.zeros(B, S, dtype=torch.bool, device=dev)
    for b, e in enumerate(embeds):
        x[b, T - lens[b] :] = e
        key_valid[b, T - lens[b] : T] = True
    rope_pos = (torch.arange(T, device=dev)[None] - pad[:, None]).clamp(min=0)  # (B, T)
    logits = prefill(model, x, rope_pos, [T - n for n in lens])
    stops = None if stop_id is None else torch.tensor(stop_id, device=dev).reshape(-1)
    alive = torch.ones(B, dtype=torch.bool, device=dev)
    decode = _decode_fn(compile)
    for step in range(max_new_tokens):
        tok = sample(logits, temperature, top_p, generator)
        if stops is not None:
            alive = alive & ~torch.isin(tok, stops)
        yield tok, alive
        if not alive.any() or step == max_new_tokens - 1:
            return
        pos = torch.tensor([T + step], device=dev)
        key_valid[:, T + step] = True
        x = llm.embed(tok)[:, None]  # (B, 1, H)
        logits = decode(model, x, pos, (pos - pad)[:, None], key_valid)


def generate(
    model: NVILA,
    text: str,
    images: Sequence = (),
    video=None,
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stream: bool = False,
    seed: int | None = None,
    compile: bool = False,
):
    """Answer one user message. images: paths / PIL images; video: a path or a list of
    frames. Media placeholders go first unless `text` already holds them. Returns the
    answer, or with stream=True an iterator over its text pieces as they are decoded.
    A model with video time tokens (cfg.num_time_tokens) asked about a video file has
    them turned into timestamps as VILA's CLI does (the answer then comes as one piece)."""
    pieces = _stream(model, text, images, video, max_new_tokens, temperature, top_p, seed, compile)
    if isinstance(video, str) and model.cfg.num_time_tokens:
        from .media import video_duration
        from .tokenizer import decode_time_tokens

        c = model.cfg
        answer = decode_time_tokens("".join(pieces), video_duration(video), c.num_time_tokens, c.time_token_format)
        return iter([answer]) if stream else answer
    return pieces if stream else "".join(pieces)


def answer_text(tok, ids: Sequence[int]) -> str:
    """An answer's text as VILA decodes it: special tokens skipped, whitespace stripped."""
    return tok.decode(ids, skip_special_tokens=True).strip()


def _stream(model, text, images, video, max_new_tokens, temperature, top_p, seed, compile) -> Iterator[str]:
    """The answer's text in pieces whose concatenation is answer_text(ids): leading
    whitespace is held back until text follows, trailing whitespace until more text follows
    (it is dropped at the end), and an incomplete UTF-8 sequence until it completes."""
    tok = model.tokenizer
    gen = None if seed is None else torch.Generator(model.device).manual_seed(seed)
    embeds, _ = prompt_embeds(model, text, images, video)
    ids, emitted = [], ""
    for t, alive in generate_ids(model, [embeds], max_new_tokens, temperature, top_p, tok.stop_ids, gen, compile):
        if not alive[0]:
            break
        ids.append(int(t[0]))
        text_so_far = tok.decode(ids, skip_special_tokens=True).lstrip()
        if text_so_far.endswith("\ufffd"):
            continue
        ready = text_so_far.rstrip()
        if len(ready) > len(emitted):
            yield ready[len(emitted) :]
            emitted = ready
    rest = answer_text(tok, ids)[len(emitted) :]  # an incomplete UTF-8 sequence at the end
    if rest:
        yield rest


def generate_batch(
    model: NVILA,
    requests: Sequence[tuple[str, Sequence, object]],
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    compile: bool = False,
) -> list[str]:
    """Answers to several (text, images, video) requests, run as one left-padded batch."""
    tok = model.tokenizer
    gen = None if seed is None else torch.Generator(model.device).manual_seed(seed)
    embeds = [prompt_embeds(model, text, images, video)[0] for text, images, video in requests]
    out: list[list[int]] = [[] for _ in requests]
    done = [False] * len(requests)
    for t, alive in generate_ids(model, embeds, max_new_tokens, temperature, top_p, tok.stop_ids, gen, compile):
        for b in range(len(requests)):
            if not done[b] and alive[b]:
                out[b].append(int(t[b]))
            done[b] = done[b] or not bool(alive[b])
    return [answer_text(tok, ids) for ids in out]
