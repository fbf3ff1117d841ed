"""temporal_pool: every backend against the reference."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DTYPES, KERNEL_BACKENDS, SLOW_BACKENDS, TOL, backend_device

import nvila_kernels as nk
from nvila_kernels import reference

# (T, rest of the shape, group)
CASES = [
    ((8, 7), 8),
    ((8, 1), 1),
    ((16, 3, 5), 2),
    ((24, 123), 8),
    ((6, 4, 4, 16), 3),
    ((16,), 4),  # one value per frame
    ((8, 16, 16, 64), 8),  # NVILA-8B-Video layout (T, 16, 16, H), small H
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_matches_reference(backend, dtype):
    device = backend_device(backend)
    for shape, group in CASES:
        x = torch.randn(shape, device=device).to(dtype)
        got = nk.temporal_pool(x, group, backend=backend)
        atol, rtol = TOL[dtype]
        torch.testing.assert_close(got, reference.temporal_pool(x, group), atol=atol, rtol=rtol)
        assert got.shape == (shape[0] // group, *shape[1:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", [b for b in KERNEL_BACKENDS if b not in SLOW_BACKENDS])
def test_nvila_video_shape(backend, dtype):
    """64 frames of 16x16 projector tokens of NVILA-8B (hidden 3584), groups of 8."""
    device = backend_device(backend)
    x = torch.randn(64, 16, 16, 3584, device=device).to(dtype)
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(
        nk.temporal_pool(x, 8, backend=backend), reference.temporal_pool(x, 8), atol=atol, rtol=rtol
    )


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_noncontiguous_inputs(backend):
    device = backend_device(backend)
    base = torch.randn(16, 6, 10, device=device)
    views = {
        "frame-stride": base[::2],  # every other frame: frame stride doubled
        "sliced-frames": base[:, 1:5],  # each frame contiguous, frame stride larger
        "strided-inside-frame": base[:, :, ::2],  # needs a copy
        "transposed": base.transpose(1, 2),
    }
    for name, x in views.items():
        got = nk.temporal_pool(x, 4, backend=backend)
        torch.testing.assert_close(got, reference.temporal_pool(x, 4), msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_every_16bit_value(backend, dtype):
    """All 65536 bit patterns of the 16-bit type: group=1 must reproduce them
    (conversion round trip, NaN stays NaN, inf, subnormals), and group=2 means of
    neighbours exercise fp32 -> 16-bit rounding including subnormal results."""
    device = backend_device(backend)
    bits = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    values = bits.view(dtype)
    if backend == "triton" and dtype == torch.bfloat16 and device.type == "cpu":
        # The Triton interpreter (numpy) mangles bf16 values in the fp32-subnormal
        # range (|x| < 1.2e-38: some flush to 0, some become 2^-127); that is the
        # interpreter's bf16 emulation, not the kernel. On a GPU all values run.
        values = values[(values.float().abs() >= torch.finfo(torch.float32).tiny) | (values == 0) | values.isnan()]
        values = values[: values.numel() // 2 * 2]
    x = values.to(device).reshape(2, -1)
    for group, frames in ((1, x), (2, x)):
        got = nk.temporal_pool(frames, group, backend=backend).cpu()
        expected = reference.temporal_pool(frames.cpu(), group)
        nan = torch.isnan(expected)
        assert torch.equal(torch.isnan(got), nan)
        same = got.view(torch.int16) == expected.view(torch.int16)
        assert bool(same[~nan].all()), f"{int((~same & ~nan).sum())} values differ"


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_out_argument(backend):
    device = backend_device(backend)
    x = torch.randn(16, 5, 3, device=device)
    out = torch.empty(2, 5, 3, device=device)
    assert nk.temporal_pool(x, 8, out=out, backend=backend) is out
    torch.testing.assert_close(out, reference.temporal_pool(x, 8))


@pytest.mark.slow  # this file's cpu tests again, in a subprocess
@pytest.mark.skipif("cpu" not in KERNEL_BACKENDS, reason="no CPU kernels in this build")
def test_cpu_portable_path():
    """The CPU kernel's portable path (NVILA_KERNELS_CPU_ISA=generic, as on a CPU without
    AVX2), in a fresh process: this file's cpu tests, the streamed NVILA-8B-Video shape included."""
    env = {**os.environ, "NVILA_KERNELS_CPU_ISA": "generic"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "cpu and not portable"]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]
