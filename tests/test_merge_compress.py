"""merge_compress: every backend against the reference (the literal composition
multiscale_merge -> blocks -> spatial_compress -> re-grid), the reference against
independent formulations of NVILA's token order, and argument errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DTYPES, KERNEL_BACKENDS, SLOW_BACKENDS, TOL, backend_device
from torch._subclasses.fake_tensor import FakeTensorMode

import nvila_kernels as nk
from nvila_kernels import reference
from nvila_kernels.tiling import plan_tiles

# 3x3, 4x3, 2x5 and 10x1 largest grids; 10x1 has one tile row, so the 2x2 scale is
# downsampled along y (windows of 2 source rows)
SIZES = [(1024, 1024), (1920, 1080), (1080, 1920), (4000, 400)]
PLANS = [plan_tiles(W, H) for W, H in SIZES]
PLAN_IDS = [f"{W}x{H}" for W, H in SIZES]
FAST_BACKENDS = [b for b in KERNEL_BACKENDS if b not in SLOW_BACKENDS]


def _cases(backend, plan, dtype=torch.float32):
    """(h, C) per backend: tiny tiles (h = w = 2: one output token per block at k=2,3),
    odd sizes, and NVILA's 32x32 tiles on the fast backends. The emulated backends
    (milliseconds per output token) get the odd size on the 4x3 plan only, and no 3x3
    plan: its area windows (3/2 and 3 source cells) are among the 4x3 plan's. In
    fp16/bf16 they run the tiny tiles of the 4x3 plan only: the index paths are
    dtype-independent and swept in fp32; the dtype's loads, rounding of the merged
    values and stores are the same at every size."""
    if backend in SLOW_BACKENDS:
        if dtype != torch.float32:
            return [(2, 3)] if plan is PLANS[1] else []
        return [(2, 3), (4, 5)] if plan is PLANS[1] else [] if plan is PLANS[0] else [(2, 3)]
    return [(2, 3), (4, 5), (32, 3)]


def _features(plan, h, w, C, dtype, device):
    return (torch.randn(plan.n_tiles, h * w, C) * 2 + 0.5).to(dtype).to(device)


def _ln(D, dtype, device):
    return torch.randn(D).to(dtype).to(device), torch.randn(D).to(dtype).to(device)


def _tokens(plan, h, w, k):
    return plan.scales[-1].rows * -(-h // k) * plan.scales[-1].cols * -(-w // k)


@pytest.mark.parametrize("ln", [True, False], ids=["ln", "noln"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize(
    "backend, plan, dtype",
    [
        pytest.param(b, p, dt, id=f"{b}-{i}-{dt}")
        for b in KERNEL_BACKENDS
        for p, i in zip(PLANS, PLAN_IDS, strict=True)
        for dt in DTYPES
        if _cases(b, p, dt)
    ],
)
def test_matches_reference(backend, plan, dtype, k, ln):
    device = backend_device(backend)
    S = len(plan.scales)
    for h, C in _cases(backend, plan, dtype):
        x = _features(plan, h, h, C, dtype, device)
        D = k * k * S * C
        w, b = _ln(D, dtype, device) if ln else (None, None)
        got = nk.merge_compress(x, plan, k, w, b, h=h, w=h, backend=backend)
        assert got.shape == (_tokens(plan, h, h, k), D) and got.dtype == dtype and got.device == device
        expected = reference.merge_compress(x, plan, k, w, b, h=h, w=h)
        if ln:
            atol, rtol = TOL[dtype]
            torch.testing.assert_close(got, expected, atol=atol, rtol=rtol)
        else:  # the merged values (area averages rounded to the dtype), rearranged
            torch.testing.assert_close(got, expected, atol=0, rtol=2e-6 if dtype == torch.float32 else 0)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_nvila_8b_shape(backend, dtype):
    """NVILA-8B: 17 tiles of 32x32x1152 (4x3 grid), k=2, LayerNorm over 13824 channels."""
    device = backend_device(backend)
    plan = plan_tiles(1920, 1080)
    x = torch.randn(plan.n_tiles, 1024, 1152).to(dtype).to(device)
    w, b = _ln(4 * 3 * 1152, dtype, device)
    got = nk.merge_compress(x, plan, 2, w, b, backend=backend)
    assert got.shape == (3072, 13824)
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(got, reference.merge_compress(x, plan, 2, w, b), atol=atol, rtol=rtol)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_large_channels_k3(backend):
    """C = 1152 at k=3 with per-block padding (h = w = 4 -> 6), fp16."""
    device = backend_device(backend)
    plan = plan_tiles(1080, 1920)
    x = _features(plan, 4, 4, 1152, torch.float16, device)
    w, b = _ln(9 * 3 * 1152, torch.float16, device)
    got = nk.merge_compress(x, plan, 3, w, b, h=4, w=4, backend=backend)
    atol, rtol = TOL[torch.float16]
    torch.testing.assert_close(got, reference.merge_compress(x, plan, 3, w, b, h=4, w=4), atol=atol, rtol=rtol)


@pytest.mark.parametrize("ln", [True, False], ids=["ln", "noln"])
@pytest.mark.parametrize(
    "C, dtype",
    [(16, torch.float32), (16, torch.bfloat16), (1032, torch.float32)],
    ids=["vec-f32", "vec-bf16", "row-over-48KiB"],
)
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_kernel_variants(backend, C, dtype, ln):
    """The CUDA kernel's 16-byte path (C a multiple of 16 / sizeof), and with
    LayerNorm a row of 4*3*1032 fp32 values, more than the emulator's 48 KiB of shared
    memory: the uncached variant. 12 output tokens."""
    device = backend_device(backend)
    plan = plan_tiles(1920, 1080)
    x = _features(plan, 2, 2, C, dtype, device)
    w, b = _ln(12 * C, dtype, device) if ln else (None, None)
    got = nk.merge_compress(x, plan, 2, w, b, h=2, w=2, backend=backend)
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(got, reference.merge_compress(x, plan, 2, w, b, h=2, w=2), atol=atol, rtol=rtol)


# ---- the token order, from NVILA.md, checked without the reference's re-grid -----


def _naive(features, plan, k, h, w):
    """merge_compress without LayerNorm, one output element at a time from NVILA.md
    section 4: token t = (bi*Ho + I)*(cols*Wo) + bj*Wo + J; channel slot*(S*C) + m
    holds merged channel m at (bi*h + k*I + dr, bj*w + k*J + dc), or 0 past the block."""
    merged = reference.multiscale_merge(features, plan, h, w)  # (S*C, rows*h, cols*w)
    SC = merged.shape[0]
    rows, cols = plan.scales[-1].rows, plan.scales[-1].cols
    Ho, Wo = -(-h // k), -(-w // k)
    out = torch.zeros(rows * Ho * cols * Wo, k * k * SC, dtype=features.dtype)
    for gy in range(rows * Ho):
        for gx in range(cols * Wo):
            t = gy * cols * Wo + gx
            bi, I = divmod(gy, Ho)  # noqa: E741
            bj, J = divmod(gx, Wo)
            for dr in range(k):
                for dc in range(k):
                    y, x = k * I + dr, k * J + dc
                    if y < h and x < w:
                        slot = dr * k + dc
                        out[t, slot * SC : (slot + 1) * SC] = merged[:, bi * h + y, bj * w + x]
    return out


@pytest.mark.parametrize("k, h, w", [(2, 2, 2), (3, 4, 5), (3, 2, 2), (2, 3, 4)])
@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_token_order_from_nvila_md(backend, k, h, w):
    """Per-block padding (k=3 on 4x5 blocks: 4 -> 6 rows, 5 -> 6 columns) and the
    block-grid order, element by element; also h != w."""
    device = backend_device(backend)
    plan = plan_tiles(1920, 1080)
    x = _features(plan, h, w, 2, torch.float32, device)
    got = nk.merge_compress(x, plan, k, h=h, w=w, backend=backend).cpu()
    torch.testing.assert_close(got, _naive(x.cpu(), plan, k, h, w), atol=0, rtol=0)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_k2_on_even_blocks_is_whole_image_space_to_depth(backend):
    """NVILA.md: with k=2 on even blocks the per-block grids tile the whole-image grid,
    so the result is spatial_compress of the whole merged map, flattened."""
    device = backend_device(backend)
    plan = plan_tiles(1024, 1024)
    x = _features(plan, 4, 4, 3, torch.float32, device)
    w, b = _ln(4 * 3 * 3, torch.float32, device)
    merged = reference.multiscale_merge(x, plan, 4, 4).permute(1, 2, 0)[None]  # (1, 12, 12, 9)
    expected = reference.spatial_compress(merged, 2, w, b).reshape(36, 36)
    got = nk.merge_compress(x, plan, 2, w, b, h=4, w=4, backend=backend)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_out_argument(backend):
    device = backend_device(backend)
    plan = plan_tiles(4000, 1000)  # 6x2
    x = _features(plan, 2, 2, 3, torch.bfloat16, device)
    w, b = _ln(36, torch.float32, device)  # fp32 LayerNorm weights with bf16 features
    out = torch.empty(12, 36, dtype=torch.bfloat16, device=device)
    assert nk.merge_compress(x, plan, 2, w, b, h=2, w=2, out=out, backend=backend) is out
    atol, rtol = TOL[torch.bfloat16]
    torch.testing.assert_close(out, reference.merge_compress(x, plan, 2, w, b, h=2, w=2), atol=atol, rtol=rtol)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_noncontiguous_features_and_weight_only(backend):
    device = backend_device(backend)
    plan = plan_tiles(1024, 1024)
    x = torch.randn(plan.n_tiles, 4, 8, device=device)[:, :, ::2]  # (14, 4, 4), channel stride 2
    wt = torch.randn(4 * 3 * 4, device=device)
    got = nk.merge_compress(x, plan, 2, wt, h=2, w=2, backend=backend)
    torch.testing.assert_close(got, reference.merge_compress(x, plan, 2, wt, h=2, w=2), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("ln", [True, False], ids=["ln", "noln"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_large_output_at_odd_offset(backend, dtype, ln):
    """An output over 8 MiB (the CPU kernel streams those) that starts one element past
    an aligned address, so every row has an unaligned head and tail."""
    device = backend_device(backend)
    plan = plan_tiles(1024, 1024)  # 3x3 blocks of 16x16 tokens: 2304 tokens
    C = 152
    D = 4 * 3 * C
    x = _features(plan, 32, 32, C, dtype, device)
    w, b = _ln(D, dtype, device) if ln else (None, None)
    out = torch.empty(2304 * D + 1, dtype=dtype, device=device)[1:].view(2304, D)
    assert out.numel() * out.element_size() > 8 << 20
    nk.merge_compress(x, plan, 2, w, b, out=out, backend=backend)
    expected = reference.merge_compress(x, plan, 2, w, b)
    atol, rtol = TOL[dtype] if ln else (0, 2e-6 if dtype == torch.float32 else 0)
    torch.testing.assert_close(out, expected, atol=atol, rtol=rtol)


@pytest.mark.slow  # this file's cpu tests again, in a subprocess
@pytest.mark.skipif("cpu" not in KERNEL_BACKENDS, reason="no CPU kernels in this build")
def test_cpu_portable_path():
    """The CPU kernel's portable path (NVILA_KERNELS_CPU_ISA=generic, as on a CPU
    without AVX2), in a fresh process: this file's cpu tests on the 1920x1080 plan
    (area averages of 2 source rows) and on large, oddly placed outputs."""
    env = {**os.environ, "NVILA_KERNELS_CPU_ISA": "generic"}
    select = "cpu and (1920x1080 or nvila_8b or odd_offset) and not portable"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", select]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("backend", ["cpu", "emu"])
def test_raw_op_checks(backend):
    op = nk._ops.op("merge_compress", backend)
    x = torch.randn(14, 4, 3)
    with pytest.raises(RuntimeError, match="features: expected shape"):
        op(torch.randn(13, 4, 3), [1, 2, 3], [1, 2, 3], 2, 2, 2, None, None, 1e-5, torch.empty(9, 36))
    with pytest.raises(RuntimeError, match="k: expected k >= 1"):
        op(x, [1, 2, 3], [1, 2, 3], 2, 2, 0, None, None, 1e-5, torch.empty(9, 36))
    with pytest.raises(RuntimeError, match=r"out: expected a contiguous tensor of shape \(9, 36\)"):
        op(x, [1, 2, 3], [1, 2, 3], 2, 2, 2, None, None, 1e-5, torch.empty(9, 35))
    with pytest.raises(RuntimeError, match="ln_weight: expected a contiguous float32 tensor"):
        op(x, [1, 2, 3], [1, 2, 3], 2, 2, 2, torch.ones(36).half(), None, 1e-5, torch.empty(9, 36))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_fake_tensor_shapes(backend):
    with FakeTensorMode():
        plan = plan_tiles(4000, 1000)  # 6x2
        x = torch.empty(plan.n_tiles, 1024, 1152, dtype=torch.bfloat16, device=backend_device(backend))
        w = torch.empty(4 * 3456, device=x.device)
        assert nk.merge_compress(x, plan, 2, w, w, backend=backend).shape == (3072, 13824)
        y = nk.merge_compress(x, plan, 3, backend=backend)
        assert y.shape == (11 * 2 * 11 * 6, 9 * 3456) and y.dtype == torch.bfloat16


@pytest.mark.parametrize("backend", [b for b in KERNEL_BACKENDS if backend_device(b).type == "cpu"] + [None])
def test_torch_compile_fullgraph(backend):
    plan = plan_tiles(1920, 1080)

    def f(x, w, b):
        return nk.merge_compress(x * 2, plan, 2, w, b, h=2, w=2, backend=backend) + 1

    x, w, b = torch.randn(plan.n_tiles, 4, 3), torch.randn(36), torch.randn(36)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    expected = reference.merge_compress(x * 2, plan, 2, w, b, h=2, w=2) + 1
    torch.testing.assert_close(compiled(x, w, b), expected, atol=2e-5, rtol=2e-5)
