"""The LLM's tokenizer and chat template, read from a checkpoint's llm/ folder as
transformers reads it:

    tokenizer.json                      the whole tokenizer (`tokenizers` format), or
    vocab.json + merges.txt             Qwen2's byte-level BPE, built here, with
    added_tokens.json                   the added tokens and their ids,
    tokenizer_config.json               added_tokens_decoder (ids, special flags), chat_template,
    special_tokens_map.json             eos_token, ...
    chat_template.jinja                 the chat template (newer transformers write it here)
    generation_config.json              eos_token_id: the stop tokens

Without a chat template in the checkpoint, Qwen2's (the one VILA ships for Qwen2) is used.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import datetime

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
DEFAULT_SYSTEM = "You are a helpful assistant"

# Qwen2's pre-tokenizer split (tokenization_qwen2.py): contractions, letters with one
# leading non-letter, single digits, punctuation runs, newlines, whitespace.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


class TokenizerError(ValueError):
    """Tokenizer files that cannot be used; the message names the file."""


class Tokenizer:
    """A `tokenizers.Tokenizer` with what NVILA needs: text <-> ids without added BOS/EOS,
    the chat template, the stop ids and the "\\n" id. template: a Jinja chat template
    (None: Qwen2's); stop_ids: the ids that end an answer (default: <|im_end|>);
    special: the special tokens' names for the template (eos_token, bos_token, ...)."""

    def __init__(
        self,
        tok,
        template: str | None = None,
        stop_ids: Sequence[int] = (),
        special: dict[str, str] | None = None,
    ) -> None:
        self.tok = tok
        self.im_end_id = self._single_id(IM_END)
        self.newline_id = self._single_id("\n")
        self.template = template
        self.stop_ids = tuple(dict.fromkeys(stop_ids)) or (self.im_end_id,)
        self.special = dict(special or {})
        self._compiled = None if template is None else compile_template(template)

    @classmethod
    def from_dir(cls, folder: str, generation_configs: Sequence[str] = ()) -> Tokenizer:
        """The tokenizer of a checkpoint's llm/ folder (see the module docstring); its
        stop ids also take the eos_token_id of the `generation_configs` files that exist
        (the checkpoint's top-level generation_config.json). Raises TokenizerError naming
        the file that is missing or unusable."""
        config = read_json_object(os.path.join(folder, "tokenizer_config.json"))
        special_map = read_json_object(os.path.join(folder, "special_tokens_map.json"))
        try:
            tok = _read_tokenizer(folder, config, special_map)
        except TokenizerError:
            raise
        except Exception as e:  # tokenizers raises bare Exceptions; bad ids, merges, encodings
            raise TokenizerError(f"tokenizer: {folder} is not a usable tokenizer ({type(e).__name__}: {e})") from e
        special = {}
        for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = config.get(key, special_map.get(key))
            if isinstance(value, dict):  # {"content": ..., ...} as special_tokens_map.json writes it
                value = value.get("content")
            if value is not None:
                special[key] = value
        template = _chat_template(folder, config)
        gen_paths = [*generation_configs, os.path.join(folder, "generation_config.json")]
        stop_ids = _stop_ids(gen_paths, tok, special.get("eos_token"))
        try:
            return cls(tok, template, stop_ids, special)
        except ValueError as e:
            raise TokenizerError(f"tokenizer: {folder} is not a usable tokenizer ({e})") from e
        except Exception as e:  # jinja2.TemplateSyntaxError
            jinja = os.path.join(folder, "chat_template.jinja")
            source = jinja if os.path.isfile(jinja) else os.path.join(folder, "tokenizer_config.json")
            raise TokenizerError(f"tokenizer: {source} chat_template does not compile ({e})") from e

    def _single_id(self, text: str) -> int:
        ids = self.encode(text)
        if len(ids) != 1:
            raise ValueError(f"tokenizer: {text!r} must be a single token, got ids {ids}")
        return ids[0]

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def __len__(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The prompt text of `messages` ([{"role": ..., "content": ...}]): the checkpoint's
        template rendered as transformers renders it, or Qwen2's."""
        if self._compiled is None:
            return chat_template(messages, add_generation_prompt)
        return self._compiled.render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, **self.special
        )


def chat_template(messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
    """Qwen2's chat template as VILA ships it. messages: [{"role": "user", "content": "..."}, ...];
    a default system message is prepended when the first message is not a system one."""
    text = ""
    if not messages or messages[0]["role"] != "system":
        text += f"{IM_START}system\n{DEFAULT_SYSTEM}{IM_END}\n"
    for m in messages:
        text += f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n"
    if add_generation_prompt:
        text += f"{IM_START}assistant\n"
    return text


def compile_template(source: str):
    """A Jinja chat template compiled as transformers compiles it: a sandboxed environment
    with trim_blocks, lstrip_blocks, the loop-controls extension, `tojson` keeping
    non-ASCII, `raise_exception` and `strftime_now`."""
    from jinja2 import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def decode_time_tokens(text: str, duration: float, num_time_tokens: int, time_token_format: str = "<t{t}>") -> str:
    """Time tokens in an answer about a video -> timestamps, as VILA's CLI does: token t of
    n becomes "<round(t * duration / (n - 1), 2)>" seconds; "<tK>" with K >= n (beyond the
    vocabulary's time tokens, spelled out by ordinary tokens) becomes the end, "<duration>"."""
    for t in range(num_time_tokens):
        text = text.replace(time_token_format.format(t=t), f"<{round(t * duration / (num_time_tokens - 1), 2)}>")
    end = f"<{round(duration, 2)}>"
    return re.sub(r"<t(\d+)>", lambda m: end if int(m.group(1)) >= num_time_tokens else m.group(0), text)


# ---- files ----------------------------------------------------------------------


def read_json_object(path: str, required: bool = False, error: type[Exception] = TokenizerError, what="tokenizer"):
    """The JSON object in `path` ({} when the file is missing and not required); `error`
    (naming the file, prefixed by `what`) when it is missing and required, not valid JSON,
    or not an object. nvila.weights reads the checkpoint's configs with it too."""
    if not os.path.isfile(path):
        if required:
            raise error(f"{what}: {path} not found")
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{what}: {path} is not valid JSON ({e})") from e
    if not isinstance(d, dict):
        raise error(f"{what}: {path} must hold a JSON object, got {type(d).__name__}")
    return d


def _read_tokenizer(folder: str, config: dict, special_map: dict):
    from tokenizers import Tokenizer as HFTokenizer

    path = os.path.join(folder, "tokenizer.json")
    if os.path.isfile(path):
        try:
            return HFTokenizer.from_file(path)
        except Exception as e:  # the tokenizers library raises a bare Exception on a bad file
            raise TokenizerError(f"tokenizer: {path} is not a usable tokenizer ({e})") from e
    vocab_path, merges_path = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    if not os.path.isfile(vocab_path) or not os.path.isfile(merges_path):
        raise TokenizerError(
            f"tokenizer: {folder} has neither tokenizer.json nor vocab.json + merges.txt (a Qwen2 tokenizer)"
        )
    cls = config.get("tokenizer_class")
    if cls not in (None, "Qwen2Tokenizer", "Qwen2TokenizerFast"):
        raise TokenizerError(
            f"tokenizer: {os.path.join(folder, 'tokenizer_config.json')} tokenizer_class {cls!r}: only Qwen2's "
            f"byte-level BPE is built from vocab.json + merges.txt (or give tokenizer.json)"
        )
    return qwen2_bpe(
        read_json_object(vocab_path, required=True),
        _merges(merges_path),
        _added_tokens(folder, config, special_map),
        add_prefix_space=bool(config.get("add_prefix_space") or False),
    )


def _merges(path: str) -> list[tuple[str, str]]:
    merges = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f.read().split("\n"), 1):
            if not line or (n == 1 and line.startswith("#version")):
                continue
            pair = line.split(" ")
            if len(pair) != 2:
                raise TokenizerError(f"tokenizer: {path} line {n}: expected two tokens separated by a space")
            merges.append((pair[0], pair[1]))
    return merges


def _added_tokens(folder: str, config: dict, special_map: dict) -> list[dict]:
    """The added tokens as tokenizer.json lists them: tokenizer_config.json's
    added_tokens_decoder (id -> flags), then added_tokens.json's (content -> id) not
    already there, special when special_tokens_map.json names them."""
    decoder = config.get("added_tokens_decoder", {})
    tokens = {}
    for i, t in decoder.items():
        if not str(i).isdigit() or not isinstance(t, dict) or not isinstance(t.get("content"), str):
            raise TokenizerError(
                f"tokenizer: {os.path.join(folder, 'tokenizer_config.json')} added_tokens_decoder[{i!r}]: "
                f"expected an id -> {{'content': str, ...}}"
            )
        tokens[int(i)] = {
            "id": int(i),
            "content": t["content"],
            "single_word": bool(t.get("single_word", False)),
            "lstrip": bool(t.get("lstrip", False)),
            "rstrip": bool(t.get("rstrip", False)),
            "normalized": bool(t.get("normalized", False)),
            "special": bool(t.get("special", False)),
        }
    named = set()
    for v in special_map.values():
        for x in v if isinstance(v, list) else [v]:
            named.add(x.get("content") if isinstance(x, dict) else x)
    for content, i in read_json_object(os.path.join(folder, "added_tokens.json")).items():
        if int(i) in tokens:
            if tokens[int(i)]["content"] != content:
                raise TokenizerError(
                    f"tokenizer: {folder}: added_tokens.json gives id {i} to {content!r}, "
                    f"tokenizer_config.json to {tokens[int(i)]['content']!r}"
                )
            continue
        tokens[int(i)] = {"id": int(i), "content": content, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": content in named}  # fmt: skip
    return [tokens[i] for i in sorted(tokens)]


def qwen2_bpe(vocab: dict, merges: list, added: Sequence[dict] = (), add_prefix_space: bool = False):
    """Qwen2's byte-level BPE (NFC, the Qwen2 split, byte-level mapping and decoder, no
    unknown token) with `added` tokens at their ids (tokenizer.json's added_tokens form)."""
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import BPE

    tok = HFTokenizer(BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    spec = json.loads(tok.to_str())
    spec["added_tokens"] = list(added)  # ids kept as given (add_tokens() would renumber them)
    return HFTokenizer.from_str(json.dumps(spec))


def _chat_template(folder: str, config: dict) -> str | None:
    jinja = os.path.join(folder, "chat_template.jinja")
    if os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as f:
            return f.read()
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": ..., "template": ...}]: the "default" one, as transformers
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        if "default" not in named:
            raise TokenizerError(
                f"tokenizer: {os.path.join(folder, 'tokenizer_config.json')} chat_template: a list of named "
                f"templates without a 'default' one ({', '.join(map(str, named))})"
            )
        template = named["default"]
    if template is not None and not isinstance(template, str):
        raise TokenizerError(
            f"tokenizer: {os.path.join(folder, 'tokenizer_config.json')} chat_template: expected a string, "
            f"got {type(template).__name__}"
        )
    return template


def _stop_ids(gen_paths: Sequence[str], tok, eos_token: str | None) -> list[int]:
    """The generation configs' eos_token_id (an id or a list), then the tokenizer's eos
    token, then <|im_end|>: an answer ends at any of them."""
    ids = []
    for path in gen_paths:
        eos = read_json_object(path).get("eos_token_id")
        for i in eos if isinstance(eos, list) else [] if eos is None else [eos]:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < tok.get_vocab_size(with_added_tokens=True):
                raise TokenizerError(f"tokenizer: {path} eos_token_id {i!r} is not a token id of the tokenizer")
            ids.append(i)
    for text in (eos_token, IM_END):
        if text is not None and tok.token_to_id(text) is not None:
            ids.append(tok.token_to_id(text))
    return ids
