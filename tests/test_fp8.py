"""FP8 quantize and GEMM: every backend against the reference (and torch._scaled_mm),
quantization policy (saturation, inf, NaN, zero), accuracy as SQNR, errors."""

import contextlib
import itertools
import math

import pytest
import torch
from conftest import KERNEL_BACKENDS, SLOW_BACKENDS, assert_fp8_gemm_close, backend_device

import nvila_kernels as nk
from nvila_kernels import backends, reference

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2
FORMATS = [E4M3, E5M2]
IN_DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def sqnr_db(ref: torch.Tensor, x: torch.Tensor) -> float:
    ref, x = ref.double(), x.double()
    return 10 * math.log10(ref.pow(2).sum().item() / max((ref - x).pow(2).sum().item(), 1e-300))


def _codes(q):
    return q.view(torch.uint8).cpu()


def _special_values(n, dtype, device):
    x = torch.randn(n) * 3
    x[:8] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-30, -1e-7, 5e4])
    return x.to(dtype).to(device)


# ---- quantize ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("dtype", IN_DTYPES, ids=str)
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_quantize_bit_exact(backend, dtype, fmt):
    device = backend_device(backend)
    for n, static in itertools.product((1, 7, 1000, 4099), (False, True)):
        x = _special_values(n, dtype, device) if n >= 8 else torch.randn(n, device=device).to(dtype)
        scale = torch.tensor(0.37, device=device) if static else None
        q, s = nk.fp8_quantize(x, scale, fmt, backend=backend)
        qr, sr = reference.fp8_quantize(x, scale, fmt)
        assert q.dtype == fmt and q.shape == x.shape and s.shape == () and s.dtype == torch.float32
        assert torch.equal(_codes(q), _codes(qr)), f"n={n} static={static}"
        assert torch.equal(s.cpu(), sr.cpu())


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_quantize_policy(backend):
    device = backend_device(backend)
    fmax = 448.0
    x = torch.tensor([1.0, -2.0, 1e6, -1e6, float("inf"), -float("inf"), float("nan"), 0.5], device=device)
    q, s = nk.fp8_quantize(x, torch.tensor(1.0, device=device), backend=backend)
    expected = [1.0, -2.0, fmax, -fmax, fmax, -fmax, float("nan"), 0.5]
    torch.testing.assert_close(q.float().cpu(), torch.tensor(expected), equal_nan=True)
    # dynamic: NaN and +-inf do not enter the amax; the largest finite |x| maps to fmax
    q, s = nk.fp8_quantize(x, backend=backend)
    assert s.item() == pytest.approx(1e6 / fmax)
    assert q.float()[2].item() == fmax and math.isnan(q.float()[6].item())
    # all zeros: a tiny finite scale, zeros out
    q, s = nk.fp8_quantize(torch.zeros(100, device=device), backend=backend)
    assert s.item() == pytest.approx(1e-12 / fmax) and not q.float().any()


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
@pytest.mark.parametrize("magnitude", [1e-30, 1e-9, 1.0, 1e6, 1e30])
def test_quantize_round_trip(backend, magnitude):
    device = backend_device(backend)
    x = torch.randn(4096, device=device) * magnitude
    if magnitude < 1e-12:  # below the documented amax floor: everything quantizes to 0
        q, s = nk.fp8_quantize(x, backend=backend)
        assert s.item() == pytest.approx(1e-12 / 448) and not q.float().any()
        return
    q, s = nk.fp8_quantize(x, backend=backend)
    assert sqnr_db(x.cpu(), (q.float() * s).cpu()) >= 25  # E4M3: ~31 dB on Gaussian data
    q, s = nk.fp8_quantize(x, fp8_dtype=E5M2, backend=backend)
    assert sqnr_db(x.cpu(), (q.float() * s).cpu()) >= 18  # 2 mantissa bits


# ---- GEMM -------------------------------------------------------------------------


def _gemm_cases(backend, out_dtype, with_bias):
    if backend in SLOW_BACKENDS:  # emulated: small shapes, every path (M=1, tails, K % 16)
        if out_dtype != torch.float32 or not with_bias:
            # the other epilogues (output dtype, no bias) at M=1, an M tail and K % 16 != 0;
            # the tiling paths are the same instances' and swept in fp32 with bias
            return [(1, 48, 80), (2, 100, 36), (33, 48, 80)]
        return [(1, 48, 80), (2, 100, 36), (7, 64, 128), (33, 48, 80), (128, 16, 32), (70, 130, 200)]
    cases = [(M, N, K) for M in (1, 2, 7, 33, 128, 1024) for N, K in ((48, 80), (100, 36))]
    cases += [(M, 3584, 3584) for M in (1, 2, 7, 33)] + [(1, 18944, 3584), (128, 512, 3584)]
    return cases


def _quantized_operands(M, N, K, device):
    a, b = torch.randn(M, K, device=device), torch.randn(N, K, device=device) * 0.05
    qa, sa = reference.fp8_quantize(a)
    qb, sb = reference.fp8_quantize(b)
    return a, b, qa, sa, qb, sb


def _check_gemm_matches_reference(backend, out_dtype, with_bias):
    device = backend_device(backend)
    for M, N, K in _gemm_cases(backend, out_dtype, with_bias):
        a, b, qa, sa, qb, sb = _quantized_operands(M, N, K, device)
        bias = torch.randn(N, device=device) if with_bias else None
        got = nk.fp8_gemm(qa, qb, sa, sb, bias, out_dtype, backend=backend)
        expected = reference.fp8_gemm(qa, qb, sa, sb, bias, out_dtype)
        assert got.shape == (M, N) and got.dtype == out_dtype
        assert_fp8_gemm_close(got, expected, K, out_dtype, what=str((M, N, K)))
        # accuracy against the unquantized fp32 product
        exact = a @ b.t() + (bias if bias is not None else 0)
        assert sqnr_db(exact.cpu(), got.float().cpu()) >= 25, (M, N, K)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("out_dtype", IN_DTYPES, ids=str)
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_gemm_matches_reference(backend, out_dtype, with_bias):
    _check_gemm_matches_reference(backend, out_dtype, with_bias)


@contextlib.contextmanager
def emulated_compute_capability(cc):
    """The CUDA emulator reports compute capability `cc` (major * 10 + minor) inside."""
    ext = backends.state["ext"]
    previous = ext.set_emulated_compute_capability(cc)
    try:
        yield ext
    finally:
        ext.set_emulated_compute_capability(previous)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("out_dtype", IN_DTYPES, ids=str)
def test_gemm_wgmma_kernel_matches_reference(out_dtype, with_bias):
    """On compute capability 9.0 the CUDA launcher takes the sm_90a kernel (wgmma.mma_async
    on swizzled shared memory); the emulator runs it when it reports 9.0, its model of
    wgmma reading the operands through the shared-memory descriptors as the hardware does."""
    with emulated_compute_capability(90) as ext:
        before = ext.emulated_wgmma_count()
        _check_gemm_matches_reference("emu", out_dtype, with_bias)
        assert ext.emulated_wgmma_count() > before, "the wgmma kernel did not run"


def test_gemm_mma_sync_kernel_below_sm90():
    _, _, qa, sa, qb, sb = _quantized_operands(7, 64, 128, "cpu")
    with emulated_compute_capability(89) as ext:
        before = ext.emulated_wgmma_count()
        got = nk.fp8_gemm(qa, qb, sa, sb, None, torch.float32, backend="emu")
        assert ext.emulated_wgmma_count() == before, "sm_89 ran the wgmma kernel"
    torch.testing.assert_close(got, reference.fp8_gemm(qa, qb, sa, sb, None, torch.float32), atol=1e-4, rtol=1e-5)


def _triton_tile_candidates():
    if "triton" not in KERNEL_BACKENDS:
        return []
    from nvila_kernels.triton import fp8 as tfp8

    return [(key, tile) for key, tiles in tfp8.GEMM_TILES.items() for tile in tiles]


@pytest.mark.skipif("triton" not in KERNEL_BACKENDS, reason="triton is not installed")
@pytest.mark.parametrize("key,tile", _triton_tile_candidates(), ids=str)
def test_triton_gemm_every_autotune_candidate(key, tile):
    """Each tile shape the Triton autotuner may pick computes the same product (M, N, K
    tails inside and across tiles), so autotuning can only change the speed."""
    from nvila_kernels.triton import fp8 as tfp8

    device = backend_device("triton")
    bm, bn, bk, warps, stages = tile
    for M, N, K in [(1, 70, 300), (bm + 3, bn + 5, bk + 16)] if key[0] == "prefill" else [(1, 70, 300), (5, 33, 48)]:
        a, b, qa, sa, qb, sb = _quantized_operands(M, N, K, device)
        bias = torch.randn(N, device=device)
        out = torch.empty(M, N, device=device)
        grid = (triton_cdiv(M, bm) * triton_cdiv(N, bn),)
        tfp8._fp8_gemm_kernel[grid](
            qa, qb, sa, sb, bias, out, M, N, K, 1, HAS_BIAS=True,
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8, num_warps=warps, num_stages=stages,
        )  # fmt: skip
        expected = reference.fp8_gemm(qa, qb, sa, sb, bias, torch.float32)
        atol = 1e-6 * math.sqrt(K) * expected.abs().max().item()
        torch.testing.assert_close(out, expected, atol=atol, rtol=1e-5)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


@pytest.mark.parametrize("backend", [b for b in KERNEL_BACKENDS if backend_device(b).type == "cpu"])
def test_gemm_matches_torch_scaled_mm(backend):
    """Same semantics as torch._scaled_mm(a, b.t(), scale_a, scale_b, bias, out_dtype) per-tensor."""
    for M, N, K in [(1, 48, 80), (7, 32, 64), (33, 16, 48)]:
        _, _, qa, sa, qb, sb = _quantized_operands(M, N, K, "cpu")
        bias = torch.randn(N).bfloat16()
        expected = torch._scaled_mm(qa, qb.t(), sa, sb, bias=bias, out_dtype=torch.bfloat16)
        got = nk.fp8_gemm(qa, qb, sa, sb, bias, torch.bfloat16, backend=backend)
        eps = torch.finfo(torch.bfloat16).eps
        torch.testing.assert_close(got.float(), expected.float(), atol=2 * eps * expected.abs().max().item(), rtol=eps)
