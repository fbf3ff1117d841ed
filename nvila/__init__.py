"""nvila: a minimal, complete NVILA (SigLIP + Dynamic-S2 + compression projector + Qwen2)
on the nvila_kernels ops. `nvila.load(path)` reads an HF-format checkpoint;
`nvila.generate(model, text, images=[...])` answers; `nvila.logits(model, text, images=[...])`
scores (nvila.scoring); `python -m nvila` is the CLI.
`nvila.load(nvila.TINY_MODEL)` is a tiny NVILA trained on nvila.tiny.shapes, shipped here."""

from __future__ import annotations

import os

from .config import PRESETS, LLMConfig, NVILAConfig, VisionConfig, preset
from .generate import generate, generate_batch, generate_ids
from .model import NVILA
from .scoring import PromptLogits, logits, logprob, visual_embeddings
from .tokenizer import Tokenizer
from .weights import FP8_PARTS, CheckpointError, load, save

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny", "assets")
TINY_MODEL = os.path.join(ASSETS, "tiny")  # the shipped model, trained by nvila.tiny.train
SAMPLES = os.path.join(ASSETS, "samples")  # held-out images and a video of nvila.tiny.shapes


def quantize_fp8(model: NVILA, activation_scale: str | float = "dynamic") -> NVILA:
    """FP8 mode: every Linear of the LLM's decoder layers and of the vision tower's blocks
    becomes a nvila_kernels Fp8Linear (W8A8, per-tensor scales); the LM head, patch
    embedding and projector stay in the model's dtype. nvila.load(path, fp8=True) does the
    same while loading, without the full-precision model resident."""
    from nvila_kernels.layers import quantize_linears

    for part in FP8_PARTS:
        quantize_linears(model.get_submodule(part), activation_scale=activation_scale, backend=model.backend)
    return model


__all__ = [
    "NVILA",
    "NVILAConfig",
    "VisionConfig",
    "LLMConfig",
    "PRESETS",
    "preset",
    "load",
    "save",
    "CheckpointError",
    "generate",
    "generate_batch",
    "generate_ids",
    "logits",
    "logprob",
    "visual_embeddings",
    "PromptLogits",
    "Tokenizer",
    "quantize_fp8",
    "TINY_MODEL",
    "SAMPLES",
]
