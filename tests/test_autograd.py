"""Gradients through the kernel backends: the forward is the backend's kernel, the
backward differentiates the reference recomputed from the saved inputs, so every
backend must give the reference backend's gradients (and the kernel's forward)."""

from __future__ import annotations

import pytest
import torch
from conftest import KERNEL_BACKENDS, backend_device

import nvila_kernels as nk
from nvila_kernels.ops import _spec
from nvila_kernels.tiling import plan_tiles

PLAN = plan_tiles(60, 40, (28, 56, 84), 28)  # 2 scales with tiles: 1 + 3x2 grid


def _cases(dev):
    """(name, fn(tensors, backend), tensors): fp32 inputs, all requiring grad."""
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g).to(dev).requires_grad_()

    C = 8
    feats = r(PLAN.n_tiles, 16, C)
    D = 4 * len(PLAN.scales) * C
    return [
        (
            "spatial_compress",
            lambda t, be: nk.spatial_compress(t[0], 2, t[1], t[2], backend=be),
            [r(2, 5, 3, C), r(4 * C), r(4 * C)],
        ),
        ("spatial_compress_no_ln", lambda t, be: nk.spatial_compress(t[0], 3, backend=be), [r(1, 4, 4, C)]),
        ("temporal_pool", lambda t, be: nk.temporal_pool(t[0], 2, backend=be), [r(6, 3, C)]),
        ("multiscale_merge", lambda t, be: nk.multiscale_merge(t[0], PLAN, 4, 4, backend=be), [feats]),
        (
            "merge_compress",
            lambda t, be: nk.merge_compress(t[0], PLAN, 2, t[1], t[2], h=4, w=4, backend=be),
            [feats.detach().clone().requires_grad_(), r(D), r(D)],
        ),
    ]  # fmt: skip


def _grads(fn, tensors, backend, upstream):
    xs = [t.detach().clone().requires_grad_() for t in tensors]
    y = fn(xs, backend)
    assert y.grad_fn is not None, f"{backend}: output has no grad_fn"
    (y * upstream).sum().backward()
    return y.detach(), [x.grad for x in xs]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("case", range(5), ids=lambda i: _cases("cpu")[i][0])
def test_kernel_backends_give_the_reference_gradients(backend, case):
    dev = backend_device(backend)
    name, fn, tensors = _cases(dev)[case]
    with torch.no_grad():
        shape = fn(tensors, "reference").shape
    upstream = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dev)
    y_ref, g_ref = _grads(fn, tensors, "reference", upstream)
    y, g = _grads(fn, tensors, backend, upstream)
    torch.testing.assert_close(y, y_ref, atol=2e-5, rtol=2e-5)
    for i, (a, b) in enumerate(zip(g, g_ref, strict=True)):
        assert a is not None, f"{name} input {i}: no gradient on {backend}"
        assert b.abs().sum() > 0, f"{name} input {i}: the reference gradient is zero, the test shows nothing"
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_forward_is_the_kernel_when_grad_is_required(monkeypatch):
    """The forward under autograd must run the backend's kernel, not the reference."""
    calls = []
    real = _spec.run_kernel
    monkeypatch.setattr(_spec, "run_kernel", lambda name, be, *a: calls.append((name, be)) or real(name, be, *a))
    x = torch.randn(2, 4, 4, 8, requires_grad=True)
    nk.spatial_compress(x, 2, backend="cpu").sum().backward()
    assert calls == [("spatial_compress", "cpu")]
    assert x.grad is not None


def test_only_some_inputs_require_grad():
    x = torch.randn(2, 4, 4, 8)
    w = torch.randn(32, requires_grad=True)
    b = torch.randn(32)
    y = nk.spatial_compress(x, 2, w, b, backend="cpu")
    y.square().sum().backward()
    wr = w.detach().clone().requires_grad_()
    nk.spatial_compress(x, 2, wr, b, backend="reference").square().sum().backward()
    torch.testing.assert_close(w.grad, wr.grad)


def test_out_is_refused_when_an_input_requires_grad():
    x = torch.randn(2, 4, 4, 8, requires_grad=True)
    out = torch.empty(2, 2, 2, 32)
    with pytest.raises(ValueError, match="out: not supported when an input requires grad"):
        nk.spatial_compress(x, 2, out=out, backend="cpu")
    with torch.no_grad():  # no grad mode: out= is fine
        nk.spatial_compress(x, 2, out=out, backend="cpu")
    torch.testing.assert_close(out, nk.spatial_compress(x.detach(), 2, backend="reference"))


def test_no_graph_without_grad():
    x = torch.randn(4, 3, 8)
    assert nk.temporal_pool(x, 2, backend="cpu").grad_fn is None
    with torch.no_grad():
        assert nk.temporal_pool(x.requires_grad_(), 2, backend="cpu").grad_fn is None
