"""NVILA checkpoints in the HF layout (NVILA.md section 1), the only place that knows
the checkpoint's names:

    config.json      top level (llava_llama): s2 / projector / video keys
    llm/             Qwen2ForCausalLM: config.json, *.safetensors (+ index), tokenizer.json
    vision_tower/    SiglipVisionModel: config.json, *.safetensors, preprocessor_config.json
    mm_projector/    config.json (mm_projector_type), *.safetensors (nn.Sequential indices)

load() builds the model on the meta device, memory-maps the safetensors, checks every
name and shape, and loads with assign=True (the tensors are not allocated twice).
"""

from __future__ import annotations

import contextlib
import json
import os
import re

import torch

from .config import LLMConfig, NVILAConfig, VisionConfig
from .model import NVILA
from .processor import Tokenizer

SUBDIRS = ("llm", "vision_tower", "mm_projector")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file or tensor."""


# ---- names ----------------------------------------------------------------------


def checkpoint_names(cfg: NVILAConfig) -> dict[str, tuple[str, str]]:
    """Our parameter name -> (subdirectory, checkpoint tensor name)."""
    names: dict[str, tuple[str, str]] = {}
    v = "vision_model."
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


def _unused(cfg: NVILAConfig, sub: str, name: str) -> bool:
    """Checkpoint tensors NVILA never uses: SigLIP's blocks after select_layer, its
    post-LayerNorm and head; a tied model's stored lm_head; RoPE buffers."""
    if sub == "vision_tower":
        m = re.match(r"vision_model\.encoder\.layers\.(\d+)\.", name)
        if m:
            return int(m.group(1)) >= cfg.vision.computed_layers
        return name.startswith(("vision_model.post_layernorm.", "vision_model.head."))
    if sub == "llm":
        return (cfg.llm.tie_embeddings and name == "lm_head.weight") or name.endswith("rotary_emb.inv_freq")
    return False


# ---- configs ----------------------------------------------------------------------


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint: {path} not found")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint: {path} is not valid JSON ({e})") from e
    if not isinstance(d, dict):
        raise CheckpointError(f"checkpoint: {path} must hold a JSON object, got {type(d).__name__}")
    return d


def _get(d: dict, key: str, path: str):
    if key not in d:
        raise CheckpointError(f"checkpoint: {path} has no {key!r}")
    return d[key]


def _temporal_pool(top: dict) -> int:
    """Frames averaged together: the video encoder's temporal pool size. NVILA stores the
    encoder as (a JSON string of) {"_target_": "...TSPVideoEncoder", "pool_sizes": [[8, 1, 1]]};
    TSPVideoEncoder's default pool is [[8, 1, 1]]; any other encoder does not pool."""
    enc = top.get("video_encoder")
    if isinstance(enc, str):
        enc = json.loads(enc)
    if not isinstance(enc, dict) or not str(enc.get("_target_", "")).endswith("TSPVideoEncoder"):
        return 1
    sizes = enc.get("pool_sizes", [[8, 1, 1]])
    if len(sizes) != 1 or list(sizes[0][1:]) != [1, 1]:
        raise CheckpointError(f"checkpoint: video_encoder pool_sizes {sizes} unsupported (expected [[T, 1, 1]])")
    return int(sizes[0][0])


def read_config(path: str) -> NVILAConfig:
    """The NVILAConfig of the checkpoint directory `path` (its four config.json files)."""
    top_path = os.path.join(path, "config.json")
    top = _read_json(top_path)
    llm_path = os.path.join(path, "llm", "config.json")
    llm = _read_json(llm_path)
    vis_path = os.path.join(path, "vision_tower", "config.json")
    vis = _read_json(vis_path)
    proj_path = os.path.join(path, "mm_projector", "config.json")
    proj = _read_json(proj_path)
    pre_path = os.path.join(path, "vision_tower", "preprocessor_config.json")
    pre = _read_json(pre_path) if os.path.isfile(pre_path) else {}
    try:
        vision = VisionConfig(
            hidden=_get(vis, "hidden_size", vis_path),
            layers=_get(vis, "num_hidden_layers", vis_path),
            heads=_get(vis, "num_attention_heads", vis_path),
            mlp=_get(vis, "intermediate_size", vis_path),
            patch=_get(vis, "patch_size", vis_path),
            image=_get(vis, "image_size", vis_path),
            eps=vis.get("layer_norm_eps", 1e-6),
            select_layer=top.get("mm_vision_select_layer", -2),
            image_mean=tuple(pre.get("image_mean", (0.5, 0.5, 0.5))),
            image_std=tuple(pre.get("image_std", (0.5, 0.5, 0.5))),
        )
        lm = LLMConfig(
            hidden=_get(llm, "hidden_size", llm_path),
            layers=_get(llm, "num_hidden_layers", llm_path),
            heads=_get(llm, "num_attention_heads", llm_path),
            kv_heads=llm.get("num_key_value_heads", llm.get("num_attention_heads")),
            ffn=_get(llm, "intermediate_size", llm_path),
            vocab=_get(llm, "vocab_size", llm_path),
            rope_theta=float(llm.get("rope_theta", 1e6)),
            eps=float(llm.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(llm.get("tie_word_embeddings", False)),
            max_seq_len=llm.get("max_position_embeddings", 32768),
        )
        aspect = top.get("image_aspect_ratio", "dynamic_s2" if top.get("dynamic_s2") else None)
        if top.get("dynamic_s2") or aspect == "dynamic_s2":
            image_mode = "dynamic_s2"
        elif aspect in ("dynamic", "resize"):
            image_mode = "lite" if aspect == "dynamic" else "resize"
        else:
            raise CheckpointError(
                f"checkpoint: {top_path} image_aspect_ratio {aspect!r} unsupported "
                f"(expected dynamic_s2, dynamic or resize)"
            )
        s2 = tuple(int(s) for s in str(top["s2_scales"]).split(",")) if "s2_scales" in top else None
        if image_mode == "dynamic_s2" and s2 is None:
            raise CheckpointError(f"checkpoint: {top_path} has dynamic_s2 but no 's2_scales'")
        if image_mode == "lite" or s2 is None or top.get("mm_hidden_size") == vision.hidden:
            scales = (vision.image,)  # one scale: no channel repeat
        else:
            scales = s2
        cfg = NVILAConfig(
            vision,
            lm,
            projector_type=proj.get("mm_projector_type", top.get("mm_projector_type")),
            image_mode=image_mode,
            scales=scales,
            max_tiles=top.get("max_tiles", 12),
            num_video_frames=top.get("num_video_frames", 8),
            fps=float(top.get("fps", 0.0) or 0.0),
            temporal_pool=_temporal_pool(top),
        )
    except (ValueError, TypeError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {path}: bad config value: {e}") from e
    if "mm_hidden_size" in top and top["mm_hidden_size"] != cfg.mm_hidden:
        raise CheckpointError(
            f"checkpoint: {top_path} mm_hidden_size={top['mm_hidden_size']} does not match "
            f"vision hidden {vision.hidden} x {len(scales)} scales = {cfg.mm_hidden}"
        )
    return cfg


def _config_jsons(cfg: NVILAConfig, dtype: torch.dtype) -> dict[str, dict]:
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


def load(
    path: str,
    dtype: torch.dtype | str = torch.bfloat16,
    device: torch.device | str = "cpu",
    backend: str | None = None,
) -> NVILA:
    """An NVILA model (with .tokenizer) from an HF-format checkpoint directory."""
    from safetensors import SafetensorError

    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype: expected torch.bfloat16, float16 or float32, got {dtype}")
    if not os.path.isdir(path):
        raise CheckpointError(f"checkpoint: directory {path} not found")
    for sub in SUBDIRS:
        if not os.path.isdir(os.path.join(path, sub)):
            raise CheckpointError(f"checkpoint: {os.path.join(path, sub)} not found (expected {', '.join(SUBDIRS)})")
    cfg = read_config(path)
    tok_path = os.path.join(path, "llm", "tokenizer.json")
    if not os.path.isfile(tok_path):
        raise CheckpointError(f"checkpoint: {tok_path} not found (the tokenizer, `tokenizers` JSON format)")
    try:
        tokenizer = Tokenizer.from_file(tok_path)
    except Exception as e:  # the tokenizers library raises a bare Exception on a bad file
        raise CheckpointError(f"checkpoint: {tok_path} is not a usable tokenizer ({e})") from e
    with torch.device("meta"):
        model = NVILA(cfg, backend=backend)
    expected = dict(model.state_dict())
    names = checkpoint_names(cfg)
    if set(names) != set(expected):  # a bug here, not in the checkpoint
        raise RuntimeError(f"weights.checkpoint_names out of sync with the model: {set(names) ^ set(expected)}")

    files = {sub: _tensor_files(os.path.join(path, sub)) for sub in SUBDIRS}
    wanted = {(sub, theirs) for sub, theirs in names.values()}
    unexpected = [
        f"{sub}/{n}" for sub in SUBDIRS for n in files[sub] if (sub, n) not in wanted and not _unused(cfg, sub, n)
    ]
    missing = [f"{sub}/{theirs}" for sub, theirs in names.values() if theirs not in files[sub]]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path}: missing tensors {missing[:20]}{' ...' if len(missing) > 20 else ''}; "
            f"unexpected tensors {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}"
        )

    state = {}
    with contextlib.ExitStack() as stack:
        handles: dict[str, object] = {}
        for ours, (sub, theirs) in names.items():
            file = files[sub][theirs]
            if file not in handles:
                handles[file] = stack.enter_context(_safetensors(file))
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
            state[ours] = t.to(device=device, dtype=dtype)
    model.load_state_dict(state, strict=True, assign=True)
    model.tokenizer = tokenizer
    return model.eval().requires_grad_(False)


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
    for name, content in _config_jsons(cfg, model.dtype).items():
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        with open(os.path.join(path, name), "w") as f:
            json.dump(content, f, indent=2)
    with open(os.path.join(path, "llm", "tokenizer.json"), "w") as f:
        f.write(tokenizer_json)
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
