"""NVILA as a vLLM multimodal model: vLLM's own Qwen2 (paged attention, its parallel
linears, its quantization) for the LLM; the vision path on nvila_kernels, as nvila runs it
(nvila.model.VisualEncoder: multiscale_tile, the SigLIP tower, merge_compress /
spatial_compress, the projector MLP, temporal_pool).

The processor expands each placeholder as nvila.model.NVILA.embed_prompt does:

    <image>        -> <image> x n_tokens, "\\n"      (one image: Dynamic-S2 tiles; several: one tile each)
    <vila/video>   -> (<vila/video> x n_tokens, "\\n") per frame group of cfg.temporal_pool frames

where the repeated placeholder ids receive the visual embeddings and "\\n" is the LLM's own
newline token. It passes the decoded RGB pixels (uint8) to the model, which tiles them on its
device. NVILA-Lite checkpoints (one "<image>\\n" per tile) are refused.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from transformers import BatchFeature
from vllm.config import VllmConfig
from vllm.model_executor.model_loader.default_loader import DefaultModelLoader
from vllm.model_executor.models.interfaces import MultiModalEmbeddings, SupportsMultiModal, SupportsPP
from vllm.model_executor.models.utils import init_vllm_registered_model, maybe_prefix
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import ImageSize, MultiModalDataItems
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
    PromptUpdateDetails,
)

from ..config import NVILAConfig
from ..media import IMAGE_TOKEN, VIDEO_TOKEN, load_image
from ..model import VisualEncoder, preprocessor
from ..weights import _unused, checkpoint_names, read_config

LLM_ARCHITECTURE = "Qwen2ForCausalLM"


@functools.lru_cache(maxsize=8)
def nvila_config(path: str) -> NVILAConfig:
    """The checkpoint's NVILAConfig (nvila.weights.read_config: every key that changes the
    computation honoured or refused); NVILA-Lite is refused here."""
    cfg = read_config(path)
    if cfg.image_mode == "lite":
        raise ValueError(
            f"model: {path} is an NVILA-Lite checkpoint (image_aspect_ratio 'dynamic'); the vLLM plugin "
            f"supports Dynamic-S2 and 'resize' checkpoints only"
        )
    return cfg


def image_tokens(cfg: NVILAConfig, width: int, height: int, tiled: bool) -> int:
    """Visual tokens of a width x height image (without its "\\n"): tokens_per_tile per
    grid x grid block of the merged Dynamic-S2 map (rows x cols blocks), one block untiled."""
    plan = preprocessor(cfg, tiled).plan(width, height)
    rows, cols = plan.block_size if plan.n_tiles > 1 else (1, 1)
    return rows * cols * cfg.tokens_per_tile


def video_blocks(cfg: NVILAConfig, frames: int) -> int:
    """Token blocks of a video of `frames` frames: one per group of cfg.temporal_pool frames."""
    if frames < 1 or frames % cfg.temporal_pool:
        raise ValueError(
            f"video: {frames} frames; expected a positive multiple of the checkpoint's temporal_pool "
            f"{cfg.temporal_pool} (nvila samples num_video_frames={cfg.num_video_frames})"
        )
    return frames // cfg.temporal_pool


class NVILAProcessingInfo(BaseProcessingInfo):
    @property
    def nvila(self) -> NVILAConfig:
        return nvila_config(self.ctx.model_config.model)

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"image": None, "video": 1}  # nvila: one video per prompt

    def token_id(self, text: str) -> int:
        ids = self.get_tokenizer().encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"tokenizer: {text!r} must be one token, got ids {ids}")
        return ids[0]

    def largest_image(self) -> ImageSize:
        """The image size with the most visual tokens (the tile grid of max_tiles tiles
        with the most blocks), for vLLM's memory profiling."""
        cfg = self.nvila
        t = cfg.vision.image
        grids = [(c, r) for c in range(1, cfg.max_tiles + 1) for r in range(1, cfg.max_tiles // c + 1)]
        c, r = max(grids, key=lambda g: image_tokens(cfg, g[0] * t, g[1] * t, True))
        return ImageSize(width=c * t, height=r * t)


class NVILADummyInputsBuilder(BaseDummyInputsBuilder[NVILAProcessingInfo]):
    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return VIDEO_TOKEN * mm_counts.get("video", 0) + IMAGE_TOKEN * mm_counts.get("image", 0)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options=None):
        size = self.info.largest_image()
        cfg = self.info.nvila
        tile = cfg.vision.image
        return {
            "image": self._get_dummy_images(width=size.width, height=size.height, num_images=mm_counts.get("image", 0)),
            "video": self._get_dummy_videos(
                width=tile, height=tile, num_frames=cfg.num_video_frames, num_videos=mm_counts.get("video", 0)
            ),
        }


def _rgb(image, what: str) -> torch.Tensor:
    """A vLLM image item (PIL image, or a uint8 (H, W, 3) array / tensor) -> uint8 (H, W, 3),
    checked and converted as nvila.media.load_image does (size caps, EXIF, modes)."""
    if isinstance(image, torch.Tensor):
        image = image.cpu().numpy()
    if isinstance(image, np.ndarray) and image.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 pixels, got {image.dtype}")
    return torch.from_numpy(np.array(load_image(image), dtype=np.uint8))


class NVILAMultiModalProcessor(BaseMultiModalProcessor[NVILAProcessingInfo]):
    """Decodes the media (nvila.media.load_image), counts their visual tokens and hands the
    uint8 pixels to the model; no Hugging Face processor is involved."""

    def _apply_hf_processor_main(self, mm_items: MultiModalDataItems, hf_kwargs: Mapping[str, object]) -> BatchFeature:
        cfg = self.info.nvila
        data = {}
        counts = mm_items.get_all_counts()
        if counts.get("image", 0):
            images = mm_items.get_items("image", object)
            tiled = counts["image"] == 1
            rgbs = [_rgb(images.get(i), f"image {i}") for i in range(counts["image"])]
            data["image_rgb"] = rgbs
            data["image_tiled"] = torch.tensor([tiled] * len(rgbs))
            data["image_tokens"] = torch.tensor([image_tokens(cfg, x.shape[1], x.shape[0], tiled) for x in rgbs])
        if counts.get("video", 0):
            videos = mm_items.get_items("video", object)
            clips, blocks = [], []
            for i in range(counts["video"]):
                frames = videos.get(i)
                if isinstance(frames, tuple):  # (frames, metadata) from vLLM's video loader
                    frames = frames[0]
                blocks.append(video_blocks(cfg, len(frames)))  # refuses counts temporal_pool does not divide
                clips.append(torch.stack([_rgb(f, f"video {i} frame {j}") for j, f in enumerate(frames)]))
            data["video_rgb"] = clips  # [(T, H, W, 3) uint8]
            data["video_blocks"] = torch.tensor(blocks)
        return BatchFeature(data)

    def _get_mm_fields_config(self, hf_inputs, hf_processor_mm_kwargs) -> Mapping[str, MultiModalFieldConfig]:
        return dict(
            image_rgb=MultiModalFieldConfig.batched("image"),
            image_tiled=MultiModalFieldConfig.batched("image", keep_on_cpu=True),
            image_tokens=MultiModalFieldConfig.batched("image", keep_on_cpu=True),
            video_rgb=MultiModalFieldConfig.batched("video"),
            video_blocks=MultiModalFieldConfig.batched("video", keep_on_cpu=True),
        )

    def _get_mm_hashes(self, inputs):
        """An image's processed form depends on how many images its prompt has (one: tiled;
        several: one tile each), so the count is part of its cache identity."""
        hashes = super()._get_mm_hashes(inputs)
        n = len(hashes.get("image", ()))
        if n:
            hashes["image"] = [f"{h}-{'tiled' if n == 1 else 'untiled'}" for h in hashes["image"]]
        return hashes

    def _get_prompt_updates(
        self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs, out_mm_kwargs: MultiModalKwargsItems
    ) -> Sequence[PromptUpdate]:
        info = self.info
        image_id, video_id, newline_id = info.token_id(IMAGE_TOKEN), info.token_id(VIDEO_TOKEN), info.token_id("\n")
        tokens_per_frame = info.nvila.tokens_per_tile

        def image(i: int):
            n = int(out_mm_kwargs["image"][i]["image_tokens"].data)
            return PromptUpdateDetails.select_token_id([image_id] * n + [newline_id], image_id)

        def video(i: int):
            blocks = int(out_mm_kwargs["video"][i]["video_blocks"].data)
            tokens = ([video_id] * tokens_per_frame + [newline_id]) * blocks
            return PromptUpdateDetails.select_token_id(tokens, video_id)

        return [
            PromptReplacement(modality="image", target=[image_id], replacement=image),
            PromptReplacement(modality="video", target=[video_id], replacement=video),
        ]


@MULTIMODAL_REGISTRY.register_processor(
    NVILAMultiModalProcessor, info=NVILAProcessingInfo, dummy_inputs=NVILADummyInputsBuilder
)
class NVILAForConditionalGeneration(nn.Module, SupportsMultiModal, SupportsPP):
    """vLLM's Qwen2 (language_model) with NVILA's vision path (visual: nvila.model.VisualEncoder,
    every kernel from nvila_kernels, backend chosen by device)."""

    # the LLM's tensors from llm/; the vision tower's and projector's through secondary_weights
    allow_patterns_overrides = ["llm/*.safetensors"]
    # vLLM's Qwen2 fuses these checkpoint linears (quantization configs name the fused ones)
    packed_modules_mapping = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("image"):
            return IMAGE_TOKEN
        if modality.startswith("video"):
            return VIDEO_TOKEN
        raise ValueError(f"modality: expected image or video, got {modality!r}")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        model_config = vllm_config.model_config
        path = model_config.model
        if not os.path.isdir(path):
            raise ValueError(f"model: expected a local NVILA checkpoint directory, got {path!r}")
        self.cfg = nvila_config(path)
        hf_config = model_config.hf_config
        with self._mark_tower_model(vllm_config, {"image", "video"}):
            self.visual = VisualEncoder(self.cfg)
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(
                vllm_config=vllm_config,
                hf_config=hf_config.text_config,
                prefix=maybe_prefix(prefix, "language_model"),
                architectures=[LLM_ARCHITECTURE],
            )
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors
        self.secondary_weights = [
            DefaultModelLoader.Source(path, model_config.revision, subfolder=sub, prefix=f"{sub}/")
            for sub in ("vision_tower", "mm_projector")
        ]

    # ---- vision ------------------------------------------------------------------

    def embed_multimodal(self, **kwargs) -> MultiModalEmbeddings:
        """One (n_tokens, H) tensor per image / video, in the order vLLM passes them: the
        visual blocks of each item concatenated (their "\\n" tokens are the LLM's own)."""
        out = []
        if kwargs.get("image_rgb") is not None:
            for rgb, tiled, n in zip(kwargs["image_rgb"], kwargs["image_tiled"], kwargs["image_tokens"], strict=True):
                out.append(self._check(torch.cat(self.visual.encode_rgb(rgb, bool(tiled))), int(n), "image"))
        if kwargs.get("video_rgb") is not None:
            for frames, blocks in zip(kwargs["video_rgb"], kwargs["video_blocks"], strict=True):
                n = int(blocks) * self.cfg.tokens_per_tile
                out.append(self._check(torch.cat(self.visual.encode_rgb_frames(list(frames.unbind(0)))), n, "video"))
        return out

    def _check(self, tokens: torch.Tensor, expected: int, what: str) -> torch.Tensor:
        if tokens.shape[0] != expected:  # the processor's count and the kernels' output disagree: a bug
            raise RuntimeError(f"{what}: {tokens.shape[0]} visual tokens, the processor reserved {expected}")
        return tokens.to(self.language_model.model.embed_tokens.weight.dtype)

    # ---- LLM ----------------------------------------------------------------------

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """llm/ tensors to vLLM's Qwen2 (its own loader: fused qkv / gate_up, sharding);
        vision_tower/ and mm_projector/ tensors to the visual encoder by nvila's names."""
        vision_prefix = "vision_model."
        names = {f"{sub}/{theirs}": ours for ours, (sub, theirs) in checkpoint_names(self.cfg, vision_prefix).items()}
        names_plain = {
            f"{sub}/{theirs}": ours for ours, (sub, theirs) in checkpoint_names(self.cfg, "").items()
        }  # transformers 5 saves SigLIP without "vision_model."
        params = dict(self.visual.named_parameters())
        loaded: set[str] = set()

        def llm_weights():
            for name, tensor in weights:
                if name.startswith(("vision_tower/", "mm_projector/")):
                    ours = names.get(name) or names_plain.get(name)
                    if ours is None:
                        sub, theirs = name.split("/", 1)
                        if not (_unused(self.cfg, sub, theirs, vision_prefix) or _unused(self.cfg, sub, theirs, "")):
                            raise ValueError(f"checkpoint: unexpected tensor {name}")
                        continue  # blocks after select_layer, the post-LayerNorm, the head: never run
                    param = params[ours]
                    if tuple(param.shape) != tuple(tensor.shape):
                        raise ValueError(f"checkpoint: {name} has shape {tuple(tensor.shape)}, expected {param.shape}")
                    with torch.no_grad():
                        param.copy_(tensor)
                    loaded.add(f"visual.{ours}")
                else:
                    yield name, tensor

        loaded |= {f"language_model.{n}" for n in self.language_model.load_weights(llm_weights())}
        missing = [f"visual.{n}" for n in params if f"visual.{n}" not in loaded]
        if missing:
            raise ValueError(f"checkpoint: vision tensors missing: {missing[:10]}")
        return loaded
