"""`make demo`: NVILA's compression step on the kernels, checked against the reference.

Until the full model lands (nvila.model), the demo runs the two token-compression
ops of NVILA-8B on realistic shapes with the fastest backend available here,
compares each with the PyTorch reference and prints what happened.
"""

from __future__ import annotations

import time

import torch

import nvila_kernels as nk
from nvila_kernels import backends, reference


def _timed(fn, reps=3):
    fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        y = fn()
        t.append(time.perf_counter() - t0)
    return y, sorted(t)[len(t) // 2] * 1e3


def main() -> None:
    print(nk.info())
    print()
    torch.manual_seed(0)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    be = backends.resolve("spatial_compress", None, dev)

    # One 1920x1080 image under Dynamic-S2: 4x3 tiles at the largest scale, merged
    # map of 96x128 tokens x 3456 channels (3 scales x 1152), 2x2 compression.
    x = torch.randn(1, 96, 128, 3456, device=dev)
    w = 1 + 0.1 * torch.randn(4 * 3456, device=dev)
    b = 0.1 * torch.randn(4 * 3456, device=dev)
    y, ms = _timed(lambda: nk.spatial_compress(x, 2, w, b))
    ref, ref_ms = _timed(lambda: reference.spatial_compress(x, 2, w, b))
    err = (y - ref).abs().max().item()
    print("NVILA-8B, one 1920x1080 image: spatial_compress(k=2) + LayerNorm")
    print(f"  tokens {96 * 128} x {3456} -> {y.shape[1] * y.shape[2]} x {y.shape[3]}  (backend {be})")
    print(f"  {ms:.1f} ms vs reference {ref_ms:.1f} ms ({ref_ms / ms:.1f}x), max |diff| {err:.2e}")

    # A 64-frame video: 256 projector tokens per frame, averaged in groups of 8.
    v = torch.randn(64, 16, 16, 3584, device=dev, dtype=torch.bfloat16)
    p, ms = _timed(lambda: nk.temporal_pool(v, 8))
    ref, ref_ms = _timed(lambda: reference.temporal_pool(v, 8))
    err = (p.float() - ref.float()).abs().max().item()
    print("NVILA-8B-Video, 64 frames: temporal_pool(group=8)")
    print(f"  visual tokens {64 * 256} -> {p.shape[0] * 256}  (backend {backends.resolve('temporal_pool', None, dev)})")
    print(f"  {ms:.1f} ms vs reference {ref_ms:.1f} ms ({ref_ms / ms:.1f}x), max |diff| {err:.2e}")
    ok = torch.allclose(y, reference.spatial_compress(x, 2, w, b), atol=1e-4) and err < 1e-2

    # One decode step through an FP8 linear layer of the LLM (Qwen2-7B MLP up projection).
    linear = torch.nn.Linear(3584, 18944, bias=False, device=dev).bfloat16()
    fp8 = nk.layers.Fp8Linear.from_linear(linear)
    h = torch.randn(1, 3584, device=dev, dtype=torch.bfloat16)
    out8, ms8 = _timed(lambda: fp8(h))
    out16, ms16 = _timed(lambda: linear(h))
    exact = h.float() @ linear.weight.float().t()
    sqnr = 10 * torch.log10(exact.pow(2).sum() / (exact - out8.float()).pow(2).sum()).item()
    print("FP8 W8A8 decode step, 3584 -> 18944 (Qwen2-7B MLP up), batch 1")
    print(f"  Fp8Linear {ms8:.2f} ms vs bf16 nn.Linear {ms16:.2f} ms ({ms16 / ms8:.1f}x), SQNR {sqnr:.1f} dB")
    ok = ok and sqnr > 25
    print("kernels agree with the reference" if ok else "MISMATCH between kernels and reference")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
