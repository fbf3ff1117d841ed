"""NVILA configuration: one dataclass per component, validated on construction, and
presets matching the released checkpoints (NVILA.md section 1).

A checkpoint's own config.json files win over the presets (nvila.weights reads them);
the presets serve shape logic on the meta device and documentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

PROJECTOR_TYPES = {"mlp_downsample": 2, "mlp_downsample_2x2_fix": 2, "mlp_downsample_3x3_fix": 3}
IMAGE_MODES = ("dynamic_s2", "lite", "resize")


def _positive_int(owner: str, name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{owner}.{name}: expected an int >= 1, got {v!r}")


def _positive_float(owner: str, name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
        raise ValueError(f"{owner}.{name}: expected a positive float, got {v!r}")


@dataclass(frozen=True)
class VisionConfig:
    """SigLIP vision tower. `layers` is the checkpoint's depth; only the blocks up to
    `select_layer` (hidden_states index, -2 = the output of the second to last block)
    are built and run."""

    hidden: int = 1152
    layers: int = 27
    heads: int = 16
    mlp: int = 4304
    patch: int = 14
    image: int = 448  # tile size in pixels
    eps: float = 1e-6
    select_layer: int = -2
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "heads", "mlp", "patch", "image"):
            _positive_int("VisionConfig", name, getattr(self, name))
        _positive_float("VisionConfig", "eps", self.eps)
        if self.hidden % self.heads:
            raise ValueError(f"VisionConfig.heads: {self.heads} does not divide hidden={self.hidden}")
        if self.image % self.patch:
            raise ValueError(f"VisionConfig.patch: {self.patch} does not divide image={self.image}")
        if isinstance(self.select_layer, bool) or not isinstance(self.select_layer, int):
            raise ValueError(f"VisionConfig.select_layer: expected an int, got {self.select_layer!r}")
        if not -self.layers - 1 < self.select_layer < 0:
            raise ValueError(
                f"VisionConfig.select_layer: expected -{self.layers} .. -1 (a hidden_states index from the end), "
                f"got {self.select_layer}"
            )
        for name in ("image_mean", "image_std"):
            v = getattr(self, name)
            if len(v) != 3:
                raise ValueError(f"VisionConfig.{name}: expected 3 values (RGB), got {v!r}")
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f"VisionConfig.image_std: expected positive values, got {self.image_std!r}")

    @property
    def grid(self) -> int:
        """Patches per side of a tile (32 for SigLIP at 448)."""
        return self.image // self.patch

    @property
    def computed_layers(self) -> int:
        """Blocks actually run: hidden_states[select_layer] is the output of this many."""
        return self.layers + 1 + self.select_layer


@dataclass(frozen=True)
class LLMConfig:
    """Qwen2 decoder."""

    hidden: int = 3584
    layers: int = 28
    heads: int = 28
    kv_heads: int = 4
    ffn: int = 18944
    vocab: int = 151648
    rope_theta: float = 1e6
    eps: float = 1e-6
    tie_embeddings: bool = False
    max_seq_len: int = 32768

    def __post_init__(self) -> None:
        for name in ("hidden", "layers", "heads", "kv_heads", "ffn", "vocab", "max_seq_len"):
            _positive_int("LLMConfig", name, getattr(self, name))
        _positive_float("LLMConfig", "rope_theta", self.rope_theta)
        _positive_float("LLMConfig", "eps", self.eps)
        if self.hidden % self.heads:
            raise ValueError(f"LLMConfig.heads: {self.heads} does not divide hidden={self.hidden}")
        if self.heads % self.kv_heads:
            raise ValueError(f"LLMConfig.kv_heads: {self.kv_heads} does not divide heads={self.heads}")
        if self.head_dim % 2:
            raise ValueError(f"LLMConfig.heads: head_dim = hidden/heads = {self.head_dim} must be even for RoPE")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"LLMConfig.tie_embeddings: expected a bool, got {self.tie_embeddings!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class NVILAConfig:
    """The whole model. image_mode (the checkpoint's image_aspect_ratio): "dynamic_s2":
    multi-scale tiles merged then compressed per grid x grid block (NVILA-8B/15B);
    "lite" ("dynamic"): one scale, every tile and the thumbnail its own image
    (NVILA-Lite); "resize": every image one tile. Non-tiled images and video frames
    are one tile whose features are repeated len(scales) times on channels."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    projector_type: str = "mlp_downsample"
    image_mode: str = "dynamic_s2"
    scales: tuple[int, ...] = (448, 896, 1344)
    max_tiles: int = 12
    projector_eps: float = 1e-5
    num_video_frames: int = 8
    fps: float = 0.0
    temporal_pool: int = 1  # average groups of this many consecutive frames (1 = off)
    num_time_tokens: int = 0  # video time tokens in answers (VILA's "<t0>".."<t{n-1}>"), 0 = none
    time_token_format: str = "<t{t}>"

    def __post_init__(self) -> None:
        if not isinstance(self.vision, VisionConfig):
            raise TypeError(f"NVILAConfig.vision: expected a VisionConfig, got {type(self.vision).__name__}")
        if not isinstance(self.llm, LLMConfig):
            raise TypeError(f"NVILAConfig.llm: expected an LLMConfig, got {type(self.llm).__name__}")
        if self.projector_type not in PROJECTOR_TYPES:
            raise ValueError(
                f"NVILAConfig.projector_type: expected one of {', '.join(PROJECTOR_TYPES)}, got {self.projector_type!r}"
            )
        if self.image_mode not in IMAGE_MODES:
            raise ValueError(
                f"NVILAConfig.image_mode: expected one of {', '.join(IMAGE_MODES)}, got {self.image_mode!r}"
            )
        scales = self.scales
        if not scales or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in scales):
            raise ValueError(f"NVILAConfig.scales: expected a non-empty tuple of ints >= 1, got {scales!r}")
        if tuple(sorted(scales)) != tuple(scales):
            raise ValueError(f"NVILAConfig.scales: expected ascending scales, got {scales!r}")
        if scales[0] != self.vision.image or any(s % scales[0] for s in scales):
            raise ValueError(
                f"NVILAConfig.scales: expected multiples of the tile size vision.image={self.vision.image} "
                f"starting with it, got {scales!r}"
            )
        if self.image_mode == "lite" and len(scales) != 1:
            raise ValueError(f"NVILAConfig.scales: NVILA-Lite uses one scale, got {scales!r}")
        _positive_int("NVILAConfig", "max_tiles", self.max_tiles)
        if self.image_mode == "dynamic_s2" and self.max_tiles < (scales[-1] // scales[0]) ** 2:
            raise ValueError(
                f"NVILAConfig.max_tiles: expected at least (scales[-1]/scales[0])^2 = "
                f"{(scales[-1] // scales[0]) ** 2}, got {self.max_tiles}"
            )
        _positive_float("NVILAConfig", "projector_eps", self.projector_eps)
        _positive_int("NVILAConfig", "num_video_frames", self.num_video_frames)
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or self.fps < 0:
            raise ValueError(f"NVILAConfig.fps: expected a float >= 0, got {self.fps!r}")
        _positive_int("NVILAConfig", "temporal_pool", self.temporal_pool)
        if isinstance(self.num_time_tokens, bool) or not isinstance(self.num_time_tokens, int):
            raise ValueError(f"NVILAConfig.num_time_tokens: expected an int >= 0, got {self.num_time_tokens!r}")
        if self.num_time_tokens == 1 or self.num_time_tokens < 0:
            raise ValueError(f"NVILAConfig.num_time_tokens: expected 0 or an int >= 2, got {self.num_time_tokens!r}")
        if not isinstance(self.time_token_format, str) or "{t}" not in self.time_token_format:
            raise ValueError(
                f"NVILAConfig.time_token_format: expected a format string with {{t}}, got {self.time_token_format!r}"
            )
        if self.num_video_frames % self.temporal_pool:
            raise ValueError(
                f"NVILAConfig.temporal_pool: {self.temporal_pool} does not divide "
                f"num_video_frames={self.num_video_frames}"
            )

    @property
    def k(self) -> int:
        """Spatial-to-channel compression factor of the projector (2 or 3)."""
        return PROJECTOR_TYPES[self.projector_type]

    @property
    def mm_hidden(self) -> int:
        """Channels per token entering the compression: vision hidden x number of scales."""
        return self.vision.hidden * len(self.scales)

    @property
    def tokens_per_tile(self) -> int:
        """Projector tokens of one grid x grid block (256 for 2x2 on 32x32, 121 for 3x3)."""
        side = -(-self.vision.grid // self.k)
        return side * side


_SIGLIP = VisionConfig()
_QWEN2_7B = LLMConfig()
_QWEN25_14B = LLMConfig(hidden=5120, layers=48, heads=40, kv_heads=8, ffn=13824)
_QWEN25_1_5B = LLMConfig(hidden=1536, layers=28, heads=12, kv_heads=2, ffn=8960, tie_embeddings=True)

PRESETS: dict[str, NVILAConfig] = {
    "nvila-8b": NVILAConfig(_SIGLIP, _QWEN2_7B),
    "nvila-15b": NVILAConfig(_SIGLIP, _QWEN25_14B),
    "nvila-8b-video": NVILAConfig(_SIGLIP, _QWEN2_7B, num_video_frames=256, temporal_pool=8),
    "nvila-lite-2b": NVILAConfig(
        _SIGLIP, _QWEN25_1_5B, projector_type="mlp_downsample_3x3_fix", image_mode="lite", scales=(448,)
    ),
    "nvila-lite-8b": NVILAConfig(
        _SIGLIP, _QWEN2_7B, projector_type="mlp_downsample_3x3_fix", image_mode="lite", scales=(448,)
    ),
    # Test models: 32-pixel tiles of 4-pixel patches (an 8x8 token grid, so 2x2 and
    # 3x3 compression both pad or not), scales 32/64/96, a few small layers.
    "tiny": NVILAConfig(
        VisionConfig(hidden=32, layers=3, heads=2, mlp=64, patch=4, image=32),
        LLMConfig(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=512, rope_theta=1e4, max_seq_len=4096),
        scales=(32, 64, 96),
        num_video_frames=8,
        temporal_pool=4,
    ),
    "tiny-lite": NVILAConfig(
        VisionConfig(hidden=32, layers=3, heads=2, mlp=64, patch=4, image=32),
        LLMConfig(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=512, rope_theta=1e4, tie_embeddings=True),
        projector_type="mlp_downsample_3x3_fix",
        image_mode="lite",
        scales=(32,),
    ),
    # The shipped model (nvila/tiny/assets/tiny, trained by nvila.tiny.train on nvila.tiny.shapes):
    # 28-pixel tiles of 7-pixel patches (4x4 tokens), Dynamic-S2 scales 28/56/84, 2x2
    # projector, 8 video frames averaged in pairs. vocab is the tokenizer's size.
    "tiny-shapes": NVILAConfig(
        VisionConfig(hidden=48, layers=4, heads=3, mlp=128, patch=7, image=28),
        LLMConfig(hidden=64, layers=3, heads=4, kv_heads=2, ffn=192, vocab=400, rope_theta=1e4, max_seq_len=512),
        scales=(28, 56, 84),
        num_video_frames=8,
        temporal_pool=2,
    ),
}


def preset(name: str, **overrides) -> NVILAConfig:
    """A preset by name, with top-level fields replaced by `overrides`."""
    if name not in PRESETS:
        raise ValueError(f"name: expected one of {', '.join(PRESETS)}, got {name!r}")
    return replace(PRESETS[name], **overrides)
