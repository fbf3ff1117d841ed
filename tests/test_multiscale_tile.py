"""multiscale_tile: the reference and every backend against Pillow (Image.resize with
BICUBIC, then crop, the path of NVILA's official preprocessing), backends against the
reference (exact and fp32 modes, output dtypes), the batched variant, and errors."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import KERNEL_BACKENDS, SLOW_BACKENDS, TOL, backend_device
from PIL import Image

import nvila_kernels as nk
from nvila_kernels import reference, resample
from nvila_kernels.tiling import plan_lite, plan_single, plan_tiles

SIZES = [(1, 1), (13, 7), (300, 300), (448, 448), (449, 447), (1920, 1080), (1080, 1920), (4000, 1000)]  # (W, H)
SMALL_SIZES = [(1, 1), (13, 7), (60, 30), (30, 70), (97, 41)]  # (W, H), with tile 28: both pass orders
TINY = dict(scales=(28, 56, 84), tile=28)


def _image(W, H, content, seed=0):
    """(H, W, 3) uint8: uniform noise, or a smooth gradient with a little texture."""
    rng = np.random.default_rng(seed)
    if content == "random":
        return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    img = np.stack([127 + 120 * np.sin(x / 37 + c) * np.cos(y / 23 - c) for c in range(3)], axis=-1)
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).round().astype(np.uint8)


def _pillow_tiles(a: np.ndarray, plan) -> np.ndarray:
    """(n_tiles, 3, T, T) uint8 levels from Pillow: resize every scale, crop the tiles."""
    im, T, tiles = Image.fromarray(a), plan.tile, []
    for s in plan.scales:
        r = im.resize((s.width, s.height), Image.BICUBIC)
        for i in range(s.rows):
            for j in range(s.cols):
                tiles.append(np.asarray(r.crop((j * T, i * T, (j + 1) * T, (i + 1) * T))).transpose(2, 0, 1))
    return np.stack(tiles)


def _levels(out: torch.Tensor) -> np.ndarray:
    """uint8 levels of an output made with mean 0 and std 1 (out = level / 255)."""
    return (out.float().cpu() * 255).round().to(torch.int64).numpy()


def _agreement(got: np.ndarray, want: np.ndarray) -> tuple[float, int]:
    d = np.abs(got.astype(np.int64) - want.astype(np.int64))
    return float((d == 0).mean()), int(d.max())


def _assert_like_pillow(got, want):
    same, worst = _agreement(got, want)
    assert worst <= 1 and same >= 0.9999, f"identical {same:.6f}, max diff {worst}"


def test_coefficients_match_pillow_single_axis():
    """One axis at a time, against Pillow resizing only that axis (no rounding in between)."""
    rng = np.random.default_rng(0)
    for n_in, n_out in [(1, 5), (7, 3), (100, 28), (1080, 448), (1920, 1792), (13, 1344), (4000, 448)]:
        a = rng.integers(0, 256, (2, n_in, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(a).resize((n_out, 2), Image.BICUBIC))
        bounds, weights = resample.coeffs(n_in, n_out)
        assert bounds.shape == (n_out, 2) and weights.shape == (n_out, resample.taps(n_in, n_out))
        assert (bounds[:, 0] >= 0).all() and (bounds.sum(1) <= n_in).all()
        acc = np.full((2, n_out, 3), 1 << 21, dtype=np.int64)
        for k in range(weights.shape[1]):
            idx = np.minimum(bounds[:, 0] + k, n_in - 1)
            acc += a[:, idx].astype(np.int64) * weights[None, :, k, None]
        np.testing.assert_array_equal(np.clip(acc >> 22, 0, 255), want)


@pytest.mark.parametrize("content", ["random", "smooth"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_reference_and_cpu_match_pillow(size, content):
    """NVILA-8B's plan (448, 896, 1344; 12 tiles max) on the issue's sizes, exact mode."""
    W, H = size
    a = _image(W, H, content)
    plan = plan_tiles(W, H)
    want = _pillow_tiles(a, plan)
    img = torch.from_numpy(a)
    _assert_like_pillow(_levels(reference.multiscale_tile(img, plan, (0, 0, 0), (1, 1, 1))), want)
    if "cpu" in KERNEL_BACKENDS:
        _assert_like_pillow(_levels(nk.multiscale_tile(img, plan, (0, 0, 0), (1, 1, 1), backend="cpu")), want)


@pytest.mark.parametrize("size", SMALL_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_backend_matches_pillow_tiny_tiles(backend, size):
    W, H = size
    contents = ("random", "smooth")
    if backend in SLOW_BACKENDS:  # one image per size, alternating: the kernel's path is content-blind
        contents = contents[SMALL_SIZES.index(size) % 2 :][:1]
    for content in contents:
        a = _image(W, H, content, seed=W * H)
        plan = plan_tiles(W, H, **TINY)
        img = torch.from_numpy(a).to(backend_device(backend))
        got = nk.multiscale_tile(img, plan, (0, 0, 0), (1, 1, 1), backend=backend)
        _assert_like_pillow(_levels(got), _pillow_tiles(a, plan))


_PORTABLE_SCRIPT = """
import torch, nvila_kernels as nk
from nvila_kernels import reference
from nvila_kernels.tiling import plan_tiles
g = torch.Generator().manual_seed(0)
for W, H, kw in [(97, 41, dict(scales=(28, 56, 84), tile=28)), (30, 70, dict(scales=(28, 56, 84), tile=28)),
                 (1000, 700, {})]:
    img = torch.randint(0, 256, (H, W, 3), dtype=torch.uint8, generator=g)
    plan = plan_tiles(W, H, **kw)
    got = nk.multiscale_tile(img, plan, backend="cpu")
    assert torch.equal(got, reference.multiscale_tile(img, plan)), (W, H)
print("ok")
"""


@pytest.mark.slow  # a second pass over the sizes, in a subprocess
@pytest.mark.skipif("cpu" not in KERNEL_BACKENDS, reason="the CPU kernels are not built")
def test_cpu_portable_path_is_exact():
    """The CPU kernel without its AVX2 paths (NVILA_KERNELS_CPU_ISA=generic, read once
    per process: a subprocess) is bit-identical to the reference too."""
    env = {**os.environ, "NVILA_KERNELS_CPU_ISA": "generic"}
    cmd = [sys.executable, "-c", _PORTABLE_SCRIPT]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_both_pass_orders_are_exercised():
    """Pillow 13 runs the vertical pass first when the height loses more than twice as
    many pixels as the width; the sizes above cover both orders."""
    orders = {
        resample.vertical_first(W, H, s.width, s.height)
        for W, H in SMALL_SIZES
        for s in plan_tiles(W, H, **TINY).scales
    }
    assert orders == {True, False}
    assert resample.vertical_first(1080, 1920, 448, 448) and not resample.vertical_first(1920, 1080, 448, 448)


def _cases(backend, out_dtype=torch.float32):
    if backend in SLOW_BACKENDS:  # fp16/bf16 differ in the store only: one image
        sizes = [(13, 7), (30, 70)] if out_dtype == torch.float32 else [(30, 70)]
        return [(W, H, plan_tiles(W, H, **TINY)) for W, H in sizes]
    return [(W, H, plan_tiles(W, H)) for W, H in [(300, 300), (1080, 1920)]] + [(61, 29, plan_tiles(61, 29, **TINY))]


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "fp32"])
@pytest.mark.parametrize("out_dtype", list(TOL), ids=str)
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_matches_reference(backend, out_dtype, exact):
    device = backend_device(backend)
    atol, rtol = TOL[out_dtype]
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # CLIP's, not 0.5
    for W, H, plan in _cases(backend, out_dtype):
        img = torch.from_numpy(_image(W, H, "random", seed=W))
        got = nk.multiscale_tile(img.to(device), plan, mean, std, out_dtype, exact=exact, backend=backend)
        assert got.shape == (plan.n_tiles, 3, plan.tile, plan.tile) and got.dtype == out_dtype
        want = reference.multiscale_tile(img, plan, mean, std, out_dtype, exact)
        torch.testing.assert_close(got.cpu(), want, atol=atol, rtol=rtol)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_single_and_lite_plans(backend):
    """plan_single (one tile) and NVILA-Lite's plan (grid + thumbnail scale)."""
    device = backend_device(backend)
    T = 28 if backend in SLOW_BACKENDS else 448
    a = _image(203, 97, "smooth")
    for plan in (plan_single(203, 97, T), plan_lite(203, 97, T, max_tiles=6)):
        got = nk.multiscale_tile(torch.from_numpy(a).to(device), plan, (0, 0, 0), (1, 1, 1), backend=backend)
        _assert_like_pillow(_levels(got), _pillow_tiles(a, plan))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_channel_first_input_and_out_argument(backend):
    device = backend_device(backend)
    plan = plan_tiles(45, 33, **TINY)
    hwc = torch.from_numpy(_image(45, 33, "random")).to(device)
    want = nk.multiscale_tile(hwc, plan, backend=backend)
    out = torch.empty(plan.n_tiles, 3, 28, 28, device=device)
    assert nk.multiscale_tile(hwc.permute(2, 0, 1), plan, out=out, backend=backend) is out
    torch.testing.assert_close(out, want, atol=0, rtol=0)
    # default normalization: (v / 255 - 0.5) / 0.5 lies in [-1, 1]
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_batch_of_different_sizes(backend):
    device = backend_device(backend)
    sizes = [(13, 7), (30, 70), (64, 64)]
    images = [torch.from_numpy(_image(W, H, "random", seed=W)).to(device) for W, H in sizes]
    plans = [plan_tiles(W, H, **TINY) for W, H in sizes]
    tiles, blocks = nk.multiscale_tile_batch(images, plans, backend=backend)
    assert tiles.shape == (sum(p.n_tiles for p in plans), 3, 28, 28)
    assert blocks == [p.block_size for p in plans]
    t0, (atol, rtol) = 0, TOL[torch.float32]
    for im, p in zip(images, plans, strict=True):
        want = reference.multiscale_tile(im.cpu(), p)
        torch.testing.assert_close(tiles[t0 : t0 + p.n_tiles].cpu(), want, atol=atol, rtol=rtol)
        t0 += p.n_tiles


IMG = torch.zeros(7, 13, 3, dtype=torch.uint8)
PLAN = plan_tiles(13, 7, **TINY)


@pytest.mark.parametrize("backend", ["cpu", "emu"])
def test_raw_op_checks(backend):
    op = nk._ops.op("multiscale_tile", backend)
    xb, xw, yb, yw = resample.plan_coeff_tensors(13, 7, (28, 56, 84), (28, 56, 84))
    out = torch.empty(14, 3, 28, 28)
    args = ([1, 2, 3], [1, 2, 3], [False] * 3, xb, xw, yb, yw, [0.5] * 3, [0.5] * 3, True, out)
    op(IMG, *args)  # valid
    with pytest.raises(RuntimeError, match="image: expected a contiguous non-empty uint8"):
        op(IMG.float(), *args)
    with pytest.raises(RuntimeError, match=r"out: expected a contiguous tensor of shape \(5, 3"):
        op(IMG, [1, 2], [1, 2], [False] * 2, *args[3:])
    bad = yb.clone()
    bad[0, 1] = 100
    with pytest.raises(RuntimeError, match="ybounds: row 0"):
        op(IMG, *args[:5], bad, *args[6:])
    with pytest.raises(RuntimeError, match="xweights: expected a contiguous int32"):
        op(IMG, *args[:4], xw.float(), *args[5:])
