"""The preprocessing drop-ins: DynamicS2Preprocessor and NVILAImageProcessor (Hugging Face
call convention) against the official path (Pillow resize + crop, then SigLIP's
rescale and normalize), and against transformers' SiglipImageProcessor."""

import numpy as np
import pytest
import torch
from PIL import Image

from nvila_kernels.processor import DynamicS2Preprocessor, NVILAImageProcessor
from nvila_kernels.tiling import plan_tiles


def _image(w, h, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return rgb.convert(mode)


def _official(image: Image.Image, plan) -> torch.Tensor:
    """NVILA's path: RGB, Pillow bicubic resize per scale, crop, x/255, (x - 0.5) / 0.5."""
    im, T, tiles = image.convert("RGB"), plan.tile, []
    for s in plan.scales:
        r = np.asarray(im.resize((s.width, s.height), Image.BICUBIC), dtype=np.float32)
        for i in range(s.rows):
            for j in range(s.cols):
                t = r[i * T : (i + 1) * T, j * T : (j + 1) * T] / 255.0
                tiles.append(((t - 0.5) / 0.5).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(tiles))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK"])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_dynamic_s2_matches_the_official_path(mode, backend):
    pre = DynamicS2Preprocessor((28, 56, 84), 28, backend=backend)
    image = _image(97, 41, mode)
    pixels, plan = pre(image)
    assert plan == plan_tiles(97, 41, (28, 56, 84), 28)
    torch.testing.assert_close(pixels, _official(image, plan), atol=1e-6, rtol=0)
    # numpy and tensor inputs, (3, H, W) too
    rgb = np.asarray(image.convert("RGB"))
    torch.testing.assert_close(pre(rgb)[0], pixels)
    torch.testing.assert_close(pre(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())[0], pixels)


def test_image_processor_batch_convention():
    proc = NVILAImageProcessor((28, 56, 84), 28)
    images = [_image(97, 41), _image(30, 60, seed=1), _image(28, 28, seed=2)]
    out = proc(images, return_tensors="pt")
    plans = [plan_tiles(im.width, im.height, (28, 56, 84), 28) for im in images]
    assert out["num_tiles"] == [p.n_tiles for p in plans]
    assert out["block_sizes"] == [p.block_size for p in plans]
    expected = torch.cat([_official(im, p) for im, p in zip(images, plans, strict=True)])
    torch.testing.assert_close(out["pixel_values"], expected, atol=1e-6, rtol=0)
    single = proc(images[0])
    torch.testing.assert_close(single["pixel_values"], expected[: plans[0].n_tiles])


def test_image_processor_is_a_siglip_drop_in():
    transformers = pytest.importorskip("transformers")
    siglip = transformers.SiglipImageProcessor(size={"height": 56, "width": 56})
    ours = NVILAImageProcessor(tile=56, mode="single")
    images = [_image(97, 41), _image(200, 120, seed=3), _image(56, 56, seed=4)]
    got = ours(images, return_tensors="pt")
    assert isinstance(got, transformers.BatchFeature)
    want = siglip(images, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(got["pixel_values"], want, atol=1e-6, rtol=0)


def test_processor_errors():
    with pytest.raises(ValueError, match="mode: expected one of"):
        DynamicS2Preprocessor(mode="tiles")
    with pytest.raises(ValueError, match="max_tiles: expected at least"):
        DynamicS2Preprocessor((28, 84), 28, max_tiles=4)
    with pytest.raises(TypeError, match="image: expected a PIL image"):
        DynamicS2Preprocessor()("cat.jpg")
    with pytest.raises(ValueError, match=r"image: expected \(H, W, 3\)"):
        DynamicS2Preprocessor()(torch.zeros(5, 5, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="return_tensors"):
        NVILAImageProcessor()(_image(8, 8), return_tensors="np")
