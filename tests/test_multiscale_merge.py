"""multiscale_merge: every backend against the reference, a hand-computed case, errors."""

import pytest
import torch
from conftest import DTYPES, KERNEL_BACKENDS, SLOW_BACKENDS, TOL, backend_device
from torch._subclasses.fake_tensor import FakeTensorMode

import nvila_kernels as nk
from nvila_kernels import reference
from nvila_kernels.tiling import ScalePlan, TilePlan, plan_single, plan_tiles

SIZES = [(1024, 1024), (1920, 1080), (4000, 1000)]
PLANS = [plan_tiles(W, H) for W, H in SIZES] + [plan_tiles(1024, 1024, scales=(28, 56, 84), tile=28)]
PLAN_IDS = [f"{W}x{H}" for W, H in SIZES] + ["tiny-28-56-84"]


def _cases(backend):
    """(h, C) per backend: small grids for the emulated backends, NVILA's 32x32 for cpu."""
    if backend in SLOW_BACKENDS:
        return [(2, 3), (3, 8), (4, 8)]
    return [(32, 3), (3, 8), (4, 3)]


def _features(plan, h, w, C, dtype, device):
    return torch.randn(plan.n_tiles, h * w, C, device=device).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_matches_reference(backend, plan, dtype):
    device = backend_device(backend)
    atol, rtol = TOL[dtype]
    last = plan.scales[-1]
    for h, C in _cases(backend):
        x = _features(plan, h, h, C, dtype, device)
        got = nk.multiscale_merge(x, plan, h, h, backend=backend)
        assert got.shape == (len(plan.scales) * C, last.rows * h, last.cols * h)
        assert got.dtype == dtype
        torch.testing.assert_close(got, reference.multiscale_merge(x, plan, h, h), atol=atol, rtol=rtol)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_rectangular_tiles(backend):
    """h != w, and the token grid is row-major inside each tile."""
    device = backend_device(backend)
    plan = plan_tiles(1920, 1080)
    x = _features(plan, 2, 3, 5, torch.float32, device)
    got = nk.multiscale_merge(x, plan, 2, 3, backend=backend)
    torch.testing.assert_close(got, reference.multiscale_merge(x, plan, 2, 3))


@pytest.mark.parametrize("backend", [b for b in KERNEL_BACKENDS if b not in SLOW_BACKENDS])
def test_nvila_channels(backend):
    """NVILA-8B's SigLIP width (1152 channels), 32x32 tokens per tile, 4x3 grid."""
    device = backend_device(backend)
    plan = plan_tiles(1920, 1080)
    x = _features(plan, 32, 32, 1152, torch.bfloat16, device)
    got = nk.multiscale_merge(x, plan, backend=backend)
    assert got.shape == (3 * 1152, 96, 128)
    atol, rtol = TOL[torch.bfloat16]
    torch.testing.assert_close(got, reference.multiscale_merge(x, plan), atol=atol, rtol=rtol)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_hand_computed_upsampling(backend):
    """NVILA.md: area 64 -> 96 gives x0, (x0+x1)/2, x1, x2, (x2+x3)/2, x3, ...
    A plan of a 2x2 scale and a 3x3 scale with h = w = 32: the 64x64 map of the
    first scale is a ramp along x (constant along y) and goes to 96x96."""
    device = backend_device(backend)
    h = w = 32
    plan = TilePlan(64, 64, 32, (ScalePlan(64, 64, 2, 2), ScalePlan(96, 96, 3, 3)), (3, 3))
    ramp = torch.arange(64, dtype=torch.float32) ** 2  # not linear, so averages are visible
    small = ramp.expand(64, 64)  # map[y, x] = ramp[x]
    tiles = small.reshape(2, h, 2, w).permute(0, 2, 1, 3).reshape(4, h * w, 1)
    x = torch.cat([tiles, torch.zeros(9, h * w, 1)]).to(device)
    got = nk.multiscale_merge(x, plan, h, w, backend=backend).cpu()
    assert got.shape == (2, 96, 96)
    r = ramp.tolist()
    expected = []
    for k in range(0, 64, 2):
        expected += [r[k], (r[k] + r[k + 1]) / 2, r[k + 1]]
    expected = torch.tensor(expected)
    for y in (0, 1, 50, 95):
        torch.testing.assert_close(got[0, y], expected)
    assert bool((got[1] == 0).all())


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_integer_factor_repeats(backend):
    """1 tile -> 3x3 grid: every value of the smallest scale is repeated 3x3 times,
    and the largest scale is the tiles laid out unchanged."""
    device = backend_device(backend)
    h = 4
    plan = plan_tiles(1024, 1024, scales=(28, 56, 84), tile=28)
    x = _features(plan, h, h, 2, torch.float32, device)
    got = nk.multiscale_merge(x, plan, h, h, backend=backend).cpu()
    first = x[0].cpu().reshape(h, h, 2).permute(2, 0, 1)
    torch.testing.assert_close(got[:2], first.repeat_interleave(3, 1).repeat_interleave(3, 2), atol=0, rtol=0)
    big = x[5:].cpu().reshape(3, 3, h, h, 2).permute(4, 0, 2, 1, 3).reshape(2, 3 * h, 3 * h)
    torch.testing.assert_close(got[4:], big, atol=0, rtol=0)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_out_argument(backend):
    device = backend_device(backend)
    plan = plan_tiles(4000, 1000)
    x = _features(plan, 2, 2, 3, torch.float32, device)
    out = torch.empty(9, 4, 12, device=device)
    assert nk.multiscale_merge(x, plan, 2, 2, out=out, backend=backend) is out
    torch.testing.assert_close(out, reference.multiscale_merge(x, plan, 2, 2))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_noncontiguous_features(backend):
    device = backend_device(backend)
    plan = plan_tiles(1024, 1024)
    base = torch.randn(plan.n_tiles, 4, 6, device=device)
    x = base[:, :, ::2]
    got = nk.multiscale_merge(x, plan, 2, 2, backend=backend)
    torch.testing.assert_close(got, reference.multiscale_merge(x, plan, 2, 2))


@pytest.mark.parametrize("backend", ["cpu", "emu"])
def test_raw_op_checks(backend):
    op = nk._ops.op("multiscale_merge", backend)
    with pytest.raises(RuntimeError, match="features: expected shape"):
        op(torch.randn(13, 4, 3), [1, 2, 3], [1, 2, 3], 2, 2, torch.empty(9, 6, 6))
    with pytest.raises(RuntimeError, match="scale_cols"):
        op(torch.randn(14, 4, 3), [1, 2, 3], [1, 2], 2, 2, torch.empty(9, 6, 6))
    with pytest.raises(RuntimeError, match="out: expected"):
        op(torch.randn(14, 4, 3), [1, 2, 3], [1, 2, 3], 2, 2, torch.empty(9, 6, 5))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_single_scale_plan(backend):
    """plan_single (one 1x1 scale): the output is the tile's tokens, channel-first."""
    device = backend_device(backend)
    plan = plan_single(640, 480)
    x = _features(plan, 3, 5, 4, torch.float16, device)
    got = nk.multiscale_merge(x, plan, 3, 5, backend=backend)
    torch.testing.assert_close(got, x[0].reshape(3, 5, 4).permute(2, 0, 1), atol=0, rtol=0)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_fake_tensor_shapes(backend):
    with FakeTensorMode():
        plan = plan_tiles(4000, 1000)
        x = torch.empty(plan.n_tiles, 1024, 1152, dtype=torch.bfloat16, device=backend_device(backend))
        y = nk.multiscale_merge(x, plan, backend=backend)
        assert y.shape == (3 * 1152, 64, 192) and y.dtype == torch.bfloat16


@pytest.mark.parametrize("backend", [b for b in KERNEL_BACKENDS if backend_device(b).type == "cpu"] + [None])
def test_torch_compile_fullgraph(backend):
    plan = plan_tiles(1920, 1080)

    def f(x):
        return nk.multiscale_merge(x * 2, plan, 2, 2, backend=backend) + 1

    x = torch.randn(plan.n_tiles, 4, 3)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), reference.multiscale_merge(x * 2, plan, 2, 2) + 1)
