"""`make demo`: the tiny NVILA shipped in the package answering questions about the
bundled held-out images and video, then NVILA's compression step on the kernels,
checked against the reference.

The model (nvila.TINY_MODEL) was trained by nvila.tiny.train on the procedural
coloured-shapes task of nvila.tiny.shapes; it has the full architecture (Dynamic-S2 over
three scales, SigLIP-style tower, 2x2 compressing projector, Qwen2-style LLM, chat
template, temporal averaging of video frames) at a tiny size.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch

import nvila_kernels as nk
from nvila_kernels import backends, reference

PALETTE = {"R": (220, 40, 40), "G": (40, 190, 60), "B": (50, 90, 235), "Y": (235, 215, 40), "W": (240, 240, 240)}


def ascii_thumbnail(image, width: int = 36) -> list[str]:
    """The image as text: one character per cell (cells twice as tall as wide), the
    initial of the nearest shape colour, or '.' for background."""
    w, h = image.size
    cols = min(width, w)
    rows = max(1, round(h / w * cols / 2))
    px = np.asarray(image.convert("RGB"), dtype=np.float32)
    keys, ref = list(PALETTE), np.array(list(PALETTE.values()), dtype=np.float32)
    out = []
    for r in range(rows):
        line = ""
        for c in range(cols):
            y, x = int((r + 0.5) * h / rows), int((c + 0.5) * w / cols)
            d = np.linalg.norm(ref - px[y, x], axis=1)
            line += keys[int(d.argmin())] if d.min() < 90 else "."
        out.append(line)
    return out


def describe(model, image) -> str:
    """Size, Dynamic-S2 plan and visual token count of an image."""
    plan = model.plan(*image.size)
    grids = " + ".join(f"{s.cols}x{s.rows}" for s in plan.scales)
    rows, cols = plan.block_size
    g = model.cfg.vision.grid
    side = -(-g // model.cfg.k)
    return (
        f"{image.width}x{image.height} px -> Dynamic-S2 tiles {grids} (cols x rows) of {plan.tile} px = "
        f"{plan.n_tiles} tiles; merged map {rows * g}x{cols * g} tokens -> "
        f"{model.cfg.k}x{model.cfg.k} projector -> {rows * cols * side * side} visual tokens"
    )


def model_demo() -> bool:
    import nvila
    from nvila.media import load_image, load_video

    model = nvila.load(nvila.TINY_MODEL, dtype="fp32")
    n = sum(p.numel() for p in model.parameters())
    print(f"The tiny NVILA shipped in the package ({n / 1e3:.0f}k parameters, {nvila.TINY_MODEL})")
    with open(os.path.join(nvila.SAMPLES, "samples.json")) as f:
        samples = json.load(f)
    right = total = 0
    for s in samples.values():
        path = os.path.join(nvila.SAMPLES, s["file"])
        print()
        if s["video"]:
            frames = load_video(path, model.cfg.num_video_frames)
            print(f"video {s['file']}: {len(frames)} frames of {frames[0].width}x{frames[0].height} px, each one "
                  f"{model.cfg.vision.image} px tile, averaged in groups of {model.cfg.temporal_pool}")  # fmt: skip
            thumbs = [ascii_thumbnail(f, 12) for f in frames]
            for r in range(max(len(t) for t in thumbs)):
                print("  " + " ".join(t[r] if r < len(t) else " " * len(t[0]) for t in thumbs))
            media = {"video": frames}
        else:
            image = load_image(path)
            print(f"image {s['file']}: {describe(model, image)}")
            for line in ascii_thumbnail(image):
                print("  " + line)
            media = {"images": [image]}
        for _qtype, question, expected in s["questions"]:
            answer = nvila.generate(model, question, max_new_tokens=8, **media).strip()
            ok = answer == expected
            right += ok
            total += 1
            print(f"  Q: {question:<48} A: {answer:<16} {'ok' if ok else 'WRONG, expected ' + expected}")
    print(f"\n{right}/{total} answers right (held-out scenes; `python -m nvila.tiny.eval` measures more)\n")
    return right >= 0.5 * total


def _timed(fn, reps=3):
    fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        y = fn()
        t.append(time.perf_counter() - t0)
    return y, sorted(t)[len(t) // 2] * 1e3


def kernel_demo() -> bool:
    """NVILA-8B-sized compression and an FP8 decode-step Linear on the fastest kernels here."""
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

    ok = torch.allclose(y, reference.spatial_compress(x, 2, w, b), atol=1e-4)

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
    return ok


def main() -> None:
    ok = model_demo()
    ok = kernel_demo() and ok
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
