"""Tiny NVILA models for the tests: random weights, a byte-level BPE tokenizer trained
on a few sentences with NVILA's special tokens, saved in the HF layout."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

import nvila
from nvila.tokenizer import Tokenizer

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<vila/video>"]
TEXT = [
    "You are a helpful assistant",
    "What is in the image? Describe the video in detail.",
    "A cat sits on a red mat next to a dog. The sky is blue and the grass is green.",
    "system user assistant: hello world, the quick brown fox jumps over the lazy dog 0123456789",
]


def tiny_tokenizer(vocab_size: int = 400) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TEXT * 4, trainer)
    return Tokenizer(tok)


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Random weights with norms around 1, so every layer matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".weight") and ("norm" in name or name.split(".")[-2].startswith("ln")):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))
    return model


def tiny_model(name: str = "tiny", seed: int = 0, **overrides) -> nvila.NVILA:
    tok = tiny_tokenizer()
    cfg = nvila.preset(name, **overrides)
    cfg = nvila.preset(name, llm=type(cfg.llm)(**{**cfg.llm.__dict__, "vocab": len(tok)}), **overrides)
    model = randomize(nvila.NVILA(cfg), seed).eval()
    model.tokenizer = tok
    return model


def make_image(width: int = 80, height: int = 50, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def tile_image(image, plan, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> torch.Tensor:
    """An image's tiles of `plan` (n_tiles, 3, tile, tile) through the kernels package's
    preprocessing (what nvila.model uses), for tests that pick the plan themselves."""
    from nvila_kernels import multiscale_tile
    from nvila_kernels.processor import to_uint8_image

    return multiscale_tile(to_uint8_image(image), plan, tuple(mean), tuple(std))
