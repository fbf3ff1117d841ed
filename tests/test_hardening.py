"""Hardening: no memory growth when ops are called in a loop, and the ops are safe to
call from several Python threads at once (results equal to sequential calls)."""

from __future__ import annotations

import gc
import os
import threading

import pytest
import torch

import nvila_kernels as nk
from nvila_kernels import reference
from nvila_kernels.tiling import plan_tiles

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _cases(backend: str):
    """(name, fn) per op: small inputs, fixed seeds; each fn returns a tensor."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 12, 12, 64, generator=g)
    w, b = torch.randn(256, generator=g), torch.randn(256, generator=g)
    frames = torch.randn(16, 4, 4, 96, generator=g)
    qa, sa = reference.fp8_quantize(torch.randn(3, 96, generator=g))
    qb, sb = reference.fp8_quantize(torch.randn(80, 96, generator=g))
    plan = plan_tiles(100, 60, (28, 56, 84), 28)
    feats = torch.randn(plan.n_tiles, 16, 32, generator=g)
    image = torch.randint(0, 256, (60, 100, 3), dtype=torch.uint8, generator=g)
    D = 4 * 3 * 32
    mw, mb = torch.randn(D, generator=g), torch.randn(D, generator=g)
    return [
        ("spatial_compress", lambda: nk.spatial_compress(x, 2, w, b, backend=backend)),
        ("temporal_pool", lambda: nk.temporal_pool(frames, 8, backend=backend)),
        ("fp8_quantize", lambda: nk.fp8_quantize(frames, backend=backend)[0].view(torch.uint8)),
        ("fp8_gemm", lambda: nk.fp8_gemm(qa, qb, sa, sb, None, torch.float32, backend=backend)),
        ("multiscale_merge", lambda: nk.multiscale_merge(feats, plan, 4, 4, backend=backend)),
        ("merge_compress", lambda: nk.merge_compress(feats, plan, 2, mw, mb, h=4, w=4, backend=backend)),
        ("multiscale_tile", lambda: nk.multiscale_tile(image, plan, backend=backend)),
    ]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_no_memory_growth_in_a_loop(backend):
    """200 calls of every op: resident memory grows by less than 8 MB after a warm-up
    (a leak of one output per call would be 200x its size: tens of MB here)."""
    cases = _cases(backend)
    for _, fn in cases:  # warm-up: allocator pools, OpenMP threads, lazy init
        for _ in range(20):
            fn()
    gc.collect()
    before = rss_bytes()
    for _ in range(200):
        for _, fn in cases:
            fn()
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 8 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MB over 200 calls of each op"


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_ops_are_thread_safe(backend):
    """4 Python threads run every op 10 times each, concurrently; every result equals the
    sequential one exactly."""
    cases = _cases(backend)
    expected = {name: fn() for name, fn in cases}
    errors: list[str] = []

    def worker():
        try:
            for _ in range(10):
                for name, fn in cases:
                    if not torch.equal(fn(), expected[name]):
                        errors.append(f"{name}: a concurrent result differs from the sequential one")
        except Exception as e:  # reported below with the op's context
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors[:5]
