"""Image preprocessing for NVILA / SigLIP pipelines, on multiscale_tile.

    pre = DynamicS2Preprocessor()                   # NVILA-8B: scales 448/896/1344, <= 12 tiles
    pixels, plan = pre(image)                       # (n_tiles, 3, 448, 448), the TilePlan
    proc = NVILAImageProcessor()                    # Hugging Face's image-processor convention
    batch = proc([im1, im2], return_tensors="pt")   # pixel_values (all tiles), block_sizes, num_tiles

Images: PIL images (converted to RGB as the official pipeline does), uint8 numpy
arrays or tensors (H, W, 3) (or (3, H, W) tensors). Pixels are Pillow-exact (bicubic,
antialiased), x/255, then (x - mean) / std, in one kernel launch per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .functional import multiscale_tile, multiscale_tile_batch
from .tiling import TilePlan, plan_lite, plan_single, plan_tiles

__all__ = ["DynamicS2Preprocessor", "NVILAImageProcessor", "to_uint8_image", "MODES", "SIGLIP_MEAN", "SIGLIP_STD"]

MODES = ("dynamic_s2", "single", "lite")
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)


def to_uint8_image(image) -> torch.Tensor:
    """A PIL image (any mode: converted to RGB), or a uint8 (H, W, 3) array / tensor, or a
    (3, H, W) tensor -> a uint8 (H, W, 3) or (3, H, W) tensor (multiscale_tile takes both)."""
    if isinstance(image, torch.Tensor):
        return image
    if isinstance(image, np.ndarray):
        array = np.ascontiguousarray(image)
        return torch.from_numpy(array if array.flags.writeable else array.copy())
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL is optional
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
    raise TypeError(f"image: expected a PIL image, a numpy array or a tensor, got {type(image).__name__}")


class DynamicS2Preprocessor:
    """NVILA's image preprocessing: the tile plan of an image, and its tiles.

    mode "dynamic_s2": plan_tiles(w, h, scales, tile, max_tiles) (NVILA-8B/15B);
    "single": one tile of the whole image (extra images, video frames); "lite":
    plan_lite(w, h, tile, max_tiles) (NVILA-Lite: tiles + thumbnail).
    """

    def __init__(
        self,
        scales: Sequence[int] = (448, 896, 1344),
        tile: int = 448,
        max_tiles: int = 12,
        mode: str = "dynamic_s2",
        mean: Sequence[float] = SIGLIP_MEAN,
        std: Sequence[float] = SIGLIP_STD,
        out_dtype: torch.dtype = torch.float32,
        *,
        exact: bool = True,
        backend: str | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        self.scales, self.tile, self.max_tiles, self.mode = tuple(scales), tile, max_tiles, mode
        self.mean, self.std, self.out_dtype, self.exact, self.backend = (
            tuple(mean),
            tuple(std),
            out_dtype,
            exact,
            backend,
        )
        self.plan(tile, tile)  # validates scales / tile / max_tiles now, not at the first image

    def plan(self, width: int, height: int) -> TilePlan:
        if self.mode == "single":
            return plan_single(width, height, self.tile)
        if self.mode == "lite":
            return plan_lite(width, height, self.tile, self.max_tiles)
        return plan_tiles(width, height, self.scales, self.tile, self.max_tiles)

    @staticmethod
    def _size(image: torch.Tensor) -> tuple[int, int]:
        """(width, height) of an (H, W, 3) or (3, H, W) uint8 tensor."""
        if image.dim() == 3 and image.shape[-1] == 3:
            return int(image.shape[1]), int(image.shape[0])
        if image.dim() == 3 and image.shape[0] == 3:
            return int(image.shape[2]), int(image.shape[1])
        raise ValueError(f"image: expected (H, W, 3) or (3, H, W), got shape {tuple(image.shape)}")

    def __call__(self, image) -> tuple[torch.Tensor, TilePlan]:
        """One image -> (pixels (n_tiles, 3, tile, tile), its TilePlan)."""
        x = to_uint8_image(image)
        plan = self.plan(*self._size(x))
        pixels = multiscale_tile(x, plan, self.mean, self.std, self.out_dtype, exact=self.exact, backend=self.backend)
        return pixels, plan

    def batch(self, images: Sequence) -> tuple[torch.Tensor, list[TilePlan]]:
        """Images of any sizes -> (all their tiles, in image order; their plans)."""
        xs = [to_uint8_image(im) for im in images]
        plans = [self.plan(*self._size(x)) for x in xs]
        pixels, _ = multiscale_tile_batch(
            xs, plans, self.mean, self.std, self.out_dtype, exact=self.exact, backend=self.backend
        )
        return pixels, plans


class NVILAImageProcessor(DynamicS2Preprocessor):
    """An image processor with Hugging Face's call convention, backed by multiscale_tile.

    processor(images, return_tensors="pt") -> {"pixel_values": (total tiles, 3, T, T),
    "block_sizes": [(rows, cols) per image], "num_tiles": [n per image]}: a
    transformers.BatchFeature when transformers is installed, else a dict. With
    mode="single" and tile=384 or 448 it is a drop-in for SiglipImageProcessor
    (resize to tile x tile, rescale 1/255, normalize 0.5 / 0.5).
    """

    model_input_names = ["pixel_values"]

    def __call__(self, images, return_tensors: str | None = "pt", **kwargs):
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)

    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs):
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        if return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors: only 'pt' (torch) is supported, got {return_tensors!r}")
        single = not isinstance(images, (list, tuple))
        pixels, plans = self.batch([images] if single else list(images))
        data = {
            "pixel_values": pixels,
            "block_sizes": [p.block_size for p in plans],
            "num_tiles": [p.n_tiles for p in plans],
        }
        try:
            from transformers import BatchFeature
        except ImportError:
            return data
        return BatchFeature(data=data)
