"""Everything between user input and the LLM's embeddings: the tokenizer, the Qwen2 chat
template, image tiling, video frames, and the prompt as text pieces and media slots
(NVILA.md sections 2, 5 and 6)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

import nvila_kernels as nk
from nvila_kernels.tiling import TilePlan

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<vila/video>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
DEFAULT_SYSTEM = "You are a helpful assistant"
_MEDIA = re.compile(f"({re.escape(IMAGE_TOKEN)}|{re.escape(VIDEO_TOKEN)})")


class Tokenizer:
    """A `tokenizers.Tokenizer` (the checkpoint's tokenizer.json) with what NVILA needs:
    text <-> ids without added BOS/EOS, the stop id and the "\\n" id."""

    def __init__(self, tok) -> None:
        self.tok = tok
        self.im_end_id = self._single_id(IM_END)
        self.newline_id = self._single_id("\n")

    @classmethod
    def from_file(cls, path: str) -> Tokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer: {path} not found (expected the checkpoint's llm/tokenizer.json)")
        return cls(HFTokenizer.from_file(path))

    def _single_id(self, text: str) -> int:
        ids = self.encode(text)
        if len(ids) != 1:
            raise ValueError(f"tokenizer: {text!r} must be a single token, got ids {ids}")
        return ids[0]

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    def __len__(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)


def chat_template(messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
    """Qwen2's chat template. messages: [{"role": "user", "content": "..."}, ...]; a
    default system message is prepended when the first message is not a system one."""
    text = ""
    if not messages or messages[0]["role"] != "system":
        text += f"{IM_START}system\n{DEFAULT_SYSTEM}{IM_END}\n"
    for m in messages:
        text += f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n"
    if add_generation_prompt:
        text += f"{IM_START}assistant\n"
    return text


def user_content(text: str, n_images: int = 0, video: bool = False) -> str:
    """Media first, no separator (NVILA.md section 6): "<image><image>What is..."."""
    return (VIDEO_TOKEN if video else "") + IMAGE_TOKEN * n_images + text


def split_media(prompt: str) -> list[str]:
    """The prompt cut at its placeholders: text pieces and the placeholders themselves."""
    return [p for p in _MEDIA.split(prompt) if p]


# ---- pixels ------------------------------------------------------------------------


def load_image(image) -> Image.Image:
    """A path, PIL image or (H, W, 3) uint8 array/tensor -> RGB PIL image."""
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise FileNotFoundError(f"image: {image} not found")
        return Image.open(image).convert("RGB")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        image = image.cpu().numpy()
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return Image.fromarray(image)
    raise TypeError(f"image: expected a path, a PIL image or an (H, W, 3) uint8 array, got {type(image).__name__}")


def tile_image(
    image: Image.Image,
    plan: TilePlan,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    out_dtype: torch.dtype = torch.float32,
    backend: str | None = None,
) -> torch.Tensor:
    """Every tile of `plan` as normalized pixels (n_tiles, 3, tile, tile): per scale, the
    whole image resized (Pillow's bicubic, bit-exact) to the scale's size, cut
    row-major, x/255, then (x - mean) / std; one nvila_kernels.multiscale_tile call."""
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())  # (H, W, 3)
    return nk.multiscale_tile(pixels, plan, tuple(mean), tuple(std), out_dtype, backend=backend)


# ---- video -------------------------------------------------------------------------


def frame_indices(frame_count: int, n: int, fps: float = 0.0, video_fps: float = 0.0) -> list[int]:
    """NVILA's frame sampling: round(linspace(0, frame_count - 1, n)); with fps > 0,
    timestamps arange(0, duration, 1/fps)[:n] and index int(t * video_fps)."""
    if frame_count < 1:
        raise ValueError(f"video: no frames (frame_count={frame_count})")
    if fps > 0 and video_fps > 0:
        duration = frame_count / video_fps
        times = np.arange(0, duration, 1 / fps)[:n]
        return [min(int(t * video_fps), frame_count - 1) for t in times]
    return [int(i) for i in np.round(np.linspace(0, frame_count - 1, n))]


def load_video(path: str, n: int, fps: float = 0.0) -> list[Image.Image]:
    """Decode the frames NVILA samples from the video at `path` (PyAV)."""
    import av

    if not os.path.isfile(path):
        raise FileNotFoundError(f"video: {path} not found")
    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = [f.to_image() for f in container.decode(stream)]
        video_fps = float(stream.average_rate or 0)
    idx = frame_indices(len(frames), n, fps, video_fps)
    return [frames[i].convert("RGB") for i in idx]
