"""nvila.load against transformers on checkpoints written by transformers itself.

One module fixture writes two tiny checkpoints with transformers' own save_pretrained
(Qwen2ForCausalLM, SiglipVisionModel, Qwen2Tokenizer from small vocab.json/merges.txt,
SiglipImageProcessor) plus VILA's top-level and projector configs:
  - "tf5": as transformers 5 saves them: rope_parameters and no rope_theta, SigLIP names
    without "vision_model.", tokenizer.json, chat_template.jinja;
  - "release": as released NVILA checkpoints carry them: top-level rope_theta, torch_dtype,
    "vision_model." names, and vocab.json + merges.txt + added_tokens.json +
    tokenizer_config.json + special_tokens_map.json without tokenizer.json.
Both must give transformers' logits (LLM) and hidden_states[-2] (vision) within fp32
reordering error, the same greedy tokens, and transformers' token ids.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
import torch
from model_tiny import tile_image
from safetensors import safe_open
from safetensors.torch import save_file

import nvila
from nvila.weights import checkpoint_names

transformers = pytest.importorskip("transformers")

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MEDIA = ["<image>", "<vila/video>"]
TRAIN = [
    "You are a helpful assistant. What is in the image? Describe the video in detail.",
    "A cat sits on a red mat next to a dog; the sky is blue and the grass isn't.",
    "Numbers 0123456789 and 3.14159, tabs\tand  double  spaces,\nnew\n\nlines.",
    "你好，世界。日本語のテキスト。 Emoji: 😀🎉👍🏽 café naïve Ünïcödé",
]
CORPUS = [
    "Hello world",
    "  leading and trailing spaces   ",
    "tabs\tand\t\ttabs, runs     of spaces and\n\n\nnewlines\r\n",
    "digits 1234567890 3.14159 1e-6 -42",
    "你好，世界！这是一个测试。日本語 한국어",
    "emoji 😀🎉👍🏽 and ZWJ 👨‍👩‍👧 family",
    "it's they're we've I'm you'll he'd IT'S",
    "<|im_start|>user\n<image>What is this?<|im_end|>\n<|im_start|>assistant\n",
    "<vila/video><image><image>two images<|endoftext|>",
    "e\u0301 (decomposed) and é (composed)",
    "",
]
# VILA's Qwen2 chat template (llava/model/language_model/chat_templates/qwen2.jinja)
QWEN2_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}"
    "{% endif %}{% for message in messages if message['content'] is not none %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
QUESTION = "What is in the image? Describe it."

pytestmark = pytest.mark.model


def _write_json(path, d):
    with open(path, "w") as f:
        json.dump(d, f, indent=2)


def _edit_json(path, **changes):
    with open(path) as f:
        d = json.load(f)
    for k, v in changes.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    _write_json(path, d)


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Weights large enough that every layer matters (HF's init is nearly an identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def _hf_tokenizer(root):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(
        TRAIN * 3, trainers.BpeTrainer(vocab_size=420, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    os.makedirs(root / "bpe")
    bpe.model.save(str(root / "bpe"))  # vocab.json, merges.txt
    tok = transformers.Qwen2Tokenizer(
        vocab=str(root / "bpe" / "vocab.json"),
        merges=str(root / "bpe" / "merges.txt"),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL[1:],
    )
    tok.add_tokens(MEDIA)
    tok.chat_template = QWEN2_TEMPLATE
    return tok


def _release_tokenizer_files(hf_tok, bpe_dir, llm_dir) -> None:
    """The tokenizer files released NVILA llm/ folders carry (transformers 4's slow-tokenizer
    layout), derived from the tokenizer transformers saved: no tokenizer.json."""
    spec = json.loads((llm_dir / "tokenizer.json").read_text())
    added = spec["added_tokens"]
    os.remove(llm_dir / "tokenizer.json")
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(bpe_dir / f, llm_dir / f)
    _write_json(llm_dir / "added_tokens.json", {t["content"]: t["id"] for t in added})
    _write_json(
        llm_dir / "special_tokens_map.json",
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "additional_special_tokens": SPECIAL[1:]},
    )
    config = json.loads((llm_dir / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {
        str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
        for t in added
    }
    config["chat_template"] = (llm_dir / "chat_template.jinja").read_text()
    os.remove(llm_dir / "chat_template.jinja")
    _write_json(llm_dir / "tokenizer_config.json", config)


def _rename_vision(folder, prefix: str) -> None:
    f = folder / "model.safetensors"
    with safe_open(str(f), framework="pt") as h:
        tensors = {prefix + k: h.get_tensor(k) for k in h.keys()}
    save_file(tensors, str(f), metadata={"format": "pt"})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """{"tf5": dir, "release": dir, "hf_llm", "hf_vision", "hf_tok", "tok_dir"}."""
    root = tmp_path_factory.mktemp("parity")
    hf_tok = _hf_tokenizer(root)
    vocab = -(-len(hf_tok) // 8) * 8
    llm_cfg = transformers.Qwen2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
        vocab_size=vocab, max_position_embeddings=512, rope_theta=5000.0, rms_norm_eps=1e-5,
    )  # fmt: skip
    torch.manual_seed(0)
    hf_llm = transformers.Qwen2ForCausalLM(llm_cfg)
    _randomize(hf_llm, 1)
    vis_cfg = transformers.SiglipVisionConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, patch_size=8,
        image_size=32, layer_norm_eps=1e-5,
    )  # fmt: skip
    hf_vision = transformers.SiglipVisionModel(vis_cfg)
    _randomize(hf_vision, 2)
    hf_llm.eval(), hf_vision.eval()

    tf5 = root / "tf5"
    hf_llm.save_pretrained(str(tf5 / "llm"))
    hf_tok.save_pretrained(str(tf5 / "llm"))
    hf_vision.save_pretrained(str(tf5 / "vision_tower"))
    transformers.SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(tf5 / "vision_tower"))
    top = {
        "model_type": "llava_llama", "architectures": ["LlavaLlamaModel"], "hidden_size": 64,
        "mm_hidden_size": 96, "mm_projector_type": "mlp_downsample", "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "cls_patch", "dynamic_s2": True, "image_aspect_ratio": "dynamic_s2",
        "s2_scales": "32,64,96", "s2_max_split_size": 32, "s2_resize_output_to_scale_idx": -1,
        "max_tiles": 12, "min_tiles": 1, "num_video_frames": 4, "fps": 0.0,
        "image_encoder": '{"_target_": "llava.model.encoders.BasicImageEncoder"}',
        "video_encoder": '{"_target_": "llava.model.encoders.TSPVideoEncoder", "pool_sizes": [[2, 1, 1]]}',
        "model_dtype": "torch.bfloat16",
    }  # fmt: skip
    _write_json(tf5 / "config.json", top)
    os.makedirs(tf5 / "mm_projector")
    _write_json(
        tf5 / "mm_projector" / "config.json", {"model_type": "v2l_projector", "mm_projector_type": "mlp_downsample"}
    )
    cfg = nvila.weights.read_config(str(tf5))
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in nvila.NVILA(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(3)
    projector = {theirs: 0.2 * torch.randn(shapes[ours], generator=g)
                 for ours, (sub, theirs) in checkpoint_names(cfg).items() if sub == "mm_projector"}  # fmt: skip
    save_file(projector, str(tf5 / "mm_projector" / "model.safetensors"), metadata={"format": "pt"})

    release = root / "release"
    shutil.copytree(tf5, release)
    llm_json = json.loads((release / "llm" / "config.json").read_text())
    theta = llm_json.pop("rope_parameters")["rope_theta"]
    llm_json.pop("layer_types")
    llm_json.update(rope_theta=theta, rope_scaling=None, torch_dtype=llm_json.pop("dtype"))
    _write_json(release / "llm" / "config.json", llm_json)
    _rename_vision(release / "vision_tower", "vision_model.")
    _release_tokenizer_files(hf_tok, root / "bpe", release / "llm")
    return {"tf5": tf5, "release": release, "hf_llm": hf_llm, "hf_vision": hf_vision, "hf_tok": hf_tok}


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_checkpoint_forms_written_as_transformers_writes_them(ckpt):
    llm = json.loads((ckpt["tf5"] / "llm" / "config.json").read_text())
    assert "rope_theta" not in llm and llm["rope_parameters"]["rope_theta"] == 5000.0
    with safe_open(str(ckpt["tf5"] / "vision_tower" / "model.safetensors"), framework="pt") as h:
        assert not any(k.startswith("vision_model.") for k in h.keys())
    assert not (ckpt["release"] / "llm" / "tokenizer.json").exists()
    assert json.loads((ckpt["release"] / "llm" / "config.json").read_text())["rope_theta"] == 5000.0


@pytest.mark.parametrize("form", ["tf5", "release"])
def test_token_ids_equal_transformers(ckpt, form):
    ours = nvila.Tokenizer.from_dir(str(ckpt[form] / "llm"))
    oracle = transformers.AutoTokenizer.from_pretrained(str(ckpt[form] / "llm"))
    assert len(ours) == len(oracle)
    for text in CORPUS:
        want = oracle.encode(text, add_special_tokens=False)
        assert ours.encode(text) == want, text
        assert ours.decode(want) == oracle.decode(want), text
        assert ours.decode(want, skip_special_tokens=True) == oracle.decode(want, skip_special_tokens=True), text
    msgs = [{"role": "user", "content": "<image>Hi"}]
    assert ours.apply_chat_template(msgs) == oracle.apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=True
    )
    im_end = oracle.convert_tokens_to_ids("<|im_end|>")
    assert ours.stop_ids == (im_end,)


@pytest.mark.parametrize("form", ["tf5", "release"])
def test_logits_vision_and_greedy_tokens_equal_transformers(ckpt, form):
    model = nvila.load(str(ckpt[form]), dtype=torch.float32, backend="reference")
    hf_llm, hf_tok = ckpt["hf_llm"], ckpt["hf_tok"]
    msgs = [{"role": "user", "content": QUESTION}]
    ids = hf_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
    ids = torch.tensor(ids)[None]
    out = nvila.logits(model, QUESTION)
    assert out.ids.tolist() == ids[0].tolist()
    with torch.no_grad():
        want = hf_llm(ids).logits[0]
    err = _rel_err(out.logits, want)
    assert err < 1e-5, err
    last = nvila.logits(model, QUESTION, positions="last")
    torch.testing.assert_close(last.logits[0], out.logits[-1], rtol=1e-5, atol=1e-5)

    with torch.no_grad():
        hf_gen = hf_llm.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)[
            0, ids.shape[1] :
        ]
    embeds, _ = nvila.scoring.prompt_embeds(model, QUESTION)
    ours_gen = torch.stack([t for t, _ in nvila.generate_ids(model, [embeds], max_new_tokens=8)])[:, 0]
    assert ours_gen.tolist() == hf_gen.tolist()

    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        want = ckpt["hf_vision"](pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        got = model.vision(pixels)
    err = _rel_err(got, want)
    assert err < 1e-5, err


def test_answer_and_stream_decoded_as_vila(ckpt, tmp_path):
    """Answers: special tokens skipped, stripped (VILA's decode); streaming yields the same
    text; generation_config.json's eos_token_id stops generation."""
    model = nvila.load(str(ckpt["tf5"]), dtype=torch.float32, backend="reference")
    hf_tok = ckpt["hf_tok"]
    ids = hf_tok.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True,
                                     tokenize=True, return_dict=False)  # fmt: skip
    with torch.no_grad():
        hf_gen = ckpt["hf_llm"].generate(torch.tensor(ids)[None], max_new_tokens=8, do_sample=False,
                                         eos_token_id=None, pad_token_id=0)[0, len(ids) :]  # fmt: skip
    want = hf_tok.decode(hf_gen, skip_special_tokens=True).strip()
    assert nvila.generate(model, QUESTION, max_new_tokens=8) == want
    assert "".join(nvila.generate(model, QUESTION, max_new_tokens=8, stream=True)) == want
    # the 3rd greedy token as an eos in generation_config.json: the answer is the first two
    shutil.copytree(ckpt["tf5"], tmp_path / "ck")
    _edit_json(tmp_path / "ck" / "llm" / "generation_config.json", eos_token_id=[int(hf_gen[2]), 0])
    model = nvila.load(str(tmp_path / "ck"), dtype=torch.float32, backend="reference")
    assert set(model.tokenizer.stop_ids) == {int(hf_gen[2]), 0, hf_tok.convert_tokens_to_ids("<|im_end|>")}
    assert (
        nvila.generate(model, QUESTION, max_new_tokens=8) == hf_tok.decode(hf_gen[:2], skip_special_tokens=True).strip()
    )


def test_chat_template_from_the_checkpoint(ckpt, tmp_path):
    shutil.copytree(ckpt["tf5"], tmp_path / "ck")
    template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] | trim + '<|im_end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    (tmp_path / "ck" / "llm" / "chat_template.jinja").write_text(template)
    ours = nvila.load(str(tmp_path / "ck"), dtype=torch.float32, backend="reference")
    oracle = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "ck" / "llm"))
    msgs = [{"role": "user", "content": "  Hi there  "}]
    want = oracle.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert want.startswith("<|im_start|>user\nHi there<|im_end|>")  # no default system message
    assert ours.tokenizer.apply_chat_template(msgs) == want
    assert nvila.logits(ours, "  Hi there  ").ids.tolist() == oracle.encode(want, add_special_tokens=False)


NULL = object()  # a key written as JSON null
# (file, changes, what to compare): a config key changed; ours must follow transformers.
HONOURED = {
    "rope_parameters.rope_theta (tf5)": (
        "tf5",
        "llm/config.json",
        {"rope_parameters": {"rope_theta": 20000.0, "rope_type": "default"}},
        "llm",
    ),
    "rope_theta (release)": ("release", "llm/config.json", {"rope_theta": 20000.0}, "llm"),
    "rms_norm_eps": ("tf5", "llm/config.json", {"rms_norm_eps": 0.3}, "llm"),
    "tie_word_embeddings": ("tf5", "llm/config.json", {"tie_word_embeddings": True}, "llm"),
    "layer_norm_eps": ("release", "vision_tower/config.json", {"layer_norm_eps": 0.3}, "vision"),
    "mm_vision_select_layer": ("tf5", "config.json", {"mm_vision_select_layer": -3}, "vision"),
    "image_mean/image_std": (
        "tf5",
        "vision_tower/preprocessor_config.json",
        {"image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.3, 0.4]},
        "pixels",
    ),
}
REFUSED = {
    "rope type linear": (
        "tf5",
        "llm/config.json",
        {"rope_parameters": {"rope_theta": 5000.0, "rope_type": "linear", "factor": 2.0}},
        "RoPE type 'linear'",
    ),
    "rope_scaling dynamic": (
        "release",
        "llm/config.json",
        {"rope_scaling": {"type": "dynamic", "factor": 2.0}},
        "RoPE type 'dynamic'",
    ),
    "rope_scaling yarn": (
        "release",
        "llm/config.json",
        {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}},
        "RoPE type 'yarn'",
    ),
    "no rope theta": ("tf5", "llm/config.json", {"rope_parameters": None}, "llm/config.json has neither 'rope_theta'"),
    "rope_theta conflict": ("tf5", "llm/config.json", {"rope_theta": 1e6}, "rope_theta=1000000.0: differs"),
    "llm hidden_act": ("tf5", "llm/config.json", {"hidden_act": "gelu"}, "llm/config.json hidden_act='gelu'"),
    "sliding window": (
        "tf5",
        "llm/config.json",
        {"use_sliding_window": True, "sliding_window": 64},
        "use_sliding_window=True",
    ),
    "layer_types": ("tf5", "llm/config.json", {"layer_types": ["full_attention", "sliding_attention"]}, "layer_types"),
    "llm model_type": ("tf5", "llm/config.json", {"model_type": "llama"}, "model_type='llama'"),
    "tie not bool": ("tf5", "llm/config.json", {"tie_word_embeddings": "yes"}, "tie_word_embeddings='yes'"),
    "tied, other lm_head": (
        "tf5",
        "llm/model.safetensors",
        {"tie_word_embeddings": True},
        "tie_word_embeddings=True but",
    ),
    "head_dim": ("tf5", "llm/config.json", {"head_dim": 32}, "head_dim=32"),
    "quantized": ("tf5", "llm/config.json", {"quantization_config": {"quant_method": "awq"}}, "quantization_config"),
    "vision hidden_act": (
        "tf5",
        "vision_tower/config.json",
        {"hidden_act": "gelu"},
        "vision_tower/config.json hidden_act='gelu'",
    ),
    "num_channels": ("tf5", "vision_tower/config.json", {"num_channels": 4}, "num_channels=4"),
    "preprocessor size": (
        "tf5",
        "vision_tower/preprocessor_config.json",
        {"size": {"height": 64, "width": 64}},
        "size=",
    ),
    "resample": ("tf5", "vision_tower/preprocessor_config.json", {"resample": 2}, "resample=2"),
    "rescale_factor": ("tf5", "vision_tower/preprocessor_config.json", {"rescale_factor": 1.0}, "rescale_factor=1.0"),
    "do_normalize": ("tf5", "vision_tower/preprocessor_config.json", {"do_normalize": False}, "do_normalize=False"),
    "select_feature patch": (
        "tf5",
        "config.json",
        {"mm_vision_select_feature": "patch"},
        "mm_vision_select_feature='patch'",
    ),
    "select_feature missing": (
        "tf5",
        "config.json",
        {"mm_vision_select_feature": None},
        "mm_vision_select_feature=None",
    ),
    "resize idx missing (VILA: 0)": (
        "tf5",
        "config.json",
        {"s2_resize_output_to_scale_idx": None},
        "s2_resize_output_to_scale_idx=None.*missing means 0",
    ),
    "resize idx 1": ("tf5", "config.json", {"s2_resize_output_to_scale_idx": 1}, "s2_resize_output_to_scale_idx=1"),
    "s2_max_split_size": ("tf5", "config.json", {"s2_max_split_size": 64}, "s2_max_split_size=64"),
    "min_tiles": ("tf5", "config.json", {"min_tiles": 2}, "min_tiles=2"),
    "image_aspect_ratio pad": ("tf5", "config.json", {"image_aspect_ratio": "pad"}, "image_aspect_ratio='pad'"),
    "dynamic with dynamic_s2": (
        "tf5",
        "config.json",
        {"image_aspect_ratio": "dynamic"},
        "image_aspect_ratio='dynamic'",
    ),
    "static s2": ("tf5", "config.json", {"s2": True}, "s2=True"),
    "time token format": ("tf5", "config.json", {"num_time_tokens": 100, "time_token_format": "<t>"}, "{t}"),
    "video encoder": (
        "tf5",
        "config.json",
        {"video_encoder": {"_target_": "llava.model.encoders.Foo"}},
        "video_encoder",
    ),
    "image encoder tokens": (
        "tf5",
        "config.json",
        {"image_encoder": {"_target_": "BasicImageEncoder", "end_tokens": "\n\n"}},
        "image_encoder",
    ),
    "top hidden_size": ("tf5", "config.json", {"hidden_size": 32}, "hidden_size=32"),
    "projector type conflict": (
        "tf5",
        "config.json",
        {"mm_projector_type": "mlp_downsample_3x3_fix"},
        "mm_projector_type=",
    ),
    "s2_scales not ints": ("tf5", "config.json", {"s2_scales": "a,b"}, "s2_scales='a,b'"),
    "eos id": ("tf5", "llm/generation_config.json", {"eos_token_id": 99999}, "eos_token_id 99999"),
    "template list": (
        "release",
        "llm/tokenizer_config.json",
        {"chat_template": [{"name": "tool_use", "template": "x"}]},
        "without a 'default'",
    ),
    "template syntax": ("release", "llm/tokenizer_config.json", {"chat_template": "{% for %}"}, "does not compile"),
    "added token id": ("release", "llm/added_tokens.json", {"<extra>": "x"}, "not a usable tokenizer"),
    "tokenizer class": (
        "release",
        "llm/tokenizer_config.json",
        {"tokenizer_class": "LlamaTokenizer"},
        "tokenizer_class 'LlamaTokenizer'",
    ),
}


def _edited(ckpt, tmp_path, form, file, changes):
    shutil.copytree(ckpt[form], tmp_path / "ck")
    if changes.get("tie_word_embeddings") is True:  # a tied model stores no lm_head (or an equal one)
        f = tmp_path / "ck" / "llm" / "model.safetensors"
        with safe_open(str(f), framework="pt") as h:
            t = {k: h.get_tensor(k) for k in h.keys() if k != "lm_head.weight"}
        if file == "llm/model.safetensors":  # the refused case: a stored head that differs
            t["lm_head.weight"] = t["model.embed_tokens.weight"] + 1
        save_file(t, str(f), metadata={"format": "pt"})
        file = "llm/config.json"
    with open(tmp_path / "ck" / file) as f:
        d = json.load(f)
    for k, v in changes.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = None if v is NULL else v
    _write_json(tmp_path / "ck" / file, d)
    return tmp_path / "ck"


@pytest.mark.parametrize("key", list(HONOURED))
def test_config_key_honoured_as_transformers(ckpt, tmp_path, key):
    form, file, changes, part = HONOURED[key]
    path = _edited(ckpt, tmp_path, form, file, changes)
    base = nvila.load(str(ckpt[form]), dtype=torch.float32, backend="reference")
    model = nvila.load(str(path), dtype=torch.float32, backend="reference")
    if part == "llm":
        hf = transformers.Qwen2ForCausalLM.from_pretrained(str(path / "llm")).eval()
        ids = nvila.logits(model, QUESTION).ids[None]
        with torch.no_grad():
            want, got, before = (
                hf(ids).logits[0],
                nvila.logits(model, QUESTION).logits,
                nvila.logits(base, QUESTION).logits,
            )
    elif part == "vision":
        hf = transformers.SiglipVisionModel.from_pretrained(str(path / "vision_tower")).eval()
        layer = json.loads((path / "config.json").read_text())["mm_vision_select_layer"]
        px = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            want, got, before = (
                hf(pixel_values=px, output_hidden_states=True).hidden_states[layer],
                model.vision(px),
                base.vision(px),
            )
    else:  # a 32x32 image: one tile, no resize; the pixels transformers' processor gives
        from nvila_kernels.tiling import plan_single

        image = nvila.media.load_image(torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8,
                                                         generator=torch.Generator().manual_seed(6)))  # fmt: skip
        hf = transformers.AutoImageProcessor.from_pretrained(str(path / "vision_tower"))
        want = hf(image, return_tensors="pt")["pixel_values"]
        v, b = model.cfg.vision, base.cfg.vision
        got = tile_image(image, plan_single(32, 32, 32), v.image_mean, v.image_std)
        before = tile_image(image, plan_single(32, 32, 32), b.image_mean, b.image_std)
    assert _rel_err(got, want) < 1e-5
    assert _rel_err(before, want) > 1e-3  # the key matters


@pytest.mark.parametrize("key", list(REFUSED))
def test_config_key_refused_naming_file_and_key(ckpt, tmp_path, key):
    form, file, changes, match = REFUSED[key]
    path = _edited(ckpt, tmp_path, form, file, changes)
    with pytest.raises(nvila.CheckpointError, match=match) as e:
        nvila.load(str(path))
    named = file.replace("model.safetensors", "config.json").replace("/added_tokens.json", "")  # the file, or llm/
    assert os.path.join(str(path), named) in str(e.value)


def test_s2_scales_null_loads(ckpt, tmp_path):
    """VILA writes "s2_scales": null where S2 is unused (one scale, no channel repeat)."""
    changes = {"s2_scales": NULL, "dynamic_s2": False, "image_aspect_ratio": "resize", "mm_hidden_size": 32}
    path = _edited(ckpt, tmp_path, "tf5", "config.json", changes)
    # the projector of a one-scale model: 4 * 32 channels in
    with safe_open(str(path / "mm_projector" / "model.safetensors"), framework="pt") as h:
        t = {k: h.get_tensor(k) for k in h.keys()}
    t = {k: (v[:128] if v.shape[0] == 384 else v[:, :128] if v.ndim == 2 and v.shape[1] == 384 else v).contiguous()
         for k, v in t.items()}  # fmt: skip
    save_file(t, str(path / "mm_projector" / "model.safetensors"))
    model = nvila.load(str(path), dtype=torch.float32, backend="reference")
    assert (model.cfg.image_mode, model.cfg.scales) == ("resize", (32,))


@pytest.mark.parametrize(
    "changes, value",
    [
        ({"max_tiles": 20}, lambda c: c.max_tiles == 20),
        ({"max_tiles": None}, lambda c: c.max_tiles == 12),
        ({"num_video_frames": 6, "fps": 2.0}, lambda c: (c.num_video_frames, c.fps) == (6, 2.0)),
        ({"s2_scales": [96, 32, 64]}, lambda c: c.scales == (32, 64, 96)),
        ({"video_encoder": None}, lambda c: c.temporal_pool == 1),
        (
            {"num_time_tokens": 100, "time_token_format": "<T{t}>"},
            lambda c: (c.num_time_tokens, c.time_token_format) == (100, "<T{t}>"),
        ),
    ],
)
def test_config_key_read(ckpt, tmp_path, changes, value):
    """Keys whose effect other tests cover (tiling, video sampling): read as the file says."""
    assert value(nvila.weights.read_config(str(_edited(ckpt, tmp_path, "tf5", "config.json", changes))))


def test_max_position_embeddings_bounds_the_prompt(ckpt, tmp_path):
    path = _edited(ckpt, tmp_path, "tf5", "llm/config.json", {"max_position_embeddings": 16})
    model = nvila.load(str(path), dtype=torch.float32, backend="reference")
    with pytest.raises(ValueError, match="max_seq_len"):
        nvila.logits(model, QUESTION)


def test_save_keeps_template_and_stop_ids(ckpt, tmp_path):
    model = nvila.load(str(ckpt["release"]), dtype=torch.float32, backend="reference")
    model.tokenizer.stop_ids += (0,)
    nvila.save(model, str(tmp_path / "copy"))
    again = nvila.load(str(tmp_path / "copy"), dtype=torch.float32, backend="reference")
    assert again.tokenizer.template == model.tokenizer.template is not None
    assert again.tokenizer.stop_ids == model.tokenizer.stop_ids
    assert again.tokenizer.encode(CORPUS[4]) == model.tokenizer.encode(CORPUS[4])


def test_vision_dtype_per_part(ckpt):
    """As released on GPU: vision tower and projector in fp16, the LLM in another dtype."""
    from PIL import Image

    image = Image.fromarray(
        torch.randint(0, 256, (40, 70, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(7)).numpy()
    )
    full = nvila.load(str(ckpt["tf5"]), dtype="fp32", backend="reference")
    mixed = nvila.load(str(ckpt["tf5"]), dtype="fp32", vision_dtype="fp16", backend="reference")
    assert {p.dtype for p in mixed.vision.parameters()} | {p.dtype for p in mixed.projector.parameters()} == {
        torch.float16
    }
    assert {p.dtype for p in mixed.llm.parameters()} == {torch.float32}
    a, b = (nvila.visual_embeddings(m, images=[image]) for m in (full, mixed))
    assert [x.dtype for x in b] == [torch.float32] and _rel_err(b[0], a[0]) < 1e-2
    want = nvila.logits(full, QUESTION, images=[image], positions="last").logits
    assert _rel_err(nvila.logits(mixed, QUESTION, images=[image], positions="last").logits, want) < 1e-2
    with pytest.raises(ValueError, match="vision_dtype"):
        nvila.load(str(ckpt["tf5"]), vision_dtype="int8")
    assert {p.dtype for p in nvila.load(str(ckpt["tf5"])).parameters()} == {torch.float32}  # CPU default
    part_dtypes = nvila.weights.part_dtypes
    assert part_dtypes(None, None, "cuda:0") == (torch.bfloat16, torch.float16)
    assert part_dtypes("fp16", None, "cuda") == (torch.float16, torch.float16)
    assert part_dtypes(None, "bf16", "cpu") == (torch.float32, torch.bfloat16)


def test_time_tokens_become_timestamps_as_vila_cli():
    """VILA's CLI: token t of n -> <round(t * duration / (n - 1), 2)>; <tK>, K >= n -> the end."""
    from nvila.media import video_duration
    from nvila.tokenizer import decode_time_tokens

    text = "From <t0> to <t3>, then <t1><t12> and <t100> (t7 stays)"
    want = "From <0.0> to <3.33>, then <1.11><13.33> and <13.33> (t7 stays)"
    assert decode_time_tokens(text, 13.333, 13) == want
    assert decode_time_tokens("<T1> <T2> <t2>", 10.0, 3, "<T{t}>") == "<5.0> <10.0> <t2>"
    # the shipped sample: 8 frames at 4 fps
    assert video_duration(os.path.join(nvila.SAMPLES, "video.mkv")) == 2.0


def test_generate_turns_time_tokens_into_timestamps(ckpt, tmp_path, monkeypatch):
    path = _edited(ckpt, tmp_path, "tf5", "config.json", {"num_time_tokens": 5})
    model = nvila.load(str(path), backend="reference")
    monkeypatch.setattr(sys.modules["nvila.generate"], "_stream", lambda *a: iter(["At ", "<t1>", " and <t4>"]))
    video = os.path.join(nvila.SAMPLES, "video.mkv")  # 2.0 s
    assert nvila.generate(model, "When?", video=video) == "At <0.5> and <2.0>"
    assert list(nvila.generate(model, "When?", video=video, stream=True)) == ["At <0.5> and <2.0>"]
    assert nvila.generate(model, "When?") == "At <t1> and <t4>"  # no video file: no duration


def test_logprob_and_positions_as_transformers(ckpt):
    model = nvila.load(str(ckpt["tf5"]), backend="reference")
    hf_tok, answer = ckpt["hf_tok"], "A cat, 42 😀"
    prompt = hf_tok.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True,
                                        tokenize=True, return_dict=False)  # fmt: skip
    answer_ids = hf_tok.encode(answer, add_special_tokens=False)
    with torch.no_grad():
        logp = torch.log_softmax(ckpt["hf_llm"](torch.tensor([prompt + answer_ids])).logits[0], dim=-1)
    T = len(prompt)
    want = sum(float(logp[T - 1 + i, t]) for i, t in enumerate(answer_ids))
    assert abs(nvila.logprob(model, QUESTION, answer) - want) < 1e-4 * abs(want)
    full = nvila.logits(model, QUESTION).logits
    some = nvila.logits(model, QUESTION, positions=[-1, 0, 3])
    assert some.positions.tolist() == [T - 1, 0, 3]
    torch.testing.assert_close(some.logits, full[[T - 1, 0, 3]], rtol=1e-5, atol=1e-5)
    for bad in ([T], "first", [[0]]):
        with pytest.raises(ValueError, match="positions"):
            nvila.logits(model, QUESTION, positions=bad)
    with pytest.raises(ValueError, match="answer"):
        nvila.logprob(model, QUESTION, "")
