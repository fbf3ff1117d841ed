"""The transformers side of an NVILA checkpoint for vLLM: a config class for the
`llava_llama` model type whose text_config is the LLM's (llm/config.json), and a
tokenizer class that loads llm/'s tokenizer with the chat template and stop tokens
nvila uses (nvila.tokenizer)."""

from __future__ import annotations

import os

from transformers import AutoConfig, AutoTokenizer, PreTrainedConfig, Qwen2Config, TokenizersBackend

from ..media import IMAGE_TOKEN, VIDEO_TOKEN
from ..tokenizer import IM_END, IM_START, Tokenizer

MODEL_TYPE = "llava_llama"

# nvila.tokenizer.chat_template (Qwen2's template as VILA ships it) in Jinja, for checkpoints
# without a template of their own (the shipped tiny model). It also takes a message's content
# as a list of parts (vLLM's "openai" content format): media placeholders and text joined with
# no separator, as nvila.media.user_content puts them.
QWEN2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    f"{IM_START}system\nYou are a helpful assistant{IM_END}\n"
    "{% endif %}"
    "{% for message in messages %}"
    f"{IM_START}{{{{ message['role'] }}}}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    f"{{% if part['type'] == 'image' %}}{IMAGE_TOKEN}{{% elif part['type'] == 'video' %}}{VIDEO_TOKEN}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    f"{IM_END}\n"
    "{% endfor %}"
    f"{{% if add_generation_prompt %}}{IM_START}assistant\n{{% endif %}}"
)


class NVILAHFConfig(PreTrainedConfig):
    """config.json of an NVILA checkpoint; text_config: the LLM's config (llm/config.json),
    read from the checkpoint directory when config.json does not carry it."""

    model_type = MODEL_TYPE
    sub_configs = {"text_config": Qwen2Config}

    def __init__(self, text_config=None, **kwargs) -> None:
        if isinstance(text_config, dict):
            text_config = Qwen2Config(**text_config)
        self.text_config = text_config
        super().__init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """text_config from llm/config.json; eos_token_id: nvila's stop ids (vLLM's stop tokens
        when the checkpoint has no top-level generation_config.json)."""
        path = kwargs.get("name_or_path") or config_dict.get("_name_or_path")
        llm = os.path.join(path, "llm") if path else None
        if llm and os.path.isdir(llm):
            config_dict = dict(config_dict)
            if config_dict.get("text_config") is None:
                config_dict["text_config"] = Qwen2Config.from_pretrained(llm).to_dict()
            if config_dict.get("eos_token_id") is None:
                stop_ids = Tokenizer.from_dir(llm, [os.path.join(path, "generation_config.json")]).stop_ids
                config_dict["eos_token_id"] = list(stop_ids)
        return super().from_dict(config_dict, **kwargs)

    def get_text_config(self, *args, **kwargs):
        return self.text_config


class NVILATokenizer(TokenizersBackend):
    """AutoTokenizer of an NVILA checkpoint directory: the tokenizer of its llm/ folder,
    with nvila's chat template when the checkpoint has none, and <|im_end|> as the end
    of an answer when the tokenizer names no eos token (nvila.tokenizer's stop ids)."""

    @classmethod
    def from_pretrained(cls, path, *args, **kwargs):
        kwargs.pop("config", None)  # the NVILA config; llm/ has its own
        llm = os.path.join(os.fspath(path), "llm")
        tok = AutoTokenizer.from_pretrained(llm, *args, **kwargs)
        ours = Tokenizer.from_dir(llm, [os.path.join(os.fspath(path), "generation_config.json")])
        if tok.chat_template is None:
            tok.chat_template = ours.template or QWEN2_CHAT_TEMPLATE
        if ours.special.get("eos_token") is None:
            tok.eos_token = IM_END
        return tok


def register_hf() -> None:
    """Make transformers (and so vLLM) read NVILA checkpoint directories."""
    AutoConfig.register(MODEL_TYPE, NVILAHFConfig, exist_ok=True)
    AutoTokenizer.register(NVILAHFConfig, fast_tokenizer_class=NVILATokenizer, exist_ok=True)
