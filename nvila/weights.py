"""NVILA checkpoints in the HF layout (NVILA.md section 1), the only place that knows
the checkpoint's names:

    config.json      top level (llava_llama): s2 / projector / video keys
    llm/             Qwen2ForCausalLM: config.json, *.safetensors (+ index), the tokenizer
                     files (tokenizer.json, or vocab.json + merges.txt + ...: nvila.tokenizer)
    vision_tower/    SiglipVisionModel: config.json, *.safetensors ("vision_model.*" names as
                     released, or without the prefix as transformers 5 saves them),
                     preprocessor_config.json
    mm_projector/    config.json (mm_projector_type), *.safetensors (nn.Sequential indices)

read_config() reads every config key that changes what is computed and honours it or
refuses it naming the file and the key (docs/MEDIA_AND_CHECKPOINTS.md has the table).
load() builds the model on the meta device, memory-maps the safetensors, checks every
name and shape, and loads with assign=True (the tensors are not allocated twice).
load(fp8=True) quantizes the Linear layers of FP8_PARTS as each weight is read (one
tensor at a time, read from the file, not mapped), so the full-precision model is never
resident: the same model as load() then nvila.quantize_fp8().
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re

import torch

from nvila_kernels.functional import fp8_quantize
from nvila_kernels.layers import FP8_DTYPE

from .config import LLMConfig, NVILAConfig, VisionConfig
from .model import NVILA
from .tokenizer import Tokenizer, TokenizerError, read_json_object

SUBDIRS = ("llm", "vision_tower", "mm_projector")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
FP8_PARTS = ("llm.layers", "vision.blocks")  # the modules whose every Linear FP8 mode quantizes
# safetensors header dtypes -> torch (the floating ones; any other is refused)
SAFETENSORS_FLOATS = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file or tensor."""


# ---- names ----------------------------------------------------------------------


def checkpoint_names(cfg: NVILAConfig, vision_prefix: str = "vision_model.") -> dict[str, tuple[str, str]]:
    """Our parameter name -> (subdirectory, checkpoint tensor name). vision_prefix: the
    SigLIP names' prefix: "vision_model." as released, "" as transformers 5 saves them."""
    names: dict[str, tuple[str, str]] = {}
    v = vision_prefix
    names["vision.patch.weight"] = ("vision_tower", v + "embeddings.patch_embedding.weight")
    names["vision.patch.bias"] = ("vision_tower", v + "embeddings.patch_embedding.bias")
    names["vision.pos.weight"] = ("vision_tower", v + "embeddings.position_embedding.weight")
    vision_block = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.q": "self_attn.q_proj",
                    "attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj", "attn.out": "self_attn.out_proj",
                    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}  # fmt: skip
    for i in range(cfg.vision.computed_layers):
        for ours, theirs in vision_block.items():
            for p in ("weight", "bias"):
                names[f"vision.blocks.{i}.{ours}.{p}"] = ("vision_tower", f"{v}encoder.layers.{i}.{theirs}.{p}")

    if cfg.k == 2:
        proj = {"ln": 1, "fc1": 2, "fc2": 4}
    else:
        proj = {"ln": 1, "fc1": 2, "ln2": 4, "fc2": 5, "fc3": 7}
    for ours, idx in proj.items():
        for p in ("weight", "bias"):
            names[f"projector.{ours}.{p}"] = ("mm_projector", f"layers.{idx}.{p}")

    names["llm.embed.weight"] = ("llm", "model.embed_tokens.weight")
    names["llm.norm.weight"] = ("llm", "model.norm.weight")
    if not cfg.llm.tie_embeddings:
        names["llm.head.weight"] = ("llm", "lm_head.weight")
    llm_layer = {"norm1.weight": "input_layernorm.weight", "norm2.weight": "post_attention_layernorm.weight",
                 "attn.o.weight": "self_attn.o_proj.weight", "mlp.gate.weight": "mlp.gate_proj.weight",
                 "mlp.up.weight": "mlp.up_proj.weight", "mlp.down.weight": "mlp.down_proj.weight"}  # fmt: skip
    for p in ("q", "k", "v"):
        for s in ("weight", "bias"):
            llm_layer[f"attn.{p}.{s}"] = f"self_attn.{p}_proj.{s}"
    for i in range(cfg.llm.layers):
        for ours, theirs in llm_layer.items():
            names[f"llm.layers.{i}.{ours}"] = ("llm", f"model.layers.{i}.{theirs}")
    return names


def _unused(cfg: NVILAConfig, sub: str, name: str, vision_prefix: str) -> bool:
    """Checkpoint tensors NVILA never uses: SigLIP's blocks after select_layer, its
    post-LayerNorm and head; a tied model's stored lm_head; RoPE buffers."""
    if sub == "vision_tower":
        if not name.startswith(vision_prefix):
            return False
        name = name[len(vision_prefix) :]
        m = re.match(r"encoder\.layers\.(\d+)\.", name)
        if m:
            return int(m.group(1)) >= cfg.vision.computed_layers
        return name.startswith(("post_layernorm.", "head."))
    if sub == "llm":
        return (cfg.llm.tie_embeddings and name == "lm_head.weight") or name.endswith("rotary_emb.inv_freq")
    return False


# ---- configs ----------------------------------------------------------------------


def _read_json(path: str) -> dict:
    return read_json_object(path, required=True, error=CheckpointError, what="checkpoint")


def _get(d: dict, key: str, path: str):
    if key not in d:
        raise CheckpointError(f"checkpoint: {path} has no {key!r}")
    return d[key]


class _Json:
    """One config file: values read by key, refusals naming the file and the key."""

    def __init__(self, path: str, optional: bool = False) -> None:
        self.path = path
        self.d = _read_json(path) if not optional or os.path.isfile(path) else {}

    def __contains__(self, key: str) -> bool:
        return self.d.get(key) is not None

    def need(self, key: str):
        if self.d.get(key) is None:
            raise CheckpointError(f"checkpoint: {self.path} has no {key!r}")
        return self.d[key]

    def get(self, key: str, default):
        """The value, or `default` when the key is missing or null: the default of the
        code that reads this file (transformers' config class, VILA), never a guess."""
        v = self.d.get(key)
        return default if v is None else v

    def refuse(self, key: str, why: str):
        return CheckpointError(f"checkpoint: {self.path} {key}={self.d.get(key)!r}: {why}")

    def only(self, key: str, default, allowed: tuple, why: str = "not implemented"):
        """The value of a key whose every allowed value computes the same as ours."""
        v = self.get(key, default)
        if v not in allowed:
            raise self.refuse(key, f"{why} (expected {' or '.join(map(repr, allowed))})")
        return v


def _rope_theta(llm: _Json) -> float:
    """Qwen2's RoPE base from rope_parameters (transformers >= 5) or rope_theta (older);
    only the plain ("default") rotary embedding is implemented: scaled types are refused."""
    params = llm.get("rope_parameters", {})
    if not isinstance(params, dict):
        raise llm.refuse("rope_parameters", "expected an object")
    theta = params.get("rope_theta")
    if "rope_theta" in llm:
        if theta is not None and float(theta) != float(llm.d["rope_theta"]):
            raise llm.refuse("rope_theta", f"differs from rope_parameters.rope_theta={theta!r}")
        theta = llm.d["rope_theta"]
    if theta is None:
        raise CheckpointError(f"checkpoint: {llm.path} has neither 'rope_theta' nor 'rope_parameters.rope_theta'")
    scaling = llm.get("rope_scaling", {})
    for key, spec in (("rope_parameters", params), ("rope_scaling", scaling)):
        if not isinstance(spec, dict):
            raise llm.refuse(key, "expected an object")
        kind = spec.get("rope_type", spec.get("type", "default"))
        if kind != "default":
            raise llm.refuse(key, f"RoPE type {kind!r} not implemented (only 'default')")
        if spec.get("partial_rotary_factor", 1.0) != 1.0:
            raise llm.refuse(key, "partial_rotary_factor != 1 not implemented")
    if isinstance(theta, bool) or not isinstance(theta, (int, float)):
        raise llm.refuse("rope_theta", "expected a number")
    return float(theta)


def _llm_config(llm: _Json) -> LLMConfig:
    llm.only("model_type", "qwen2", ("qwen2",), "only Qwen2 LLMs are implemented")
    llm.only("hidden_act", "silu", ("silu",))
    llm.only("use_sliding_window", False, (False,), "sliding-window attention not implemented")
    if any(t != "full_attention" for t in llm.get("layer_types", [])):
        raise llm.refuse("layer_types", "only 'full_attention' layers are implemented")
    if "quantization_config" in llm:
        raise llm.refuse("quantization_config", "quantized checkpoints are not read (use nvila.quantize_fp8)")
    heads = llm.need("num_attention_heads")
    hidden = llm.need("hidden_size")
    if "head_dim" in llm and isinstance(heads, int) and llm.d["head_dim"] * heads != hidden:
        raise llm.refuse("head_dim", f"expected hidden_size / num_attention_heads = {hidden / heads}")
    tie = llm.get("tie_word_embeddings", False)
    if not isinstance(tie, bool):
        raise llm.refuse("tie_word_embeddings", "expected true or false")
    return LLMConfig(
        hidden=hidden,
        layers=llm.need("num_hidden_layers"),
        heads=heads,
        kv_heads=llm.get("num_key_value_heads", heads),
        ffn=llm.need("intermediate_size"),
        vocab=llm.need("vocab_size"),
        rope_theta=_rope_theta(llm),
        eps=float(llm.get("rms_norm_eps", 1e-6)),
        tie_embeddings=tie,
        max_seq_len=llm.get("max_position_embeddings", 32768),
    )


def _vision_config(vis: _Json, pre: _Json, top: _Json) -> VisionConfig:
    vis.only("model_type", "siglip_vision_model", ("siglip_vision_model",), "only SigLIP vision towers")
    vis.only("hidden_act", "gelu_pytorch_tanh", ("gelu_pytorch_tanh",))
    vis.only("num_channels", 3, (3,))
    image = vis.need("image_size")
    size = pre.get("size", {"height": 224, "width": 224})  # SiglipImageProcessor's default
    if not isinstance(size, dict) or (size.get("height"), size.get("width")) != (image, image):
        raise pre.refuse("size", f"expected {{'height': {image}, 'width': {image}}} (the tower's image_size)")
    pre.only("resample", 3, (3,), "only bicubic resizing is implemented")
    for key in ("do_resize", "do_rescale", "do_normalize"):
        pre.only(key, True, (True,))
    if abs(float(pre.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-12:
        raise pre.refuse("rescale_factor", "expected 1/255")
    top.only("mm_vision_select_feature", "patch", ("cls_patch",),
             "SigLIP has no CLS token: 'patch' would drop the first patch token")  # fmt: skip
    return VisionConfig(
        hidden=vis.need("hidden_size"),
        layers=vis.need("num_hidden_layers"),
        heads=vis.need("num_attention_heads"),
        mlp=vis.need("intermediate_size"),
        patch=vis.need("patch_size"),
        image=image,
        eps=float(vis.get("layer_norm_eps", 1e-6)),
        select_layer=top.get("mm_vision_select_layer", -2),
        image_mean=tuple(pre.get("image_mean", (0.5, 0.5, 0.5))),
        image_std=tuple(pre.get("image_std", (0.5, 0.5, 0.5))),
    )


def _encoder(top: _Json, key: str) -> dict:
    enc = top.get(key, {})
    if isinstance(enc, str):
        try:
            enc = json.loads(enc)
        except json.JSONDecodeError as e:
            raise top.refuse(key, f"not a JSON object ({e})") from e
    if not isinstance(enc, dict):
        raise top.refuse(key, "expected an object")
    if enc.get("start_tokens") is not None or enc.get("end_tokens", "\n") != "\n":
        raise top.refuse(key, "start_tokens / end_tokens other than VILA's defaults (none, '\\n') not implemented")
    return enc


def _temporal_pool(top: _Json) -> int:
    """Frames averaged together: the video encoder's temporal pool size. NVILA stores the
    encoder as (a JSON string of) {"_target_": "...TSPVideoEncoder", "pool_sizes": [[8, 1, 1]]};
    TSPVideoEncoder's default pool is [[8, 1, 1]]; BasicVideoEncoder does not pool."""
    _image = _encoder(top, "image_encoder")
    if not str(_image.get("_target_", "BasicImageEncoder")).endswith("BasicImageEncoder"):
        raise top.refuse("image_encoder", "only BasicImageEncoder is implemented")
    enc = _encoder(top, "video_encoder")
    target = str(enc.get("_target_", "BasicVideoEncoder"))
    if target.endswith("BasicVideoEncoder"):
        return 1
    if not target.endswith("TSPVideoEncoder"):
        raise top.refuse("video_encoder", "only BasicVideoEncoder and TSPVideoEncoder are implemented")
    sizes = enc.get("pool_sizes", [[8, 1, 1]])
    if len(sizes) != 1 or list(sizes[0][1:]) != [1, 1]:
        raise top.refuse("video_encoder", f"pool_sizes {sizes} unsupported (expected [[T, 1, 1]])")
    return int(sizes[0][0])


def _s2_scales(top: _Json) -> tuple[int, ...] | None:
    s2 = top.get("s2_scales", None)
    if s2 is None:
        return None
    try:
        scales = [int(s) for s in (s2.split(",") if isinstance(s2, str) else s2)]
    except (TypeError, ValueError) as e:
        raise top.refuse("s2_scales", 'expected "448,896,1344" or a list of ints') from e
    return tuple(sorted(scales))  # VILA sorts them


def read_config(path: str) -> NVILAConfig:
    """The NVILAConfig of the checkpoint directory `path` (its config files). Every key
    that changes what is computed is honoured or refused (docs/MEDIA_AND_CHECKPOINTS.md)."""
    top = _Json(os.path.join(path, "config.json"))
    llm = _Json(os.path.join(path, "llm", "config.json"))
    vis = _Json(os.path.join(path, "vision_tower", "config.json"))
    proj = _Json(os.path.join(path, "mm_projector", "config.json"))
    pre = _Json(os.path.join(path, "vision_tower", "preprocessor_config.json"), optional=True)
    try:
        vision = _vision_config(vis, pre, top)
        lm = _llm_config(llm)
        if "hidden_size" in top and top.d["hidden_size"] != lm.hidden:
            raise top.refuse("hidden_size", f"differs from the LLM's hidden_size {lm.hidden}")
        for key in ("s2", "mm_use_im_start_end", "mm_use_im_patch_token"):
            top.only(key, False, (False,))
        dynamic_s2 = top.get("dynamic_s2", False)
        aspect = top.get("image_aspect_ratio", "dynamic_s2" if dynamic_s2 else None)
        if aspect == "dynamic_s2" and dynamic_s2:
            image_mode = "dynamic_s2"
        elif aspect in ("dynamic", "resize") and not (aspect == "dynamic" and dynamic_s2):
            image_mode = "lite" if aspect == "dynamic" else "resize"
        else:
            raise top.refuse(
                "image_aspect_ratio",
                f"unsupported with dynamic_s2={dynamic_s2} (expected dynamic_s2 with dynamic_s2: true, "
                f"dynamic or resize)",
            )
        s2 = _s2_scales(top)
        if image_mode == "dynamic_s2" and s2 is None:
            raise CheckpointError(f"checkpoint: {top.path} has dynamic_s2 but no 's2_scales'")
        if image_mode == "lite" or s2 is None or top.get("mm_hidden_size", None) == vision.hidden:
            scales = (vision.image,)  # one scale: no channel repeat
        else:
            scales = s2
        if len(scales) > 1:
            if top.get("s2_max_split_size", None) != vision.image:
                raise top.refuse("s2_max_split_size", f"expected the tower's image_size {vision.image}")
            idx = top.get("s2_resize_output_to_scale_idx", 0)  # VILA's default
            if idx not in (-1, len(scales) - 1):
                raise top.refuse(
                    "s2_resize_output_to_scale_idx",
                    f"only -1 (merge at the largest scale, as released) is implemented; "
                    f"{'missing means' if idx == 0 else 'this is'} {idx} in VILA",
                )
        top.only("min_tiles", 1, (1,), "a minimum tile count other than 1 is not implemented")
        if "{t}" not in str(top.get("time_token_format", "<t{t}>")):
            raise top.refuse("time_token_format", "expected a format string with {t}")
        projector_type = proj.get("mm_projector_type", top.get("mm_projector_type", None))
        if "mm_projector_type" in top and top.d["mm_projector_type"] != projector_type:
            raise top.refuse("mm_projector_type", f"differs from mm_projector/config.json's {projector_type!r}")
        cfg = NVILAConfig(
            vision,
            lm,
            projector_type=projector_type,
            image_mode=image_mode,
            scales=scales,
            max_tiles=top.get("max_tiles", 12),
            num_video_frames=top.get("num_video_frames", 8),
            fps=float(top.get("fps", 0.0)),
            temporal_pool=_temporal_pool(top),
            num_time_tokens=top.get("num_time_tokens", 0),
            time_token_format=top.get("time_token_format", "<t{t}>"),
        )
    except (ValueError, TypeError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {path}: bad config value: {e}") from e
    if "mm_hidden_size" in top and top.d["mm_hidden_size"] != cfg.mm_hidden:
        raise CheckpointError(
            f"checkpoint: {top.path} mm_hidden_size={top.d['mm_hidden_size']} does not match "
            f"vision hidden {vision.hidden} x {len(scales)} scales = {cfg.mm_hidden}"
        )
    return cfg


def config_jsons(cfg: NVILAConfig, dtype: torch.dtype) -> dict[str, dict]:
    v, lm = cfg.vision, cfg.llm
    torch_dtype = str(dtype).removeprefix("torch.")
    top = {
        "model_type": "llava_llama",
        "architectures": ["LlavaLlamaModel"],
        "hidden_size": lm.hidden,
        "mm_hidden_size": cfg.mm_hidden,
        "mm_projector_type": cfg.projector_type,
        "mm_vision_select_layer": v.select_layer,
        "mm_vision_select_feature": "cls_patch",
        "dynamic_s2": cfg.image_mode == "dynamic_s2",
        "image_aspect_ratio": {"dynamic_s2": "dynamic_s2", "lite": "dynamic", "resize": "resize"}[cfg.image_mode],
        "s2_scales": ",".join(str(s) for s in cfg.scales),
        "s2_max_split_size": v.image,
        "s2_resize_output_to_scale_idx": -1,
        "max_tiles": cfg.max_tiles,
        "min_tiles": 1,
        "num_video_frames": cfg.num_video_frames,
        "fps": cfg.fps,
        "video_encoder": (
            {"_target_": "llava.model.encoders.TSPVideoEncoder", "pool_sizes": [[cfg.temporal_pool, 1, 1]]}
            if cfg.temporal_pool > 1
            else {"_target_": "llava.model.encoders.BasicVideoEncoder"}
        ),
        "num_time_tokens": cfg.num_time_tokens,
        "time_token_format": cfg.time_token_format,
        "torch_dtype": torch_dtype,
    }
    llm = {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": lm.hidden,
        "num_hidden_layers": lm.layers,
        "num_attention_heads": lm.heads,
        "num_key_value_heads": lm.kv_heads,
        "intermediate_size": lm.ffn,
        "vocab_size": lm.vocab,
        "rope_theta": lm.rope_theta,
        "rms_norm_eps": lm.eps,
        "tie_word_embeddings": lm.tie_embeddings,
        "max_position_embeddings": lm.max_seq_len,
        "hidden_act": "silu",
        "torch_dtype": torch_dtype,
    }
    vision = {
        "model_type": "siglip_vision_model",
        "architectures": ["SiglipVisionModel"],
        "hidden_size": v.hidden,
        "num_hidden_layers": v.layers,
        "num_attention_heads": v.heads,
        "intermediate_size": v.mlp,
        "patch_size": v.patch,
        "image_size": v.image,
        "layer_norm_eps": v.eps,
        "hidden_act": "gelu_pytorch_tanh",
        "vision_use_head": False,
        "torch_dtype": torch_dtype,
    }
    pre = {
        "image_mean": list(v.image_mean),
        "image_std": list(v.image_std),
        "size": {"height": v.image, "width": v.image},
    }
    proj = {"model_type": "v2l_projector", "mm_projector_type": cfg.projector_type, "torch_dtype": torch_dtype}
    return {
        "config.json": top,
        "llm/config.json": llm,
        "vision_tower/config.json": vision,
        "vision_tower/preprocessor_config.json": pre,
        "mm_projector/config.json": proj,
    }


# ---- tensors ----------------------------------------------------------------------


def _tensor_files(folder: str) -> dict[str, str]:
    """checkpoint tensor name -> safetensors file, from the index when sharded."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        weight_map = _get(_read_json(index), "weight_map", index)
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"checkpoint: {index} weight_map must be an object, got {type(weight_map).__name__}")
        for f in set(weight_map.values()):  # shards live next to the index: no paths
            if not isinstance(f, str) or os.path.basename(f) != f or f in ("", ".", ".."):
                raise CheckpointError(f"checkpoint: {index} lists shard {f!r}, expected a file name in {folder}")
        files = {n: os.path.join(folder, f) for n, f in weight_map.items()}
        for f in sorted(set(files.values())):
            if not os.path.isfile(f):
                raise CheckpointError(f"checkpoint: shard {f} listed in {index} not found")
        return files
    single = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(single):
        raise CheckpointError(f"checkpoint: neither {single} nor {index} found")
    with _safetensors(single) as f:
        return dict.fromkeys(f.keys(), single)


@contextlib.contextmanager
def _safetensors(file: str):
    """safe_open(file) with the library's errors (a header that lies about sizes,
    offsets, dtypes or its own length; non-JSON; a truncated file: all checked by
    safetensors before any tensor is read) as CheckpointError naming the file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(file, framework="pt", device="cpu") as f:
            yield f
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"checkpoint: {file} is not a valid safetensors file ({e})") from e


def _dtype(name: str, dtype) -> torch.dtype:
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"{name}: expected one of {', '.join(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"{name}: expected torch.bfloat16, float16 or float32, got {dtype}")
    return dtype


def part_dtypes(dtype, vision_dtype, device) -> tuple[torch.dtype, torch.dtype]:
    """(LLM dtype, vision tower and projector dtype) for load()'s arguments: on GPU
    without either, bf16 and fp16 (as released); else dtype (default fp32) for both
    unless vision_dtype is given."""
    if dtype is None and vision_dtype is None and torch.device(device).type == "cuda":
        return torch.bfloat16, torch.float16
    dtype = _dtype("dtype", torch.float32 if dtype is None else dtype)
    return dtype, dtype if vision_dtype is None else _dtype("vision_dtype", vision_dtype)


def load(
    path: str,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str = "cpu",
    backend: str | None = None,
    vision_dtype: torch.dtype | str | None = None,
    fp8: bool = False,
) -> NVILA:
    """An NVILA model (with .tokenizer) from an HF-format checkpoint directory. dtype: the
    LLM's; vision_dtype: the vision tower's and projector's. Defaults as the official
    loader runs them on GPU: LLM bf16, vision tower and projector fp16; on CPU, fp32 for
    both. An explicit dtype alone sets both parts. fp8: quantize the Linear layers of the
    LLM's decoder layers and the vision tower's blocks (dynamic activation scales) while
    loading; the result equals load() followed by nvila.quantize_fp8()."""
    from safetensors import SafetensorError

    if not isinstance(fp8, bool):
        raise ValueError(f"fp8: expected True or False, got {fp8!r}")
    dtype, vision_dtype = part_dtypes(dtype, vision_dtype, device)
    if not os.path.isdir(path):
        raise CheckpointError(f"checkpoint: directory {path} not found")
    for sub in SUBDIRS:
        if not os.path.isdir(os.path.join(path, sub)):
            raise CheckpointError(f"checkpoint: {os.path.join(path, sub)} not found (expected {', '.join(SUBDIRS)})")
    cfg = read_config(path)
    try:
        tokenizer = Tokenizer.from_dir(os.path.join(path, "llm"), [os.path.join(path, "generation_config.json")])
    except TokenizerError as e:
        raise CheckpointError(f"checkpoint: {str(e).removeprefix('tokenizer: ')}") from e
    with torch.device("meta"):
        model = NVILA(cfg, backend=backend)
    expected = dict(model.state_dict())

    files = {sub: _tensor_files(os.path.join(path, sub)) for sub in SUBDIRS}
    # SigLIP names: "vision_model.embeddings..." as released, "embeddings..." as transformers 5 saves them
    prefix = "vision_model." if any(n.startswith("vision_model.") for n in files["vision_tower"]) else ""
    names = checkpoint_names(cfg, prefix)
    if set(names) != set(expected):  # a bug here, not in the checkpoint
        raise RuntimeError(f"weights.checkpoint_names out of sync with the model: {set(names) ^ set(expected)}")
    wanted = {(sub, theirs) for sub, theirs in names.values()}
    unexpected = [
        f"{sub}/{n}"
        for sub in SUBDIRS
        for n in files[sub]
        if (sub, n) not in wanted and not _unused(cfg, sub, n, prefix)
    ]
    missing = [f"{sub}/{theirs}" for sub, theirs in names.values() if theirs not in files[sub]]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path}: missing tensors {missing[:20]}{' ...' if len(missing) > 20 else ''}; "
            f"unexpected tensors {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}"
        )

    quantized = _fp8_linears(model, dtype, vision_dtype) if fp8 else set()
    state = {}
    with contextlib.ExitStack() as stack:
        handles: dict[str, object] = {}
        headers: dict[str, tuple[int, dict]] = {}  # fp8: the files' headers, for _read_tensor
        scratch = torch.empty(0, dtype=torch.uint8)  # fp8: one buffer reused for every weight to quantize
        for ours, (sub, theirs) in names.items():
            file = files[sub][theirs]
            if file not in handles:
                handles[file] = stack.enter_context(_safetensors(file))
            if fp8:
                t, scratch = _read_tensor(file, theirs, headers, scratch if ours in quantized else None)
            else:
                try:
                    t = handles[file].get_tensor(theirs)  # memory-mapped
                except SafetensorError as e:  # e.g. a name the index lists that the shard lacks
                    raise CheckpointError(f"checkpoint: {file}: cannot read {theirs} ({e})") from e
            want = tuple(expected[ours].shape)
            if tuple(t.shape) != want:
                raise CheckpointError(
                    f"checkpoint: {sub}/{theirs} has shape {tuple(t.shape)}, expected {want} (for {ours})"
                )
            if not t.dtype.is_floating_point:
                raise CheckpointError(f"checkpoint: {sub}/{theirs} has dtype {t.dtype}, expected a floating type")
            part_dtype = vision_dtype if ours.startswith(("vision.", "projector.")) else dtype
            state[ours] = t.to(device=device, dtype=part_dtype)
            if ours in quantized:  # as Fp8Linear.from_linear quantizes the loaded weight
                state[ours], state[ours.removesuffix("weight") + "weight_scale"] = fp8_quantize(
                    state[ours], fp8_dtype=FP8_DTYPE, backend=backend
                )
                _return_freed_heap()
        if cfg.llm.tie_embeddings and "lm_head.weight" in files["llm"]:
            _check_tied_head(path, files["llm"], handles, stack)
    model.load_state_dict(state, strict=True, assign=True)
    model.tokenizer = tokenizer
    return model.eval().requires_grad_(False)


def _fp8_linears(model: NVILA, dtype: torch.dtype, vision_dtype: torch.dtype) -> set[str]:
    """Replace, on the meta device, every nn.Linear of FP8_PARTS by an empty Fp8Linear
    (its bias in the part's dtype, as Fp8Linear.from_linear keeps it); returns the
    names of the weights to quantize as they are read ("llm.layers.0.attn.q.weight")."""
    from nvila_kernels.layers import Fp8Linear

    names = set()
    for part in FP8_PARTS:
        part_dtype = vision_dtype if part.startswith("vision.") else dtype
        module = model.get_submodule(part)
        for name, linear in [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]:
            parent, _, child = name.rpartition(".")
            fp8 = Fp8Linear(linear.in_features, linear.out_features, bias=linear.bias is not None,
                            backend=model.backend, device="meta", dtype=part_dtype)  # fmt: skip
            setattr(module.get_submodule(parent), child, fp8)
            names.add(f"{part}.{name}.weight")
    return names


def _return_freed_heap() -> None:
    """Hand the C heap's free pages back to the OS (glibc's malloc_trim; a no-op elsewhere).
    The quantization's temporaries, freed between weights, otherwise stay resident in glibc's
    heap: measured on NVILA-8B, 0.87 GB above the FP8 weights after load(fp8=True)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None with another C library."""
    import ctypes

    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):  # no C library to open by None (Windows)
        return None


def _read_tensor(
    file: str, name: str, headers: dict[str, tuple[int, dict]], scratch: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One tensor of a safetensors file (already validated by safe_open) read, not memory-
    mapped (a mapped file's pages stay resident while it is open), and the scratch buffer.
    scratch: None to read into fresh memory, or a uint8 buffer to read into (grown when
    too small: the tensor is then a view of the returned buffer, valid until the next read),
    so that weights quantized right away do not churn and fragment the heap.
    headers: file -> (data start, header), filled here."""
    with open(file, "rb") as f:
        if file not in headers:
            header_len = int.from_bytes(f.read(8), "little")
            headers[file] = (8 + header_len, json.loads(f.read(header_len)))
        data_start, header = headers[file]
        if name not in header:
            raise CheckpointError(f"checkpoint: {file}: cannot read {name} (not in the file)")
        entry = header[name]
        if entry["dtype"] not in SAFETENSORS_FLOATS:
            raise CheckpointError(f"checkpoint: {file}: {name} has dtype {entry['dtype']}, expected a floating type")
        begin, end = entry["data_offsets"]
        if scratch is not None and scratch.numel() < end - begin:
            scratch = torch.empty(end - begin, dtype=torch.uint8)
        data = torch.empty(end - begin, dtype=torch.uint8) if scratch is None else scratch[: end - begin]
        f.seek(data_start + begin)
        if f.readinto(data.numpy()) != end - begin:
            raise CheckpointError(f"checkpoint: {file} is truncated (reading {name})")
    return data.view(SAFETENSORS_FLOATS[entry["dtype"]]).reshape(entry["shape"]), scratch


def _check_tied_head(path: str, llm_files: dict, handles: dict, stack: contextlib.ExitStack) -> None:
    """A tied model that also stores lm_head.weight: transformers 4 ignored the stored head,
    transformers 5 uses it when it differs from the embedding; refused unless they agree."""
    stored = {}
    for name in ("lm_head.weight", "model.embed_tokens.weight"):
        file = llm_files[name]
        if file not in handles:
            handles[file] = stack.enter_context(_safetensors(file))
        stored[name] = handles[file].get_tensor(name)
    if not torch.equal(stored["lm_head.weight"], stored["model.embed_tokens.weight"]):
        raise CheckpointError(
            f"checkpoint: {os.path.join(path, 'llm', 'config.json')} tie_word_embeddings=True but the stored "
            f"lm_head.weight differs from model.embed_tokens.weight (transformers 4 would use the embedding, "
            f"transformers 5 the stored head)"
        )


def save(model: NVILA, path: str, tokenizer_json: str | None = None, max_shard_bytes: int | None = None) -> None:
    """Write `model` in the HF layout that load() reads. tokenizer_json: the tokenizer
    as a JSON string (default: model.tokenizer's). max_shard_bytes: split each
    subdirectory's tensors into shards of about this size with an index file."""
    from safetensors.torch import save_file

    from nvila_kernels.layers import Fp8Linear

    if any(isinstance(m, Fp8Linear) for m in model.modules()):
        raise ValueError("model: FP8-quantized models are not saved (save the model before nvila.quantize_fp8)")
    if tokenizer_json is None:
        if model.tokenizer is None:
            raise ValueError("tokenizer_json: required when model.tokenizer is not set")
        tokenizer_json = model.tokenizer.tok.to_str()
    cfg = model.cfg
    state = model.state_dict()
    for name, content in config_jsons(cfg, model.dtype).items():
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        with open(os.path.join(path, name), "w") as f:
            json.dump(content, f, indent=2)
    with open(os.path.join(path, "llm", "tokenizer.json"), "w") as f:
        f.write(tokenizer_json)
    tok = model.tokenizer
    if tok is not None and tok.template is not None:  # the chat template and stop tokens travel with it
        with open(os.path.join(path, "llm", "chat_template.jinja"), "w") as f:
            f.write(tok.template)
    if tok is not None and tok.stop_ids != (tok.im_end_id,):
        with open(os.path.join(path, "llm", "generation_config.json"), "w") as f:
            json.dump({"eos_token_id": list(tok.stop_ids)}, f, indent=2)
    for sub in SUBDIRS:
        tensors = {theirs: state[ours].detach().cpu().contiguous() for ours, (s, theirs) in
                   checkpoint_names(cfg).items() if s == sub}  # fmt: skip
        folder = os.path.join(path, sub)
        if max_shard_bytes is None:
            save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
            continue
        shards, size = [{}], 0
        for n, t in tensors.items():
            nbytes = t.numel() * t.element_size()
            if shards[-1] and size + nbytes > max_shard_bytes:
                shards.append({})
                size = 0
            shards[-1][n] = t
            size += nbytes
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, os.path.join(folder, fname), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, fname))
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
