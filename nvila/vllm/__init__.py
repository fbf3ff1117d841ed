"""NVILA on vLLM: a plugin that vLLM loads through the `vllm.general_plugins` entry point
(pyproject.toml), so that `vllm serve <NVILA checkpoint dir>` and `vllm.LLM(model=<dir>)`
work with no extra flags.

    register()   # what the entry point calls, in every vLLM process

It registers
  - the architecture NVILA checkpoints name in config.json (`LlavaLlamaModel`) as
    nvila.vllm.model.NVILAForConditionalGeneration (imported lazily, by vLLM),
  - the `llava_llama` config type with transformers (the LLM's config from llm/), and a
    tokenizer class that loads the checkpoint's llm/ tokenizer and chat template
    (nvila.vllm.hf).
"""

from __future__ import annotations

ARCHITECTURES = ("LlavaLlamaModel",)


def register() -> None:
    """Register NVILA with vLLM and transformers (idempotent: vLLM may call it more than once)."""
    from vllm import ModelRegistry

    from .hf import register_hf

    register_hf()
    for arch in ARCHITECTURES:
        if arch not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(arch, "nvila.vllm.model:NVILAForConditionalGeneration")
