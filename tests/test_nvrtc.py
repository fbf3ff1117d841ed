"""The CUDA kernels compiled at run time with NVRTC (nvila_kernels/_nvrtc.py).

Without a GPU: every op has its entry in _C's registry of CUDA ops and every kernel of
csrc/cuda its instance in a table; every csrc/cuda source compiles with NVRTC for sm_89
and sm_90a and each cubin holds every instance its table names (FP8 tensor-core SASS in
fp8_gemm: QMMA E4M3 on sm_89, QGMMA E4M3 on sm_90a); the disk cache is hit on a second
call and missed when a source changes. What NVRTC launches (args struct bytes, grid,
block, shared memory, kernel names) comes from _C's nvila::<op>_cuda ops; it is checked
against what the C++ launcher itself launches by running both on the same CPU tensors:
the NVRTC route with a recording launcher, the launcher's emulator build (backend emu)
recording its launches. An install whose _C serves the cuda backend through NVRTC sets
the launcher; a pure-Python install has no NVRTC path. With a GPU: every op through
the NVRTC path against the reference.
"""

import os
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
_C = backends.state["ext"]
NAMES = _nvrtc.kernel_names(_C)  # {source: kernel name expressions}
SOURCES = tuple(NAMES)


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


def test_every_op_and_kernel_has_an_entry():
    """Every op has its registered CUDA code (NVILA_REGISTER_OP) and every kernel template of
    csrc/cuda an instance in its file's table (compiled by NVRTC, launched by the C++ launcher)."""
    registry = _C.kernels()
    assert set(registry) == set(_ops.SCHEMAS)
    cu_files = {p.name for p in (ROOT / "csrc" / "cuda").glob("*.cu")} - {"runtime.cu"}
    assert set(SOURCES) == cu_files
    for source in cu_files:
        text = (ROOT / "csrc" / "cuda" / source).read_text()
        for kernel in re.findall(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)", text):
            assert any(n.startswith(f"nvila::cuda::{kernel}<") for n in NAMES[source]), f"{source}: {kernel}"


@pytest.mark.parametrize("arch", ARCHS)
def test_cubins_hold_every_kernel_for_the_arch(cubins, arch):
    for source in SOURCES:
        path, lowered = cubins[source, arch]
        text = sass(path)
        assert set(re.findall(r"code for (sm_\w+)", text)) == {f"sm_{arch}"}, path.name
        funcs = sass_functions(text)
        assert set(lowered) == set(NAMES[source])
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


# ---- what the NVRTC route launches == what the C++ launcher launches ------------------


def _tile_call(image, plan, out_dtype, exact):
    """The schema arguments of nvila::multiscale_tile for `plan`, as nvila_kernels.functional passes them."""
    H, W, _ = image.shape
    widths, heights = tuple(s.width for s in plan.scales), tuple(s.height for s in plan.scales)
    coeffs = [t.to(image.device) for t in resample.plan_coeff_tensors(W, H, widths, heights)]
    vfirst = [resample.vertical_first(W, H, s.width, s.height) for s in plan.scales]
    out = torch.empty(plan.n_tiles, 3, plan.tile, plan.tile, dtype=out_dtype, device=image.device)
    rows, cols = [s.rows for s in plan.scales], [s.cols for s in plan.scales]
    return (image, rows, cols, vfirst, *coeffs, [0.5, 0.25, 0.75], [0.5, 2.0, 0.25], exact, out)


class Recorder:
    """An NVRTC launcher that records instead of launching; its target is the emulator's device."""

    def __init__(self, cc):
        self.cc, self.launches = cc, []

    def target(self, device):
        return (self.cc, 48 * 1024, 1)  # emu_rt::kMaxDynamicSmem; the emulator has the sm_90a kernels

    def launch(self, source, names, grid_x, grid_y, block, smem, args, device):
        self.launches += [(source, name, (grid_x, grid_y, block, smem), args, device) for name in names]


def _cases():
    """(op, schema arguments on CPU tensors, emulated compute capability): every kernel variant
    family once (vector widths, LayerNorm none/cached/uncached, dynamic/static FP8 scales,
    exact/fast tiles, mma.sync and wgmma GEMMs)."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g).to(dtype)

    for C, k, ln, dtype in [
        (16, 2, False, torch.bfloat16),
        (5, 3, True, torch.float32),
        (3456, 2, True, torch.float16),
    ]:
        x = randn(1, 3, 4, C, dtype=dtype)
        D = k * k * C
        w = randn(D) if ln else None
        out = torch.empty(1, -(-3 // k), -(-4 // k), D, dtype=dtype)
        yield "spatial_compress", (x, k, w, w, 1e-5, out), 89
    x = randn(6, 4, 8, dtype=torch.float16)
    yield "temporal_pool", (x, 2, torch.empty(3, 4, 8, dtype=torch.float16)), 89
    plan = plan_tiles(60, 40, scales=(28, 56), tile=28)
    rows, cols = [s.rows for s in plan.scales], [s.cols for s in plan.scales]
    feats = randn(plan.n_tiles, 4, 8)
    yield "multiscale_merge", (feats, rows, cols, 2, 2, torch.empty(16, rows[-1] * 2, cols[-1] * 2)), 89
    D = 2 * 2 * 2 * 8
    out = torch.empty(rows[-1] * cols[-1], D)
    yield "merge_compress", (feats, rows, cols, 2, 2, 2, randn(D), None, 1e-5, out), 89
    image = torch.randint(0, 256, (40, 60, 3), dtype=torch.uint8, generator=g)
    yield "multiscale_tile", _tile_call(image, plan, torch.bfloat16, False), 89
    for scale in (None, torch.tensor(0.5)):
        yield "fp8_quantize", (randn(40), scale, torch.empty(40, dtype=torch.float8_e5m2), torch.empty(())), 89
    a = randn(20, 32).to(torch.float8_e4m3fn)
    for cc in (89, 90):
        yield "fp8_gemm", (a, a, torch.tensor(0.5), torch.tensor(2.0), None, torch.empty(20, 20)), cc


CASES = list(_cases())


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{op}-{i}" for i, (op, *_) in enumerate(CASES)])
def test_nvrtc_launches_what_the_cpp_launcher_launches(case):
    """The NVRTC route of nvila::<op>_cuda (reached with CPU tensors by redispatching to its
    CUDA kernel, the launcher recording) and the emulator build of the C++ launcher on the
    same tensors launch the same kernel instances with the same plan and args bytes."""
    op, args, cc = CASES[case]
    recorder = Recorder(cc)
    previous_cc = _C.set_emulated_compute_capability(cc)
    previous = _C.set_nvrtc_launcher(recorder)
    try:
        cuda_op = getattr(torch.ops.nvila, f"{op}_cuda").default
        cuda_op.redispatch(torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA), *args)
    finally:
        _C.set_nvrtc_launcher(previous)
    _C.emulated_launches()  # drop earlier records
    try:
        getattr(torch.ops.nvila, f"{op}_emu")(*args)
    finally:
        _C.set_emulated_compute_capability(previous_cc)
    emulated = _C.emulated_launches()
    assert emulated, "the emulator launched nothing"
    source = f"{op}.cu"
    mask = _workspace_mask(op)
    got = [(name, plan, mask(args)) for src, name, plan, args, device in recorder.launches if src == source]
    want = [(f"nvila::cuda::{name}", config[1:5], mask(args)) for name, config, args in emulated]
    assert got == want
    assert all(device == "cpu" for *_, device in recorder.launches)


def _workspace_mask(op):
    """fp8_quantize's args hold the address of a fresh amax workspace per call: blanked for the comparison."""
    if op != "fp8_quantize":
        return lambda b: b
    offset, size = _C.args_layout(op)["fields"]["workspace"]
    return lambda b: b[:offset] + bytes(size) + b[offset + size :]


# ---- which installs serve the cuda backend through NVRTC --------------------------------

_PROBE = r"""
import sys
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
import torch
import nvila_kernels as nk
from nvila_kernels import backends, _nvrtc
print("FILE", nk.__file__)
print("SOURCES", _nvrtc.source_dir())
print("NVRTC", backends.state["nvrtc"], backends.state["nvrtc_error"])
print(nk.info())
if backends.state["nvrtc"]:  # the CUDA op goes to NVRTC's launcher, which refuses CPU tensors
    x, out = torch.zeros(4, 8), torch.empty(2, 8)
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)
    try:
        torch.ops.nvila.temporal_pool_cuda.default.redispatch(keys, x, 2, out)
    except RuntimeError as e:
        print("REFUSED", e)
if torch.cuda.is_available() and backends.state["nvrtc"]:  # the public function, automatic backend
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


def _probe(env, cwd):
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc.stdout


def test_extension_without_cuda_kernels_serves_cuda_through_nvrtc(tmp_path):
    """_C without CUDA kernels, as NVILA_KERNELS_NVRTC=1 makes this build look: importing
    nvila_kernels sets _C's NVRTC launcher (the CUDA ops reach it) and says so."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "NVILA_KERNELS_BACKEND")}
    env.update(NVILA_KERNELS_NVRTC="1", NVILA_KERNELS_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    out = _probe(env, tmp_path)
    assert f"FILE {ROOT / 'nvila_kernels' / '__init__.py'}" in out
    assert "NVRTC True None" in out
    assert "compiled at first use with NVRTC" in out
    assert "REFUSED temporal_pool: NVRTC launch failed: x: expected a CUDA tensor, got cpu" in out
    if torch.cuda.is_available():
        assert "GPU OK" in out
    else:
        assert "backend cuda      unavailable: no CUDA GPU present" in out


def test_pure_python_install_has_no_nvrtc_path(tmp_path):
    """setup.py's build_py with NVILA_KERNELS_NO_BUILD=1 (a pure-Python install) still ships the
    CUDA sources (nvila_kernels/_csrc, for installs whose _C lacks CUDA kernels), but without
    _C there is no launch planner: the cuda backend is unavailable and says why."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "NVILA_KERNELS_BACKEND")}
    env["NVILA_KERNELS_NO_BUILD"] = "1"
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "-d", str(site)],
        cwd=ROOT, env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert (site / "nvila_kernels" / "_csrc" / "cuda" / "fp8_gemm.cu").is_file()
    assert (site / "nvila_kernels" / "_csrc" / "include" / "nvila" / "common.h").is_file()
    env["PYTHONPATH"] = str(site)
    out = _probe(env, site)
    assert f"FILE {site / 'nvila_kernels' / '__init__.py'}" in out
    assert f"SOURCES {site / 'nvila_kernels' / '_csrc'}" in out
    assert "NVRTC False it needs the compiled extension's launch planners" in out
    assert "CUDA kernels through NVRTC: unavailable (it needs the compiled extension's launch planners" in out


# ---- on a GPU: every op through the NVRTC path ---------------------------------------

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="launching NVRTC kernels needs a CUDA GPU")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: (2e-5, 2e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}


@pytest.fixture(scope="module")
def run(cache):
    """{op: nvila::<op>_cuda}, served through NVRTC for this module."""
    previous = _C.set_nvrtc_launcher(_nvrtc.Launcher())
    yield {op: getattr(torch.ops.nvila, f"{op}_cuda") for op in _C.kernels()}
    _C.set_nvrtc_launcher(previous)


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
