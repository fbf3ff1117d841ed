"""NVILA: vision tower -> merge + compression projector -> Qwen2, and the prompt's
embeddings with the visual tokens spliced in (NVILA.md sections 2-6).

    model = NVILA(cfg)                      # or nvila.load(path)
    embeds, ids = model.embed_prompt(prompt, images=[img])
    logits = ...                            # see nvila.generate

Media rules: a prompt with ONE image tiles it (Dynamic-S2, or NVILA-Lite tiles + a
thumbnail; never in "resize" mode); with several images every image is one non-tiled
tile, as in the official code. Non-tiled images and video frames repeat their features len(scales) times on
channels. Every visual block is followed by the "\\n" embedding; NVILA-Lite expands an
image placeholder into one "<image>\\n" per tile.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

import nvila_kernels as nk
from nvila_kernels.processor import DynamicS2Preprocessor
from nvila_kernels.tiling import TilePlan

from .config import NVILAConfig
from .llm import Qwen2
from .media import IMAGE_TOKEN, VIDEO_TOKEN, load_image, split_media
from .projector import Projector
from .tokenizer import Tokenizer
from .vision import VisionTower


def preprocessor(cfg: NVILAConfig, tiled: bool = True, backend: str | None = None) -> DynamicS2Preprocessor:
    """The DynamicS2Preprocessor of cfg's images (see VisualEncoder.preprocessor)."""
    v = cfg.vision
    mode = {"dynamic_s2": "dynamic_s2", "lite": "lite", "resize": "single"}[cfg.image_mode] if tiled else "single"
    return DynamicS2Preprocessor(cfg.scales, v.image, cfg.max_tiles, mode, v.image_mean, v.image_std, backend=backend)


class VisualEncoder(nn.Module):
    """The vision tower and the projector: images and video frames -> visual token blocks
    of the LLM's width (what NVILA and the vLLM plugin, nvila.vllm, share)."""

    def __init__(self, cfg: NVILAConfig, backend: str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backend = backend  # nvila_kernels backend for every kernel call (None = automatic)
        self.vision = VisionTower(cfg.vision)
        self.projector = Projector(cfg)

    @property
    def vision_dtype(self) -> torch.dtype:
        """The vision tower's and projector's dtype (fp16 on GPU as released, when loaded so)."""
        return self.vision.patch.weight.dtype

    @property
    def vision_device(self) -> torch.device:
        return self.vision.patch.weight.device

    def preprocessor(self, tiled: bool = True) -> DynamicS2Preprocessor:
        """The kernels package's preprocessor for this model's images: Dynamic-S2 tiles, or
        NVILA-Lite tiles + thumbnail, or (not tiled, or "resize" mode) one tile."""
        return preprocessor(self.cfg, tiled, self.backend)

    def plan(self, width: int, height: int, tiled: bool = True) -> TilePlan:
        """The tile plan NVILA uses for a width x height image."""
        return self.preprocessor(tiled).plan(width, height)

    def vision_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, tile, tile) -> (n, grid*grid, mm_hidden): non-tiled inputs get their
        channels repeated once per scale (Dynamic-S2 models)."""
        f = self.vision(pixels.to(self.vision_device, self.vision_dtype))
        return f.repeat(1, 1, len(self.cfg.scales)) if len(self.cfg.scales) > 1 else f

    def encode_image(self, image, tiled: bool = True) -> list[torch.Tensor]:
        """An image -> its visual token blocks [(n_tokens, H)], each to be followed by "\\n":
        one block for Dynamic-S2 / non-tiled, one per tile (+ thumbnail) for NVILA-Lite."""
        return self.encode_rgb(load_image(image), tiled)

    def encode_rgb(self, rgb, tiled: bool = True) -> list[torch.Tensor]:
        """encode_image of a decoded RGB image (media.load_image's result, or a uint8
        (H, W, 3) tensor, tiled on its own device)."""
        pixels, plan = self.preprocessor(tiled)(rgb)  # (n_tiles, 3, tile, tile)
        if plan.n_tiles == 1:
            return [self.projector(self.vision_features(pixels), plan, self.backend)]
        feats = self.vision(pixels.to(self.vision_device, self.vision_dtype))  # (n_tiles, grid*grid, C)
        if self.cfg.image_mode == "lite":
            return list(self.projector.compress_tiles(feats, self.backend).unbind(0))
        return [self.projector(feats, plan, self.backend)]

    def encode_video(self, frames: Sequence) -> list[torch.Tensor]:
        """Frames (already sampled) -> one (tokens, H) block per (pooled) frame: each frame
        one tile, 2x2/3x3 projector, then the mean of groups of cfg.temporal_pool frames."""
        return self.encode_rgb_frames([load_image(f) for f in frames])

    def encode_rgb_frames(self, frames: Sequence) -> list[torch.Tensor]:
        """encode_video of decoded RGB frames (as encode_rgb takes them)."""
        g = self.cfg.temporal_pool
        if len(frames) % g:
            raise ValueError(f"frames: {len(frames)} frames are not divisible by temporal_pool={g}")
        pixels, _ = self.preprocessor(tiled=False).batch(frames)  # (T, 3, tile, tile)
        tokens = self.projector.compress_tiles(self.vision_features(pixels), self.backend)  # (T, n, H)
        if g > 1:
            tokens = nk.temporal_pool(tokens.contiguous(), g, backend=self.backend)  # (T / g, n, H)
        return list(tokens.unbind(0))


class NVILA(VisualEncoder):
    def __init__(self, cfg: NVILAConfig, backend: str | None = None) -> None:
        super().__init__(cfg, backend)
        self.llm = Qwen2(cfg.llm)
        self.tokenizer: Tokenizer | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.embed.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.llm.embed.weight.device

    # ---- prompt ----------------------------------------------------------------

    def embed_prompt(self, prompt: str, images: Sequence = (), video: Sequence | None = None):
        """A templated prompt with "<image>" / "<vila/video>" placeholders -> (embeds (T, H),
        ids (T,) with -1 at visual tokens). Placeholders are never embedded."""
        if self.tokenizer is None:
            raise RuntimeError("model.tokenizer is not set (nvila.load sets it)")
        tok = self.tokenizer
        n_img, n_vid = prompt.count(IMAGE_TOKEN), prompt.count(VIDEO_TOKEN)
        if n_img != len(images):
            raise ValueError(f"images: the prompt has {n_img} {IMAGE_TOKEN} placeholders, got {len(images)} images")
        if n_vid != (video is not None):
            raise ValueError(f"video: the prompt has {n_vid} {VIDEO_TOKEN} placeholders, got {int(video is not None)}")
        image_blocks = [self.encode_image(im, tiled=len(images) == 1) for im in images]
        if self.cfg.image_mode == "lite":  # one "<image>\n" per tile
            texts = prompt.split(IMAGE_TOKEN)
            prompt = texts[0] + "".join(
                (IMAGE_TOKEN + "\n") * len(b) + t for b, t in zip(image_blocks, texts[1:], strict=True)
            )
            image_blocks = [[b] for blocks in image_blocks for b in blocks]
        pieces = split_media(prompt)
        media = iter(image_blocks)
        embed = self.llm.embed
        newline = embed(torch.tensor([tok.newline_id], device=self.device))  # (1, H)
        parts, ids = [], []
        for p in pieces:
            if p in (IMAGE_TOKEN, VIDEO_TOKEN):
                blocks = next(media) if p == IMAGE_TOKEN else self.encode_video(video)
                for b in blocks:
                    parts += [b.to(self.device, self.dtype), newline]
                    ids += [-1] * b.shape[0] + [tok.newline_id]
            else:
                t = tok.encode(p)
                parts.append(embed(torch.tensor(t, dtype=torch.long, device=self.device)))
                ids += t
        return torch.cat(parts), torch.tensor(ids, dtype=torch.long)
