"""Logits and visual embeddings of a prompt, for scoring and evaluation: no caches or
masks to set up by hand.

    model = nvila.load(path)
    out = nvila.logits(model, "What colour is the square?", images=["shape.png"])
    out.logits          # (T, vocab) fp32, one row per prompt position
    out.ids             # (T,) the prompt's token ids, -1 at visual tokens
    nvila.logits(model, "...", positions="last").logits   # (1, vocab): the next token's logits

    score = nvila.logprob(model, "What colour?", "red", images=["shape.png"])  # log p(answer | prompt)
    blocks = nvila.visual_embeddings(model, images=["shape.png"])  # [(tokens, H)] as the LLM sees them

The prompt is the user message in the checkpoint's chat template with the generation
prompt appended (as nvila.generate builds it); chat=False takes `text` as the whole
prompt, placeholders included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .media import IMAGE_TOKEN, VIDEO_TOKEN, load_video, user_content
from .model import NVILA


@dataclass
class PromptLogits:
    logits: torch.Tensor  # (len(positions), vocab) fp32
    ids: torch.Tensor  # (T,) token ids of the whole prompt, -1 at visual tokens
    positions: torch.Tensor  # (len(positions),) the prompt positions the rows of `logits` belong to


def prompt_text(model: NVILA, text: str, n_images: int = 0, video: bool = False) -> str:
    """The templated prompt of one user message: media placeholders first unless `text`
    already holds them, the checkpoint's chat template, the generation prompt appended."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    has_media = IMAGE_TOKEN in text or VIDEO_TOKEN in text
    content = text if has_media else user_content(text, n_images, video)
    return model.tokenizer.apply_chat_template([{"role": "user", "content": content}])


def frames(model: NVILA, video):
    """A video path -> the frames NVILA samples (cfg.num_video_frames, cfg.fps); frames as given."""
    if video is None or not isinstance(video, str):
        return video
    return load_video(video, model.cfg.num_video_frames, model.cfg.fps)


@torch.inference_mode()
def prompt_embeds(model: NVILA, text: str, images: Sequence = (), video=None, chat: bool = True):
    """(embeds (T, H), ids (T,)) of a prompt: what the LLM receives."""
    prompt = prompt_text(model, text, len(images), video is not None) if chat else text
    return model.embed_prompt(prompt, list(images), frames(model, video))


@torch.inference_mode()
def visual_embeddings(model: NVILA, images: Sequence = (), video=None) -> list[torch.Tensor]:
    """The visual token blocks [(tokens, H)] the LLM receives for `images` (each tiled when
    it is the only one, as in a prompt) then `video`, in the model's dtype, each block
    followed in a prompt by the "\\n" embedding."""
    blocks = []
    for im in images:
        blocks += model.encode_image(im, tiled=len(images) == 1)
    if video is not None:
        blocks += model.encode_video(frames(model, video))
    return [b.to(model.dtype) for b in blocks]


def _positions(positions, T: int) -> torch.Tensor:
    if positions is None:
        return torch.arange(T)
    if isinstance(positions, str):
        if positions != "last":
            raise ValueError(f"positions: expected None, 'last' or a list of ints, got {positions!r}")
        return torch.tensor([T - 1])
    try:
        pos = torch.as_tensor(list(positions), dtype=torch.long)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"positions: expected None, 'last' or a list of ints, got {positions!r}") from e
    if pos.ndim != 1 or ((pos < -T) | (pos >= T)).any():
        raise ValueError(f"positions: expected ints in [-{T}, {T}) for a {T}-token prompt, got {positions!r}")
    return pos % T


@torch.inference_mode()
def embeds_logits(model: NVILA, embeds: torch.Tensor, positions=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (n, vocab) fp32, positions (n,)) of a prompt given as embeddings (T, H):
    one causal pass, the LM head only at `positions` (None: all, "last", or a list)."""
    T = embeds.shape[0]
    pos = _positions(positions, T)
    llm, dev = model.llm, model.device
    llm.setup_caches(1, T, model.dtype, dev)
    slots = torch.arange(T, device=dev)
    hidden = llm.hidden(embeds[None].to(dev, model.dtype), slots, slots[None], None)[0]  # (T, H), causal: no mask
    return llm.logits(hidden[pos.to(dev)]).float(), pos


def logits(
    model: NVILA, text: str, images: Sequence = (), video=None, *, positions=None, chat: bool = True
) -> PromptLogits:
    """The LLM's logits over a prompt with media (see the module docstring). positions:
    None (every position), "last", or a list of positions (negative ones count from the end)."""
    embeds, ids = prompt_embeds(model, text, images, video, chat)
    out, pos = embeds_logits(model, embeds, positions)
    return PromptLogits(out, ids, pos)


@torch.inference_mode()
def logprob(model: NVILA, text: str, answer: str, images: Sequence = (), video=None) -> float:
    """log p(answer | prompt) under the model: the sum of the answer tokens' log-probabilities
    after the templated prompt (the answer is tokenized on its own, as generated text is)."""
    embeds, _ = prompt_embeds(model, text, images, video)
    answer_ids = model.tokenizer.encode(answer)
    if not answer_ids:
        raise ValueError("answer: expected a non-empty string")
    ids = torch.tensor(answer_ids, device=model.device)
    full = torch.cat([embeds, model.llm.embed(ids)])  # (T + n, H)
    T = embeds.shape[0]
    out, _ = embeds_logits(model, full, list(range(T - 1, T - 1 + len(answer_ids))))
    return float(torch.log_softmax(out, dim=-1).gather(1, ids[:, None]).sum())
