"""Op registration: schemas, opcheck, fake tensors, torch.compile, backend
selection and argument errors."""

import importlib
import inspect
import re
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import KERNEL_BACKENDS, SLOW_BACKENDS, backend_device
from torch._subclasses.fake_tensor import FakeTensorMode

import nvila_kernels as nk
from nvila_kernels import _ops, backends, reference, resample
from nvila_kernels.tiling import plan_tiles


def _op(name, backend):
    return getattr(torch.ops.nvila, f"{name}_{backend}").default


def _sample_args(name, device):
    if name == "spatial_compress":
        x = torch.randn(2, 5, 7, 6, device=device)
        w, b = torch.randn(24, device=device), torch.randn(24, device=device)
        return [
            (x, 2, w, b, 1e-5, torch.empty(2, 3, 4, 24, device=device)),
            (x, 3, None, None, 1e-5, torch.empty(2, 2, 3, 54, device=device)),
            (x.bfloat16(), 1, None, None, 1e-5, torch.empty(2, 5, 7, 6, device=device, dtype=torch.bfloat16)),
        ]
    if name == "temporal_pool":
        x = torch.randn(8, 3, 4, device=device)
        return [(x, 4, torch.empty(2, 3, 4, device=device)), (x.half(), 8, torch.empty(1, 3, 4, device=device).half())]
    if name == "multiscale_merge":
        x = torch.randn(17, 4, 3, device=device)  # plan_tiles(1920, 1080): 1x1, 2x2, 4x3 tiles; h = w = 2
        return [
            (x, [1, 2, 3], [1, 2, 4], 2, 2, torch.empty(9, 6, 8, device=device)),
            (x[:14].bfloat16(), [1, 2, 3], [1, 2, 3], 2, 2, torch.empty(9, 6, 6, device=device, dtype=torch.bfloat16)),
        ]
    if name == "merge_compress":
        x = torch.randn(17, 4, 3, device=device)  # plan_tiles(1920, 1080) with h = w = 2
        w, b = torch.randn(36, device=device), torch.randn(36, device=device)
        return [
            (x, [1, 2, 3], [1, 2, 4], 2, 2, 2, w, b, 1e-5, torch.empty(12, 36, device=device)),
            (x[:14].half(), [1, 2, 3], [1, 2, 3], 2, 2, 3, None, None, 1e-5, torch.empty(9, 81, device=device).half()),
        ]
    if name == "multiscale_tile":
        img = torch.randint(0, 256, (7, 13, 3), dtype=torch.uint8, device=device)
        coeffs = [t.to(device) for t in resample.plan_coeff_tensors(13, 7, (4, 8, 12), (4, 8, 12))]
        out = torch.empty(14, 3, 4, 4, device=device)  # plan_tiles(13, 7, scales=(4, 8, 12), tile=4)
        tall = torch.randint(0, 256, (30, 6, 3), dtype=torch.uint8, device=device)  # vertical-first scale
        tall_coeffs = [t.to(device) for t in resample.plan_coeff_tensors(6, 30, (4,), (4,))]
        return [  # the one-tile case first: emulated backends opcheck only the first sample
            (tall, [1], [1], [True], *tall_coeffs, [0.5] * 3, [0.5] * 3, True, torch.empty(1, 3, 4, 4, device=device)),
            (img, [1, 2, 3], [1, 2, 3], [False] * 3, *coeffs, [0.5] * 3, [0.5] * 3, True, out),
            (img, [1, 2, 3], [1, 2, 3], [False] * 3, *coeffs, [0.1, 0.2, 0.3], [0.3] * 3, False, out.bfloat16()),
        ]
    if name == "fp8_quantize":
        x = torch.randn(5, 7, device=device)
        q = torch.empty(5, 7, device=device, dtype=torch.float8_e4m3fn)
        s = torch.empty((), device=device)
        return [(x, None, q, s), (x.bfloat16(), torch.tensor(0.5, device=device), q, s)]
    a = torch.randn(3, 32, device=device).to(torch.float8_e4m3fn)
    b = torch.randn(16, 32, device=device).to(torch.float8_e4m3fn)
    one = torch.ones((), device=device)
    return [
        (a, b, one, one, torch.randn(16, device=device), torch.empty(3, 16, device=device)),
        (a, b, one, one, None, torch.empty(3, 16, device=device, dtype=torch.bfloat16)),
    ]


@pytest.mark.parametrize("name", list(_ops.SCHEMAS))
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_schema_is_the_one_in_ops(backend, name):
    """Every backend's op has the schema declared once (nvila_kernels/ops/<op>.py, OpSpec.schema; _ops.SCHEMAS)
    (the Triton op's is inferred from its Python signature: int becomes SymInt and
    the alias set gets a number)."""

    def normalize(schema):
        return re.sub(r"\(\w+!\)", "(!)", schema.replace("SymInt", "int"))

    assert normalize(str(_op(name, backend)._schema)) == normalize(f"nvila::{name}_{backend}{_ops.SCHEMAS[name]}")


@pytest.mark.parametrize("name", list(_ops.SCHEMAS))
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_opcheck(backend, name):
    # opcheck's test_schema compares outputs with arithmetic torch lacks for float8
    # tensors ("mul_cpu_reduced_float" not implemented); the other checks run.
    utils = ("test_faketensor", "test_aot_dispatch_dynamic", "test_autograd_registration")
    if not name.startswith("fp8"):
        utils = ("test_schema", *utils)
    samples = _sample_args(name, backend_device(backend))
    # opcheck checks the registration (schema, aliasing, fake kernel, autograd), which is
    # the same for every sample: an emulated backend (a Triton-interpreter call of
    # multiscale_tile takes ~10 s) checks the first; its kernel paths are the op's tests'.
    if backend in SLOW_BACKENDS:
        samples = samples[:1]
    for args in samples:
        torch.library.opcheck(_op(name, backend), args, test_utils=utils)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["reference"])
def test_fake_tensor_shapes(backend):
    with FakeTensorMode():
        x = torch.empty(3, 33, 31, 1152, dtype=torch.bfloat16, device=backend_device(backend))
        w = torch.empty(9 * 1152, device=x.device)
        y = nk.spatial_compress(x, 3, w, w, backend=backend)
        assert y.shape == (3, 11, 11, 9 * 1152) and y.dtype == torch.bfloat16
        v = torch.empty(256, 16, 16, 3584, dtype=torch.bfloat16, device=x.device)
        assert nk.temporal_pool(v, 8, backend=backend).shape == (32, 16, 16, 3584)
        img = torch.empty(1080, 1920, 3, dtype=torch.uint8, device=x.device)
        tiles = nk.multiscale_tile(img, plan_tiles(1920, 1080), out_dtype=torch.bfloat16, backend=backend)
        assert tiles.shape == (17, 3, 448, 448) and tiles.dtype == torch.bfloat16


def test_meta_tensors_use_reference():
    x = torch.empty(1, 96, 128, 3456, device="meta")
    assert nk.spatial_compress(x, 2, torch.empty(13824, device="meta")).shape == (1, 48, 64, 13824)


@pytest.mark.parametrize("backend", [b for b in KERNEL_BACKENDS if backend_device(b).type == "cpu"] + [None])
def test_torch_compile_fullgraph(backend):
    """The ops inside a compiled function (no graph breaks), CPU tensors."""

    def projector_input(x, w, b, frames):
        y = nk.spatial_compress(x, 2, w, b, backend=backend)
        return y * 2, nk.temporal_pool(frames, 4, backend=backend)

    x, w, b = torch.randn(2, 7, 5, 8), torch.randn(32), torch.randn(32)
    frames = torch.randn(8, 4, 4, 16)
    compiled = torch.compile(projector_input, fullgraph=True, backend="aot_eager")
    y, p = compiled(x, w, b, frames)
    torch.testing.assert_close(y, reference.spatial_compress(x, 2, w, b) * 2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p, reference.temporal_pool(frames, 4))


@pytest.mark.parametrize("backend", [b for b in KERNEL_BACKENDS if backend_device(b).type == "cpu"] + [None])
def test_torch_compile_multiscale_tile(backend):
    """Preprocessing inside a compiled function: the coefficients are graph constants.
    Two scales (9 tiles): the interpreted Triton kernel runs ~4x slower under the
    compiled graph's dispatch mode than eagerly."""
    plan = plan_tiles(13, 7, scales=(4, 8), tile=4)

    def preprocess(img):
        return nk.multiscale_tile(img, plan, backend=backend).sum((1, 2, 3))

    img = torch.randint(0, 256, (7, 13, 3), dtype=torch.uint8)
    compiled = torch.compile(preprocess, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(img), reference.multiscale_tile(img, plan).sum((1, 2, 3)))


def test_torch_compile_inductor_cpu():
    """Through Inductor (C++ codegen) with the CPU kernel as an opaque op."""
    if backends.unavailable_reason("cpu", torch.device("cpu")):
        pytest.fail("the cpu backend must be available in the test environment")

    def f(x, w, b):
        return nk.spatial_compress(x + 1, 2, w, b, backend="cpu").sum(-1)

    x, w, b = torch.randn(1, 6, 6, 4), torch.randn(16), torch.randn(16)
    compiled = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(compiled(x, w, b), f(x, w, b), atol=1e-4, rtol=1e-4)


# ---- backend selection ----------------------------------------------------------


def test_auto_picks_compiled_cpu_kernel():
    assert backends.resolve("spatial_compress", None, torch.device("cpu")) == "cpu"


def test_auto_order_prefers_wgmma_triton_for_fp8_gemm_on_hopper(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert backends.auto_order("fp8_gemm", cuda) == ("triton", "cuda")
    assert backends.auto_order("spatial_compress", cuda) == ("cuda", "triton")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 9))
    assert backends.auto_order("fp8_gemm", cuda) == ("cuda", "triton")
    assert backends.auto_order("fp8_gemm", torch.device("cpu")) == ("cpu",)


def test_env_var_selects_backend(monkeypatch):
    monkeypatch.setenv("NVILA_KERNELS_BACKEND", "emu")
    assert backends.resolve("spatial_compress", None, torch.device("cpu")) == "emu"
    monkeypatch.setenv("NVILA_KERNELS_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="NVILA_KERNELS_BACKEND"):
        nk.spatial_compress(torch.randn(1, 2, 2, 3), 2)


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="backend: expected one of"):
        nk.spatial_compress(torch.randn(1, 2, 2, 3), 2, backend="fast")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error for a CUDA backend on a machine without GPU")
def test_unavailable_backend_is_an_error_not_a_fallback():
    with pytest.raises(RuntimeError, match="backend 'cuda' is not available"):
        nk.spatial_compress(torch.randn(1, 2, 2, 3), 2, backend="cuda")


def test_reference_fallback_warns_once():
    saved = backends.state["ext"]
    backends.state["ext"] = None
    backends._warned.clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            nk.temporal_pool(torch.randn(4, 3), 2)
            nk.temporal_pool(torch.randn(4, 3), 2)
        assert len([w for w in caught if "slow PyTorch reference" in str(w.message)]) == 1
    finally:
        backends.state["ext"] = saved
        backends._warned.clear()


def test_public_names_are_the_api():
    """`import nvila_kernels` exposes __all__ and its own submodules, not what it imports (json, torch, ...)."""
    public = {n for n in dir(nk) if not n.startswith("_")}
    submodules = {n for n in public if inspect.ismodule(v := getattr(nk, n)) and v.__name__ == f"nvila_kernels.{n}"}
    assert public - submodules == {n for n in nk.__all__ if not n.startswith("_")} - submodules
    for name in ("backends", "functional", "layers", "processor", "reference", "resample", "tiling"):
        module = importlib.import_module(f"nvila_kernels.{name}")
        assert all(hasattr(module, n) for n in module.__all__), name


def test_info_cli():
    out = subprocess.run([sys.executable, "-m", "nvila_kernels"], capture_output=True, text=True, check=True).stdout
    assert f"torch {torch.__version__}" in out
    for b in backends.BACKENDS:
        assert re.search(rf"backend {b}\s+(available|unavailable)", out), out
    assert "compiled CUDA archs:" in out and "GPU:" in out
    assert "backend cpu       available on cpu" in out


# ---- raw ops: argument errors are tested in test_input_errors.py ------------------


@pytest.mark.parametrize("backend", ["cpu", "emu"])
def test_raw_ops_check_their_arguments(backend):
    """Calling torch.ops.nvila.* directly, past the Python checks, still gives a
    clear error, never a crash (the memory-safety checks of csrc/torch/<op>.cpp)."""
    x = torch.randn(1, 4, 4, 3)
    with pytest.raises(RuntimeError, match=r"out: expected a contiguous tensor of shape \(1, 2, 2, 12\)"):
        _op("spatial_compress", backend)(x, 2, None, None, 1e-5, torch.empty(1, 2, 2, 11))
    with pytest.raises(RuntimeError, match=r"k: expected k >= 1"):
        _op("spatial_compress", backend)(x, 0, None, None, 1e-5, torch.empty(1, 4, 4, 3))
    with pytest.raises(RuntimeError, match=r"ln_weight: expected a contiguous float32 tensor"):
        _op("spatial_compress", backend)(x, 2, torch.ones(12).half(), None, 1e-5, torch.empty(1, 2, 2, 12))
    with pytest.raises(RuntimeError, match=r"group: expected group >= 1"):
        _op("temporal_pool", backend)(torch.randn(4, 2), 0, torch.empty(2, 2))
    with pytest.raises(RuntimeError, match=r"x: expected float32, float16 or bfloat16"):
        _op("temporal_pool", backend)(torch.ones(4, 2, dtype=torch.int32), 2, torch.empty(2, 2, dtype=torch.int32))
