"""Fp8Linear and quantize_linears against nn.Linear: SQNR (dB) of a small MLP,
static and dynamic activation scales, leading batch dims, bias, dtypes, state_dict
round trip, module surgery with a filter.

Backends: "reference", "triton" (the interpreter on CPU), and None (automatic
selection, whatever this machine has).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from conftest import GPU, backend_device
from torch import nn

from nvila_kernels import backends
from nvila_kernels.layers import Fp8Linear, quantize_linears

BACKENDS = ["reference", None] + (["triton"] if backends.state["triton"] else [])
SQNR_MIN_DB = 25.0


def sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    ref, out = ref.double(), out.double()
    return (10 * torch.log10(ref.pow(2).sum() / (ref - out).pow(2).sum())).item()


def device_of(backend: str | None) -> torch.device:
    """The device the backend runs on; skips automatic selection if it would pick a
    compiled extension that has no FP8 kernels (an extension built from older sources)."""
    if backend is not None:
        return backend_device(backend)
    dev = torch.device("cuda" if GPU else "cpu")
    for op in ("fp8_quantize", "fp8_gemm"):
        chosen = backends.resolve(op, None, dev)
        if chosen in ("cpu", "cuda", "emu"):
            key = "CUDA" if chosen == "cuda" else "CPU"
            if not torch._C._dispatch_has_kernel_for_dispatch_key(f"nvila::{op}_{chosen}", key):
                pytest.skip(f"automatic selection picks {chosen!r}, whose loaded extension has no {op} kernel")
    return dev


def mlp(bias: bool = True, dtype: torch.dtype = torch.float32, device="cpu") -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 256, bias=bias), nn.GELU(), nn.Linear(256, 64, bias=bias)).to(device, dtype)


@pytest.fixture(autouse=True)
def _quiet_reference_fallback():
    # automatic selection without a compiled kernel warns once that it runs the reference
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="nvila_kernels: no compiled kernel")
        yield


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
def test_mlp_dynamic_sqnr(backend, bias):
    dev = device_of(backend)
    ref = mlp(bias, device=dev)
    x = torch.randn(2, 5, 64, device=dev)  # leading batch dims
    y_ref = ref(x)
    q = quantize_linears(copy.deepcopy(ref), backend=backend)
    y = q(x)
    assert y.shape == (2, 5, 64) and y.dtype == x.dtype
    assert isinstance(q[0], Fp8Linear) and isinstance(q[2], Fp8Linear)
    assert q[0].input_scale is None and (q[0].bias is not None) == bias
    assert sqnr_db(y_ref, y) >= SQNR_MIN_DB


@pytest.mark.parametrize("backend", BACKENDS)
def test_static_scale_matches_dynamic_at_calibrated_scale(backend):
    dev = device_of(backend)
    lin = nn.Linear(64, 256).to(dev)
    x = torch.randn(33, 64, device=dev)
    amax = x.abs().amax().item()
    dyn = Fp8Linear.from_linear(lin, backend=backend)
    # the dynamic scale of this very x, as a float: static must then give the same output
    static = Fp8Linear.from_linear(lin, activation_scale=max(amax, 1e-12) / 448.0, backend=backend)
    assert static.input_scale is not None and static.input_scale.dtype == torch.float32
    y_dyn, y_static = dyn(x), static(x)
    torch.testing.assert_close(y_static, y_dyn, atol=1e-5, rtol=1e-5)
    assert sqnr_db(lin(x), y_static) >= SQNR_MIN_DB
    # a calibrated scale that is 4x too large still works, with less precision
    loose = Fp8Linear.from_linear(lin, activation_scale=4 * amax / 448.0, backend=backend)
    assert SQNR_MIN_DB - 10 <= sqnr_db(lin(x), loose(x)) < sqnr_db(lin(x), y_static) + 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs(backend, dtype):
    dev = device_of(backend)
    ref = mlp(dtype=dtype, device=dev)
    x = torch.randn(7, 64, device=dev, dtype=dtype)
    y_ref = copy.deepcopy(ref).float()(x.float())  # fp32 truth of the same weights
    q = quantize_linears(copy.deepcopy(ref), backend=backend)
    y = q(x)
    assert y.dtype == dtype and q[0].bias.dtype == dtype and q[0].weight.dtype == torch.float8_e4m3fn
    assert sqnr_db(y_ref, y) >= SQNR_MIN_DB


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree(backend):
    dev = device_of(backend)
    lin = nn.Linear(64, 48).to(dev)
    x = torch.randn(3, 1, 64, device=dev)
    ref = Fp8Linear.from_linear(lin, backend="reference")
    layer = Fp8Linear.from_linear(lin, backend=backend)  # weight quantized by `backend`
    assert torch.equal(layer.weight.view(torch.uint8), ref.weight.view(torch.uint8))
    assert torch.equal(layer.weight_scale, ref.weight_scale)
    torch.testing.assert_close(layer(x), ref(x), atol=1e-4, rtol=1e-4)
    ref.backend = backend  # the attribute picks the backend of every later call
    assert torch.equal(ref(x), layer(x))


@pytest.mark.parametrize("activation_scale", ["dynamic", 0.01])
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_round_trip(tmp_path, activation_scale, bias):
    lin = nn.Linear(64, 32, bias=bias, dtype=torch.bfloat16)
    layer = Fp8Linear.from_linear(lin, activation_scale=activation_scale, backend="reference")
    path = tmp_path / "fp8.pt"
    torch.save(layer.state_dict(), path)
    sd = torch.load(path)
    expected = {"weight", "weight_scale"} | ({"bias"} if bias else set())
    expected |= {"input_scale"} if activation_scale != "dynamic" else set()
    assert set(sd) == expected
    fresh = Fp8Linear(64, 32, bias=bias, dtype=torch.bfloat16, backend="reference")  # dynamic by default
    fresh.load_state_dict(sd)
    for name in expected:
        a, b = getattr(fresh, name), getattr(layer, name)
        assert a.dtype == b.dtype, name
        if a.dtype == torch.float8_e4m3fn:
            a, b = a.view(torch.uint8), b.view(torch.uint8)
        assert torch.equal(a, b), name
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    assert torch.equal(fresh(x), layer(x))


def test_dtype_and_device_moves_keep_fp8_buffers():
    layer = Fp8Linear.from_linear(nn.Linear(64, 32), backend="reference")
    scale = layer.weight_scale.clone()
    layer = layer.to(torch.bfloat16)
    assert layer.weight.dtype == torch.float8_e4m3fn
    assert layer.weight_scale.dtype == torch.float32 and torch.equal(layer.weight_scale, scale)
    assert layer.bias.dtype == torch.bfloat16
    assert layer(torch.randn(2, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_quantize_linears_filter_and_repr():
    model = nn.ModuleDict(
        {"vision": nn.Sequential(nn.Linear(64, 64)), "llm": nn.Sequential(nn.Linear(64, 128), nn.Linear(128, 64))}
    )
    seen = []

    def only_llm(name: str, linear: nn.Linear) -> bool:
        seen.append(name)
        return name.startswith("llm.")

    out = quantize_linears(model, filter=only_llm, activation_scale=0.02, backend="reference")
    assert out is model and seen == ["vision.0", "llm.0", "llm.1"]
    assert type(model["vision"][0]) is nn.Linear
    assert all(isinstance(m, Fp8Linear) for m in model["llm"])
    assert "activation_scale=static(0.02)" in repr(model["llm"][0])
    assert "in_features=64, out_features=128, bias=True" in repr(model["llm"][0])
    # a Linear at the top level cannot be replaced in place: it is returned
    assert isinstance(quantize_linears(nn.Linear(8, 8), backend="reference"), Fp8Linear)


def test_automatic_selection_without_extension(monkeypatch):
    # a pure-Python install: automatic selection must still run (the reference, with a warning)
    monkeypatch.setitem(backends.state, "ext", None)
    monkeypatch.setitem(backends.state, "ext_error", "disabled by the test")
    ref = mlp()
    x = torch.randn(2, 5, 64)
    q = quantize_linears(copy.deepcopy(ref))
    assert q[0].backend is None
    assert sqnr_db(ref(x), q(x)) >= SQNR_MIN_DB
