"""Property-based tests (hypothesis): random shapes, dtypes, strides and values for
every op on every backend present, each case compared with the reference.

Shapes include 1-element, prime and (on the fast backends) very wide dimensions;
inputs are contiguous or strided views; values span tiny (denormal) to huge
magnitudes, and NaN / inf for the FP8 quantizer. Empty inputs must be refused with
the same ValueError on every backend. Backends emulated on the CPU (emu, Triton's
interpreter) get fewer and smaller cases.

CI runs a fixed, derandomized set (NVILA_FUZZ_EXAMPLES examples per test and backend,
default 25); a longer random search: NVILA_FUZZ_EXAMPLES=2000 NVILA_FUZZ_RANDOM=1.
"""

from __future__ import annotations

import os

import pytest
import torch
from conftest import KERNEL_BACKENDS, SLOW_BACKENDS, TOL, backend_device
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nvila_kernels as nk
from nvila_kernels import reference
from nvila_kernels.tiling import plan_lite, plan_single, plan_tiles

EXAMPLES = int(os.environ.get("NVILA_FUZZ_EXAMPLES", "25"))
RANDOM = os.environ.get("NVILA_FUZZ_RANDOM") == "1"
BACKENDS = KERNEL_BACKENDS + ["reference"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def fuzz(backend: str):
    """hypothesis settings for one backend: fewer examples on the emulated ones (milliseconds
    per GPU thread; the same kernels meet the shapes of the per-op tests there too)."""
    n = max(2, EXAMPLES // 8) if backend in SLOW_BACKENDS else EXAMPLES
    return settings(
        max_examples=n,
        derandomize=not RANDOM,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _values(draw, shape, dtype) -> torch.Tensor:
    """Random values at a random magnitude (1e-30 .. 1e4, i.e. through the fp32 denormals)."""
    seed = draw(st.integers(0, 2**31 - 1))
    exp = draw(st.sampled_from([-30, -6, 0, 2, 4]))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 10.0**exp
    return x.to(dtype)


def _maybe_strided(draw, x: torch.Tensor) -> torch.Tensor:
    """x itself, or a non-contiguous view holding the same values."""
    kind = draw(st.sampled_from(["contiguous", "padded", "transposed"]))
    if kind == "padded":  # every row of the last dim padded: stride(-2) > size(-1)
        big = torch.zeros(*x.shape[:-1], x.shape[-1] + 3, dtype=x.dtype)
        big[..., : x.shape[-1]] = x
        return big[..., : x.shape[-1]]
    if kind == "transposed" and x.dim() >= 2:  # column-major storage of the last two dims
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    return x


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device)


def _close(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> None:
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(got.float().cpu(), expected.float().cpu(), atol=atol * scale, rtol=rtol, equal_nan=True)


# ---- spatial_compress ----------------------------------------------------------------


@st.composite
def spatial_cases(draw, slow: bool):
    hmax, cs = (7, [1, 3, 16]) if slow else (13, [1, 2, 3, 7, 16, 33, 123, 769, 3456])
    B = draw(st.integers(1, 2))
    H, W = draw(st.integers(1, hmax)), draw(st.integers(1, hmax))
    C = draw(st.sampled_from(cs))
    k = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(DTYPES))
    x = _maybe_strided(draw, _values(draw, (B, H, W, C), dtype))
    ln = draw(st.booleans())
    D = k * k * C
    w = _values(draw, (D,), dtype) if ln else None
    b = _values(draw, (D,), dtype) if ln and draw(st.booleans()) else None
    return x, k, w, b


@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_spatial_compress(backend):
    device = backend_device(backend)

    @fuzz(backend)
    @given(spatial_cases(slow=backend in SLOW_BACKENDS))
    def check(case):
        x, k, w, b = case
        got = nk.spatial_compress(x.to(device), k, _to(w, device), _to(b, device), backend=backend)
        expected = reference.spatial_compress(x, k, w, b)
        # LayerNorm output is O(|weight| + |bias|); without LN the values are copied exactly
        scale = 1.0 if w is None else float(w.float().abs().max() + (0 if b is None else b.float().abs().max()))
        _close(got, expected, x.dtype, max(scale, 1.0))

    check()


# ---- temporal_pool ---------------------------------------------------------------------


@st.composite
def pool_cases(draw, slow: bool):
    group = draw(st.integers(1, 8))
    T = group * draw(st.integers(1, 2 if slow else 4))
    dims = draw(st.lists(st.integers(1, 5 if slow else 17), min_size=0, max_size=3))
    if not slow and draw(st.booleans()):
        dims = [*dims, draw(st.sampled_from([1021, 3584]))]  # prime / very wide rows
    dtype = draw(st.sampled_from(DTYPES))
    x = _values(draw, (T, *dims), dtype)
    return (_maybe_strided(draw, x) if x.dim() >= 2 else x), group


@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_temporal_pool(backend):
    device = backend_device(backend)

    @fuzz(backend)
    @given(pool_cases(slow=backend in SLOW_BACKENDS))
    def check(case):
        x, group = case
        got = nk.temporal_pool(x.to(device), group, backend=backend)
        expected = reference.temporal_pool(x, group)
        _close(got, expected, x.dtype, float(x.float().abs().max()) + 1e-30)

    check()


# ---- fp8_quantize -------------------------------------------------------------------------

FP8 = [torch.float8_e4m3fn, torch.float8_e5m2]


@st.composite
def quantize_cases(draw, slow: bool):
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(1, 300 if slow else 5000))
    x = _values(draw, (n,), dtype)
    specials = draw(
        st.lists(
            st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-40, -1e-45, 6e4, -1e38]),
            max_size=min(n, 6),
        )
    )
    idx = draw(st.permutations(range(n)))[: len(specials)]
    x[list(idx)] = torch.tensor(specials, dtype=torch.float32).to(dtype)
    shape = draw(st.sampled_from([(n,), (1, n)] + ([(n // 2, 2)] if n % 2 == 0 else [])))
    static = draw(st.sampled_from([None, 1e-3, 0.37, 50.0]))
    return x.reshape(shape), static, draw(st.sampled_from(FP8))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_fp8_quantize(backend):
    device = backend_device(backend)

    @fuzz(backend)
    @given(quantize_cases(slow=backend in SLOW_BACKENDS))
    def check(case):
        x, static, fmt = case
        scale = None if static is None else torch.tensor(static)
        q, s = nk.fp8_quantize(x.to(device), None if scale is None else scale.to(device), fmt, backend=backend)
        qr, sr = reference.fp8_quantize(x, scale, fmt)
        assert torch.equal(q.cpu().view(torch.uint8), qr.view(torch.uint8))  # bit-exact, NaN codes included
        assert torch.equal(s.cpu(), sr)

    check()


# ---- fp8_gemm --------------------------------------------------------------------------------


@st.composite
def gemm_cases(draw, slow: bool):
    M = draw(st.integers(1, 20 if slow else 70))
    N = draw(st.integers(1, 40 if slow else 300))
    K = draw(st.integers(1, 64 if slow else 700))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g) * 0.1
    qa, sa = reference.fp8_quantize(a)
    qb, sb = reference.fp8_quantize(b)
    bias = torch.randn(N, generator=g).to(draw(st.sampled_from(DTYPES))) if draw(st.booleans()) else None
    return qa, qb, sa, sb, bias, draw(st.sampled_from(DTYPES))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_fp8_gemm(backend):
    device = backend_device(backend)

    @fuzz(backend)
    @given(gemm_cases(slow=backend in SLOW_BACKENDS))
    def check(case):
        qa, qb, sa, sb, bias, out_dtype = case
        args = (_to(t, device) for t in (qa, qb, sa, sb, bias))
        got = nk.fp8_gemm(*args, out_dtype, backend=backend)
        expected = reference.fp8_gemm(qa, qb, sa, sb, bias, out_dtype)
        scale = float(expected.float().abs().max()) + 1e-30
        eps = 1e-6 * qa.shape[1] ** 0.5 if out_dtype == torch.float32 else torch.finfo(out_dtype).eps
        torch.testing.assert_close(got.float().cpu(), expected.float(), atol=eps * scale, rtol=eps)

    check()


# ---- multiscale_merge ----------------------------------------------------------------------------


@st.composite
def merge_cases(draw, slow: bool):
    tile = draw(st.sampled_from([4, 8]))
    if draw(st.booleans()):
        W, H = draw(st.integers(1, 300)), draw(st.integers(1, 300))
        scales = draw(st.sampled_from([(tile, 2 * tile, 3 * tile), (tile, 2 * tile), (tile,)]))
        plan = plan_tiles(W, H, scales, tile, max_tiles=max(12, (scales[-1] // scales[0]) ** 2))
    else:
        plan = plan_single(draw(st.integers(1, 50)), draw(st.integers(1, 50)), tile)
    h = w = draw(st.integers(1, 3 if slow else 6))
    C = draw(st.sampled_from([1, 3, 5] if slow else [1, 3, 64, 257]))
    dtype = draw(st.sampled_from(DTYPES))
    return _values(draw, (plan.n_tiles, h * w, C), dtype), plan, h, w


@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_multiscale_merge(backend):
    device = backend_device(backend)

    @fuzz(backend)
    @given(merge_cases(slow=backend in SLOW_BACKENDS))
    def check(case):
        f, plan, h, w = case
        got = nk.multiscale_merge(f.to(device), plan, h, w, backend=backend)
        expected = reference.multiscale_merge(f, plan, h, w)
        _close(got, expected, f.dtype, float(f.float().abs().max()) + 1e-30)

    check()


# ---- merge_compress ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_merge_compress(backend):
    device = backend_device(backend)

    @fuzz(backend)
    @given(merge_cases(slow=backend in SLOW_BACKENDS), st.integers(1, 3), st.booleans(), st.data())
    def check(case, k, ln, data):
        f, plan, h, w = case
        D = k * k * len(plan.scales) * f.shape[-1]
        wt = _values(data.draw, (D,), f.dtype) if ln else None
        b = _values(data.draw, (D,), f.dtype) if ln else None
        got = nk.merge_compress(f.to(device), plan, k, _to(wt, device), _to(b, device), h=h, w=w, backend=backend)
        expected = reference.merge_compress(f, plan, k, wt, b, h=h, w=w)
        # LayerNorm output is O(|weight| + |bias|); without it, the merged values
        scale = (
            float(f.float().abs().max()) + 1e-30
            if wt is None
            else float(wt.float().abs().max() + b.float().abs().max())
        )
        _close(got, expected, f.dtype, max(scale, 1e-30) if wt is None else max(scale, 1.0))

    check()


# ---- multiscale_tile -------------------------------------------------------------------------------


@st.composite
def tile_cases(draw, slow: bool):
    W, H = draw(st.integers(1, 40 if slow else 300)), draw(st.integers(1, 40 if slow else 300))
    tile = draw(st.sampled_from([4, 7] if slow else [4, 7, 28]))
    kind = draw(st.sampled_from(["tiles", "single", "lite"]))
    if kind == "tiles":
        plan = plan_tiles(W, H, (tile, 2 * tile, 3 * tile), tile, 12)
    elif kind == "single":
        plan = plan_single(W, H, tile)
    else:
        plan = plan_lite(W, H, tile, draw(st.integers(1, 12)))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    if draw(st.booleans()):  # noise
        image = torch.randint(0, 256, (H, W, 3), dtype=torch.uint8, generator=g)
    else:  # a smooth gradient with flat areas and saturated ends
        yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        image = torch.stack([xx * 300 // max(W, 1), yy * 300 // max(H, 1), (xx + yy) % 256], -1).clamp(0, 255)
        image = image.to(torch.uint8)
    channels_first = draw(st.booleans())
    mean = tuple(draw(st.sampled_from([(0.5, 0.5, 0.5), (0.48145466, 0.4578275, 0.40821073)])))
    std = (0.5, 0.5, 0.5) if mean[0] == 0.5 else (0.26862954, 0.26130258, 0.27577711)
    out_dtype = draw(st.sampled_from(DTYPES))
    exact = draw(st.booleans())
    return image, channels_first, plan, mean, std, out_dtype, exact


@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_multiscale_tile(backend):
    device = backend_device(backend)

    @fuzz(backend)
    @given(tile_cases(slow=backend in SLOW_BACKENDS))
    def check(case):
        image, channels_first, plan, mean, std, out_dtype, exact = case
        arg = image.permute(2, 0, 1).contiguous() if channels_first else image
        got = nk.multiscale_tile(arg.to(device), plan, mean, std, out_dtype, exact=exact, backend=backend)
        expected = reference.multiscale_tile(image, plan, mean, std, out_dtype, exact=exact)
        assert got.shape == (plan.n_tiles, 3, plan.tile, plan.tile) and got.dtype == out_dtype
        if exact:  # integer passes: the same uint8 values, so equal up to the normalize's rounding
            atol = 2 * float(torch.finfo(out_dtype).eps) * 4
        else:
            atol = 1e-4 if out_dtype == torch.float32 else 4 * float(torch.finfo(out_dtype).eps) * 4
        torch.testing.assert_close(got.float().cpu(), expected.float(), atol=atol, rtol=0)

    check()
