"""nvila.save / nvila.load: HF layout round trip (single file and sharded), names
and shapes checked with clear errors, dtype choice, checkpoint extras ignored."""

import json
import os

import pytest
import torch
from model_tiny import make_image, tiny_model
from safetensors import safe_open
from safetensors.torch import save_file

import nvila
from nvila.media import user_content
from nvila.tokenizer import chat_template

pytestmark = pytest.mark.model


@torch.no_grad()
def _logits(model: nvila.NVILA) -> torch.Tensor:
    prompt = chat_template([{"role": "user", "content": user_content("What is in the image?", 1)}])
    embeds, _ = model.embed_prompt(prompt, [make_image(80, 50)])
    T = embeds.shape[0]
    model.llm.setup_caches(1, T)
    pos = torch.arange(T)
    mask = torch.ones(T, T, dtype=torch.bool).tril()[None, None]
    return model.llm(embeds[None], pos, pos[None], mask)


@pytest.mark.parametrize("name, shard", [("tiny", None), ("tiny-lite", 20_000)])
def test_save_load_round_trip_identical_logits(tmp_path, name, shard):
    m = tiny_model(name)
    nvila.save(m, str(tmp_path), max_shard_bytes=shard)
    for f in ("config.json", "llm/config.json", "llm/tokenizer.json", "vision_tower/config.json",
              "vision_tower/preprocessor_config.json", "mm_projector/config.json"):  # fmt: skip
        assert os.path.isfile(tmp_path / f), f
    if shard:
        index = json.loads((tmp_path / "llm" / "model.safetensors.index.json").read_text())
        assert len(set(index["weight_map"].values())) > 1
    loaded = nvila.load(str(tmp_path), dtype=torch.float32)
    assert loaded.cfg == m.cfg
    assert not any(p.is_meta for p in loaded.parameters())
    assert loaded.tokenizer.encode("What is this?") == m.tokenizer.encode("What is this?")
    torch.testing.assert_close(_logits(loaded), _logits(m), atol=0, rtol=0)


def test_load_dtype_and_real_checkpoint_extras(tmp_path):
    m = tiny_model()
    nvila.save(m, str(tmp_path))
    # a real SigLIP checkpoint also holds the last block and the post-LayerNorm
    f = tmp_path / "vision_tower" / "model.safetensors"
    with safe_open(str(f), framework="pt") as h:
        tensors = {k: h.get_tensor(k) for k in h.keys()}
    tensors["vision_model.post_layernorm.weight"] = torch.ones(32)
    tensors["vision_model.encoder.layers.2.mlp.fc1.weight"] = torch.ones(64, 32)
    save_file(tensors, str(f))
    # the official config stores the video encoder as a JSON string
    tsp = '{"_target_": "llava.model.encoders.TSPVideoEncoder", "pool_sizes": [[2, 1, 1]]}'
    _edit_json(tmp_path / "config.json", video_encoder=tsp)
    bf = nvila.load(str(tmp_path), dtype="bf16")
    assert bf.cfg.temporal_pool == 2
    assert {p.dtype for p in bf.parameters()} == {torch.bfloat16}
    torch.testing.assert_close(bf.llm.embed.weight.float(), m.llm.embed.weight.bfloat16().float())
    with pytest.raises(ValueError, match="dtype"):
        nvila.load(str(tmp_path), dtype="int8")


def _edit_tensors(folder, fn):
    f = folder / "model.safetensors"
    with safe_open(str(f), framework="pt") as h:
        tensors = {k: h.get_tensor(k) for k in h.keys()}
    fn(tensors)
    save_file(tensors, str(f))


def _edit_json(path, **changes):
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


@pytest.mark.parametrize(
    "breaks, match",
    [
        (lambda p: (p / "nope"), "nope not found"),
        (lambda p: os.remove(p / "llm" / "tokenizer.json"), "tokenizer.json"),
        (lambda p: os.remove(p / "mm_projector" / "model.safetensors"), "mm_projector/model.safetensors"),
        (lambda p: os.remove(p / "vision_tower" / "config.json"), "vision_tower/config.json not found"),
        (lambda p: _edit_tensors(p / "llm", lambda t: t.pop("model.layers.1.mlp.up_proj.weight")),
         r"missing tensors \['llm/model.layers.1.mlp.up_proj.weight'\]"),
        (lambda p: _edit_tensors(p / "mm_projector", lambda t: t.update({"layers.9.weight": torch.ones(1)})),
         r"unexpected tensors \['mm_projector/layers.9.weight'\]"),
        (lambda p: _edit_tensors(p / "llm", lambda t: t.update({"model.norm.weight": torch.ones(65)})),
         r"llm/model.norm.weight has shape \(65,\), expected \(64,\)"),
        (lambda p: _edit_json(p / "llm" / "config.json", num_attention_heads=3), "heads"),
        (lambda p: _edit_json(p / "mm_projector" / "config.json", mm_projector_type="linear"), "projector_type"),
        (lambda p: _edit_json(p / "config.json", mm_hidden_size=1000), "mm_hidden_size"),
    ],
)  # fmt: skip
def test_load_errors_name_the_problem(tmp_path, breaks, match):
    nvila.save(tiny_model(), str(tmp_path))
    target = breaks(tmp_path)
    path = str(target) if target is not None else str(tmp_path)
    with pytest.raises(nvila.CheckpointError, match=match):
        nvila.load(path)


def test_missing_shard(tmp_path):
    nvila.save(tiny_model(), str(tmp_path), max_shard_bytes=20_000)
    shards = sorted((tmp_path / "llm").glob("model-*-of-*.safetensors"))
    assert len(shards) > 1
    os.remove(shards[0])
    with pytest.raises(nvila.CheckpointError, match="shard"):
        nvila.load(str(tmp_path))


@pytest.mark.parametrize(
    "changes, mode, scales",
    [
        ({"image_aspect_ratio": "resize", "dynamic_s2": False}, "resize", (32, 64, 96)),
        ({"image_aspect_ratio": "resize", "dynamic_s2": False, "mm_hidden_size": 32}, "resize", (32,)),
        ({"image_aspect_ratio": "dynamic", "dynamic_s2": False, "mm_hidden_size": 32}, "lite", (32,)),
    ],
)
def test_read_config_image_modes(tmp_path, changes, mode, scales):
    nvila.save(tiny_model(), str(tmp_path))
    _edit_json(tmp_path / "config.json", **changes)
    cfg = nvila.weights.read_config(str(tmp_path))
    assert (cfg.image_mode, cfg.scales) == (mode, scales)
    _edit_json(tmp_path / "config.json", image_aspect_ratio="pad", dynamic_s2=False)
    with pytest.raises(nvila.CheckpointError, match="image_aspect_ratio='pad'"):
        nvila.weights.read_config(str(tmp_path))


def test_resize_mode_never_tiles():
    m = tiny_model(image_mode="resize")
    assert m.plan(80, 50).n_tiles == 1
    assert [b.shape for b in m.encode_image(make_image(80, 50))] == [(16, 64)]


def test_save_refuses_fp8_model(tmp_path):
    m = nvila.quantize_fp8(tiny_model())
    with pytest.raises(ValueError, match="FP8"):
        nvila.save(m, str(tmp_path))


def test_load_fp8_equals_load_then_quantize_fp8():
    path = nvila.TINY_MODEL
    expected = nvila.quantize_fp8(nvila.load(path, dtype="bf16", vision_dtype="fp32"))
    loaded = nvila.load(path, dtype="bf16", vision_dtype="fp32", fp8=True)
    want, got = expected.state_dict(), loaded.state_dict()
    assert list(got) == list(want)
    for name, t in want.items():
        assert got[name].dtype == t.dtype and torch.equal(
            got[name].reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)
        ), name
    assert repr(loaded) == repr(expected)  # the same Fp8Linear layers, backends and dtypes
    torch.testing.assert_close(_logits(loaded), _logits(expected), atol=0, rtol=0)
    with pytest.raises(ValueError, match="fp8: expected True or False, got 'e4m3'"):
        nvila.load(path, fp8="e4m3")
