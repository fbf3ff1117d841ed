"""The CUDA kernels compiled at run time with NVRTC (nvila_kernels/_nvrtc.py).

Without a GPU: every csrc/cuda source compiles with NVRTC for sm_89 and sm_90a, each
cubin holds every kernel instantiation for its arch (FP8 tensor-core SASS in fp8_gemm:
QMMA E4M3 on sm_89, QGMMA E4M3 on sm_90a), the disk cache is hit on a second call and
missed when a source changes; the Python launch planners and args structs agree with
the C++ ones (through the _C.launch_config / _C.args_layout test hooks); an install
without CUDA kernels in _C registers the NVRTC implementations of nvila::<op>_cuda.
With a GPU: every op through the NVRTC path against the reference.
"""

import ctypes
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_cuda_build import assert_fp8_gemm_qgmma, assert_fp8_gemm_qmma, sass, sass_functions

import nvila_kernels as nk
from nvila_kernels import _nvrtc, _ops, backends, reference, resample
from nvila_kernels.tiling import plan_tiles

pytestmark = pytest.mark.toolchain

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("89", "90a")
SOURCES = tuple(dict.fromkeys(op.source for op in _nvrtc.OPS.values()))
_C = backends.state["ext"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh cache directory for this module: $NVILA_KERNELS_CACHE."""
    path = tmp_path_factory.mktemp("nvrtc_cache")
    old = os.environ.get("NVILA_KERNELS_CACHE")
    os.environ["NVILA_KERNELS_CACHE"] = str(path)
    yield path
    if old is None:
        del os.environ["NVILA_KERNELS_CACHE"]
    else:
        os.environ["NVILA_KERNELS_CACHE"] = old


@pytest.fixture(scope="module")
def cubins(cache):
    """{(source, arch): (cubin path, lowered names)}, each compiled once; times printed (pytest -s)."""
    out, times = {}, {}
    for arch in ARCHS:
        for source in SOURCES:
            t0 = time.perf_counter()
            out[source, arch] = _nvrtc.cubin(source, arch)
            times[source, arch] = time.perf_counter() - t0
    for arch in ARCHS:
        row = ", ".join(f"{s} {times[s, arch]:.1f} s" for s in SOURCES)
        print(f"\nNVRTC {_nvrtc.nvrtc_version()} sm_{arch}: {row}; total {sum(times[s, arch] for s in SOURCES):.1f} s")
    return out


def test_every_op_and_kernel_has_an_nvrtc_entry():
    """Adding an op (or a kernel) without its OPS entry fails here."""
    assert set(_nvrtc.OPS) == set(_ops.SCHEMAS)
    names = {n for op in _nvrtc.OPS.values() for n in op.instantiations}
    for source in (ROOT / "csrc" / "cuda").glob("*.cu"):
        for kernel in re.findall(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)", source.read_text()):
            assert any(f"::{kernel}<" in n for n in names), f"{source.name}: {kernel} is in no OPS instantiation"


@pytest.mark.parametrize("arch", ARCHS)
def test_cubins_hold_every_kernel_for_the_arch(cubins, arch):
    for source in SOURCES:
        path, lowered = cubins[source, arch]
        text = sass(path)
        assert set(re.findall(r"code for (sm_\w+)", text)) == {f"sm_{arch}"}, path.name
        funcs = sass_functions(text)
        expected = {n for op in _nvrtc.OPS.values() if op.source == source for n in op.instantiations}
        assert set(lowered) == expected
        missing = [n for n, low in lowered.items() if low not in funcs]
        assert not missing, f"{path.name}: no SASS for {missing}"


def test_fp8_gemm_sass_sm89(cubins):
    assert_fp8_gemm_qmma(cubins["fp8_gemm.cu", "89"][0])


def test_fp8_gemm_sass_sm90a(cubins):
    assert_fp8_gemm_qgmma(cubins["fp8_gemm.cu", "90a"][0])


def test_cache_hit_and_source_change(cubins, cache, tmp_path):
    before = _nvrtc.stats["compiles"]
    path, lowered = _nvrtc.cubin("multiscale_merge.cu", "89")
    assert _nvrtc.stats["compiles"] == before, "the second call recompiled"
    assert (path, lowered) == cubins["multiscale_merge.cu", "89"]
    assert path.parent == cache and re.fullmatch(r"multiscale_merge-[0-9a-f]{20}-sm89\.cubin", path.name)

    # the same sources elsewhere hit the cache; a changed header misses it
    src = tmp_path / "csrc"
    for f in _nvrtc._sources(_nvrtc.source_dir()):
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_bytes((_nvrtc.source_dir() / f).read_bytes())
    assert _nvrtc.cubin("multiscale_merge.cu", "89", src)[0] == path
    assert _nvrtc.stats["compiles"] == before
    common = src / "include" / "nvila" / "common.h"
    common.write_text(common.read_text() + "\n// changed\n")
    changed, changed_lowered = _nvrtc.cubin("multiscale_merge.cu", "89", src)
    assert _nvrtc.stats["compiles"] == before + 1
    assert changed != path and changed.exists() and set(changed_lowered) == set(lowered)


def test_arch_for_a_device():
    """Hopper gets sm_90a (wgmma); a newer minor than NVRTC knows gets its newest of that major."""
    assert _nvrtc.arch_for((9, 0)) == "90a"
    assert _nvrtc.arch_for((8, 9)) == "89"
    assert _nvrtc.arch_for((8, 99)) == str(max(a for a in _nvrtc._nvrtc().nvrtcGetSupportedArchs()[1] if a // 10 == 8))
    with pytest.raises(RuntimeError, match="cannot compile for compute capability 1.0"):
        _nvrtc.arch_for((1, 0))


# ---- Python mirrors of the C++ structs and launch planners -------------------------


@pytest.mark.parametrize("op", list(_nvrtc.OPS))
def test_args_struct_layout_matches_cpp(op):
    layout = _C.args_layout(op)
    struct = _nvrtc.OPS[op].args
    assert ctypes.sizeof(struct) == layout["sizeof"]
    assert {name: getattr(struct, name).offset for name, _ in struct._fields_} == layout["fields"]


TARGETS = [
    _nvrtc.LaunchTarget(89, 101376, 0),
    _nvrtc.LaunchTarget(90, 232448, 1),
    _nvrtc.LaunchTarget(90, 232448, 0),
    _nvrtc.LaunchTarget(80, 166912, 0),
    _nvrtc.LaunchTarget(100, 232448, 1),
]


def _ptr(rng):
    return rng.choice([None, 0x7F0000000000 + 16 * rng.randrange(1 << 20) + rng.choice([0, 0, 2, 4, 8])])


def _size(rng, small=False):
    return rng.choice([0, 1, 2, 3, 7, 8, 16, 33, 64, 123, 769, 1152] + ([] if small else [4096, 13824, 1 << 20]))


def _random_args(op, rng):
    """Random args structs: sizes, strides, alignments and the options the planners look at."""
    S = _nvrtc
    if op == "spatial_compress":
        C, k = _size(rng), rng.choice([1, 2, 3, 4])
        return S.SpatialCompressArgs(
            _ptr(rng) or 16, _ptr(rng) or 16, _ptr(rng), None, _size(rng, True), _size(rng, True),
            _size(rng, True), C, k, rng.choice([0, 8, 12, 1 << 20]), rng.choice([C, 8 * C + 4]), C, 1e-5,
            rng.randrange(3),
        )  # fmt: skip
    if op == "temporal_pool":
        group = rng.choice([1, 2, 4, 5])
        N = _size(rng)
        return S.TemporalPoolArgs(
            _ptr(rng), _ptr(rng), group * _size(rng, True), N, group, rng.choice([N, N + 1, 2 * N]), rng.randrange(3)
        )
    if op == "multiscale_merge":
        n = rng.randint(1, 8)
        arr = ctypes.c_int64 * 8
        rows = [rng.randint(1, 6) for _ in range(n)] + [0] * (8 - n)
        cols = [rng.randint(1, 6) for _ in range(n)] + [0] * (8 - n)
        h, w = rng.randint(1, 40), rng.randint(1, 40)
        return S.MultiscaleMergeArgs(_ptr(rng), _ptr(rng), n, _size(rng), h, w, arr(*rows), arr(*cols), arr(), 0)
    if op == "merge_compress":
        m = _random_args("multiscale_merge", rng)
        m.C = rng.choice([1, 3, 8, 1152, 3456])
        k = rng.choice([1, 2, 3])
        return S.MergeCompressArgs(m, _ptr(rng), rng.choice([None, 64]), rng.choice([None, 96]), k, 1e-5)
    if op == "multiscale_tile":
        n = rng.randint(1, 8)
        arr = ctypes.c_int64 * 8
        rows = [rng.randint(1, 6) for _ in range(n)] + [0] * (8 - n)
        cols = [rng.randint(1, 6) for _ in range(n)] + [0] * (8 - n)
        tile0 = [sum(rows[i] * cols[i] for i in range(s)) for s in range(8)]
        a = S.MultiscaleTileArgs(_ptr(rng), _ptr(rng), _size(rng, True), _size(rng, True), _size(rng), n)
        a.rows, a.cols, a.tile0 = arr(*rows), arr(*cols), arr(*tile0)
        a.exact, a.dtype = rng.random() < 0.5, rng.randrange(3)
        return a
    if op == "fp8_quantize":
        return S.Fp8QuantizeArgs(_ptr(rng), rng.randrange(3), _size(rng), _ptr(rng), 64, 128, 256, rng.randrange(2))
    if op == "fp8_gemm":
        return S.Fp8GemmArgs(
            _ptr(rng), _ptr(rng), 16, 32, _ptr(rng), 48, rng.randrange(3), _size(rng), _size(rng), _size(rng)
        )
    raise AssertionError(f"no argument generator for {op}")


@pytest.mark.parametrize("op", list(_nvrtc.OPS))
def test_launch_plans_match_cpp(op):
    rng = random.Random(op)
    plan = _nvrtc.OPS[op].plan
    variants = set()
    for _ in range(600):
        args = _random_args(op, rng)
        for t in TARGETS:
            got = plan(args, t)
            want = _C.launch_config(op, bytes(args), *t)
            assert tuple(got) == want, f"{op} {t}: Python {got} != C++ {want} for {args_repr(args)}"
            variants.add(got.variant)
    assert len(variants) > 1 or op == "multiscale_merge", f"only {variants} exercised"


def _tile_call(image, plan, out_dtype, exact):
    """The schema arguments of nvila::multiscale_tile for `plan`, as nvila_kernels.functional passes them."""
    H, W, _ = image.shape
    widths, heights = tuple(s.width for s in plan.scales), tuple(s.height for s in plan.scales)
    coeffs = [t.to(image.device) for t in resample.plan_coeff_tensors(W, H, widths, heights)]
    vfirst = [resample.vertical_first(W, H, s.width, s.height) for s in plan.scales]
    out = torch.empty(plan.n_tiles, 3, plan.tile, plan.tile, dtype=out_dtype, device=image.device)
    rows, cols = [s.rows for s in plan.scales], [s.cols for s in plan.scales]
    return (image, rows, cols, vfirst, *coeffs, [0.5, 0.25, 0.75], [0.5, 2.0, 0.25], exact, out)


def test_multiscale_tile_args_builder():
    """The Python args builder: offsets of every scale's tiles and coefficient rows, and its errors."""
    plan = plan_tiles(97, 70, scales=(28, 56, 84), tile=28)
    call = _tile_call(torch.zeros(70, 97, 3, dtype=torch.uint8), plan, torch.float16, True)
    a = _nvrtc.multiscale_tile_args(*call)
    S, T = len(plan.scales), plan.tile
    assert (a.H, a.W, a.T, a.S, a.dtype, a.exact) == (70, 97, 28, S, 1, True)
    n = 0
    for s, sc in enumerate(plan.scales):
        assert (a.rows[s], a.cols[s], a.tile0[s]) == (sc.rows, sc.cols, n)
        assert (a.xoff[s], a.yoff[s]) == (sum(p.width for p in plan.scales[:s]), sum(p.height for p in plan.scales[:s]))
        assert a.vfirst[s] == call[3][s]
        n += sc.rows * sc.cols
    assert (a.KX, a.KY) == (call[5].size(1), call[7].size(1))
    assert list(a.std) == [0.5, 2.0, 0.25]
    assert _nvrtc.multiscale_tile_config(a, TARGETS[0]) == (_cdiv(n * T * T, 256), 1, 256, 0, (1, 0, 0))
    bad = list(call)
    bad[-1] = call[-1][1:]
    with pytest.raises(RuntimeError, match="out: expected a contiguous"):
        _nvrtc.multiscale_tile_args(*bad)
    bad = list(call)
    bad[4] = call[4][1:]
    with pytest.raises(RuntimeError, match="xbounds: expected a contiguous int32 tensor"):
        _nvrtc.multiscale_tile_args(*bad)


def _cdiv(a, b):
    return -(-a // b)


def args_repr(args) -> str:
    return ", ".join(f"{n}={getattr(args, n)!r}" for n, _ in args._fields_)


# ---- install without CUDA kernels in _C ----------------------------------------------

_PROBE = r"""
import sys
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
import torch
import nvila_kernels as nk
from nvila_kernels import backends, _nvrtc
print("FILE", nk.__file__)
print("SOURCES", _nvrtc.source_dir())
print("NVRTC", backends.state["nvrtc"], backends.state["nvrtc_error"])
for op in _nvrtc.OPS:
    print("CUDA_IMPL", op, torch._C._dispatch_has_kernel_for_dispatch_key(f"nvila::{op}_cuda", "CUDA"))
print(nk.info())
if torch.cuda.is_available():  # the public function, automatic backend: cuda through NVRTC
    x = torch.randn(2, 5, 7, 64, device="cuda", dtype=torch.bfloat16)
    assert backends.resolve("spatial_compress", None, x.device) == "cuda"
    torch.testing.assert_close(nk.spatial_compress(x, 2), nk.reference.spatial_compress(x, 2))
    f = torch.compile(lambda x: nk.spatial_compress(x, 2, backend="cuda"), fullgraph=True)
    torch.testing.assert_close(f(x), nk.reference.spatial_compress(x, 2))
    a = torch.randn(40, 64, device="cuda").to(torch.float8_e4m3fn)
    one = torch.ones((), device="cuda")
    got = nk.fp8_gemm(a, a, one, one, backend="cuda")
    torch.testing.assert_close(got, nk.reference.fp8_gemm(a, a, one, one), atol=2e-2, rtol=2e-2)
    print("GPU OK")
"""


def test_install_without_cuda_kernels_registers_nvrtc(tmp_path):
    """setup.py's build_py with NVILA_KERNELS_NO_BUILD=1 (a pure-Python install) ships the
    CUDA sources as nvila_kernels/_csrc; importing it registers the NVRTC implementations."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "NVILA_KERNELS_BACKEND")}
    env["NVILA_KERNELS_NO_BUILD"] = "1"
    env["NVILA_KERNELS_CACHE"] = str(tmp_path / "cache")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "-d", str(site)],
        cwd=ROOT, env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert (site / "nvila_kernels" / "_csrc" / "cuda" / "fp8_gemm.cu").is_file()
    assert (site / "nvila_kernels" / "_csrc" / "include" / "nvila" / "common.h").is_file()
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=site, env=env, capture_output=True, text=True, timeout=300
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    assert f"FILE {site / 'nvila_kernels' / '__init__.py'}" in out
    assert f"SOURCES {site / 'nvila_kernels' / '_csrc'}" in out
    assert "NVRTC True None" in out
    assert all(f"CUDA_IMPL {op} True" in out for op in _nvrtc.OPS), out
    assert "compiled at first use with NVRTC" in out
    if torch.cuda.is_available():
        assert "GPU OK" in out
    else:
        assert "backend cuda      unavailable: no CUDA GPU present" in out


# ---- on a GPU: every op through the NVRTC path ---------------------------------------

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="launching NVRTC kernels needs a CUDA GPU")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: (2e-5, 2e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}


@pytest.fixture(scope="module")
def run(cache):
    return {op: _nvrtc.impl(op) for op in _nvrtc.OPS}


@gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_spatial_compress(run, dtype):
    atol, rtol = TOL[dtype]
    # plain; LayerNorm with the row in shared memory (unaligned C = 33; 54 KiB: above the 48 KiB default)
    cases = [((2, 7, 9, 64), 2, False), ((1, 5, 5, 33), 3, True), ((2, 4, 6, 64), 2, True), ((1, 3, 4, 3456), 2, True)]
    for shape, k, ln in cases:
        x = torch.randn(shape, device="cuda").to(dtype)
        D = k * k * shape[-1]
        w = torch.randn(D, device="cuda") if ln else None
        b = torch.randn(D, device="cuda") if ln else None
        out = torch.empty(shape[0], -(-shape[1] // k), -(-shape[2] // k), D, device="cuda", dtype=dtype)
        run["spatial_compress"](x, k, w, b, 1e-5, out)
        torch.testing.assert_close(out, reference.spatial_compress(x, k, w, b, 1e-5), atol=atol, rtol=rtol)
    # LayerNorm over a row too large for shared memory (the uncached variant)
    x = torch.randn(1, 2, 2, 16384, device="cuda").to(dtype)
    w = torch.randn(4 * 16384, device="cuda")
    out = torch.empty(1, 1, 1, 4 * 16384, device="cuda", dtype=dtype)
    run["spatial_compress"](x, 2, w, None, 1e-5, out)
    torch.testing.assert_close(out, reference.spatial_compress(x, 2, w, None, 1e-5), atol=atol, rtol=rtol)


@gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_temporal_pool_and_multiscale_merge(run, dtype):
    atol, rtol = TOL[dtype]
    for shape, group in [((8, 33), 4), ((6, 16, 64), 2)]:
        x = torch.randn(shape, device="cuda").to(dtype)
        out = torch.empty((shape[0] // group, *shape[1:]), device="cuda", dtype=dtype)
        run["temporal_pool"](x, group, out)
        torch.testing.assert_close(out, reference.temporal_pool(x, group), atol=atol, rtol=rtol)
    plan = plan_tiles(1920, 1080)
    h, C = 4, 8
    x = torch.randn(plan.n_tiles, h * h, C, device="cuda").to(dtype)
    last = plan.scales[-1]
    out = torch.empty(len(plan.scales) * C, last.rows * h, last.cols * h, device="cuda", dtype=dtype)
    run["multiscale_merge"](x, [s.rows for s in plan.scales], [s.cols for s in plan.scales], h, h, out)
    torch.testing.assert_close(out, reference.multiscale_merge(x, plan, h, h), atol=atol, rtol=rtol)


@gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_multiscale_tile(run, dtype):
    atol, rtol = TOL[dtype]
    g = torch.Generator().manual_seed(0)
    for W, H in [(97, 41), (30, 70)]:  # with tile 28: both pass orders
        image = torch.randint(0, 256, (H, W, 3), dtype=torch.uint8, generator=g)
        plan = plan_tiles(W, H, scales=(28, 56, 84), tile=28)
        for exact in (True, False):
            call = _tile_call(image.cuda(), plan, dtype, exact)
            run["multiscale_tile"](*call)
            want = reference.multiscale_tile(image, plan, call[-4], call[-3], dtype, exact)
            torch.testing.assert_close(call[-1].cpu(), want, atol=atol, rtol=rtol)


@gpu
@pytest.mark.parametrize("fp8", [torch.float8_e4m3fn, torch.float8_e5m2], ids=str)
def test_gpu_fp8_quantize(run, fp8):
    x = torch.randn(1000, 33, device="cuda") * 10
    for scale in (None, torch.tensor(0.05, device="cuda")):
        q = torch.empty(x.shape, dtype=fp8, device="cuda")
        scale_out = torch.empty((), device="cuda")
        run["fp8_quantize"](x, scale, q, scale_out)
        want_q, want_scale = reference.fp8_quantize(x, scale, fp8)
        assert torch.equal(scale_out, want_scale)
        assert torch.equal(q.view(torch.uint8), want_q.view(torch.uint8))


@gpu
@pytest.mark.parametrize("out_dtype", DTYPES, ids=str)
def test_gpu_fp8_gemm(run, out_dtype):
    for M, N, K in [(33, 70, 64), (1, 128, 96), (130, 200, 40)]:  # K = 40: the unaligned kernel
        a = (torch.randn(M, K, device="cuda") * 2).to(torch.float8_e4m3fn)
        b = (torch.randn(N, K, device="cuda") * 2).to(torch.float8_e4m3fn)
        sa, sb = torch.tensor(0.5, device="cuda"), torch.tensor(0.25, device="cuda")
        bias = torch.randn(N, device="cuda")
        out = torch.empty(M, N, device="cuda", dtype=out_dtype)
        run["fp8_gemm"](a, b, sa, sb, bias, out)
        want = reference.fp8_gemm(a, b, sa, sb, bias, out_dtype)
        torch.testing.assert_close(out.float(), want.float(), atol=2e-2, rtol=2e-2)


@gpu
def test_gpu_runs_on_the_current_stream(run):
    x = torch.randn(64, 4096, device="cuda")
    out = torch.empty(16, 4096, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run["temporal_pool"](x, 4, out)
    side.synchronize()
    torch.testing.assert_close(out, reference.temporal_pool(x, 4))
    assert nk.__version__  # the package imported beside the NVRTC module
