"""End-to-end benchmark of the nvila model: time per stage of one image question.

    python -m bench.bench_model [--quick|--full|--tiny] [--device cpu|cuda] [--out DIR]

A random-weight NVILA with the real Dynamic-S2 geometry (448-pixel tiles of 14-pixel
patches, scales 448/896/1344, a 1920x1080 image: 17 tiles, a 96x128 merged map, 3072
visual tokens after 2x2 compression) and scaled-down widths and depths, so that a CPU
can run it: the ops see NVILA-8B's token counts, the Linear layers are smaller. Stages:
  tile      the image -> 17 normalized tiles (nvila.processor.tile_image)
  vision    the SigLIP tower over all tiles
  project   merge + 2x2 compression + LayerNorm + projector MLP
  prefill   the LLM over the prompt (visual tokens + text), tokens/s = prompt tokens / time
  decode    one new token with the KV cache, tokens/s = 1 / time; GB/s = LLM weights read / time
Providers: backend (`reference` or our `cpu` / `cuda` / `triton`) x precision (`fp32`
on CPU, `bf16` on GPU, and `fp8`: nvila.quantize_fp8, W8A8 Linear layers). The rows
carry the weight memory of the model in that precision (memory_mb).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import nvila
from bench import common
from nvila.generate import decode_one, prefill
from nvila.processor import tile_image

OP = "model"  # the end-to-end rows
IMAGE = (1920, 1080)
TEXT_TOKENS = 32


def bench_config(mode: str) -> nvila.NVILAConfig:
    """Real Dynamic-S2 geometry; widths and depths by mode (quick: a few seconds per stage)."""
    if mode == "tiny":
        return nvila.preset("tiny")
    if mode == "quick":
        vision = nvila.VisionConfig(hidden=96, layers=2, heads=2, mlp=384, patch=14, image=448)
        llm = nvila.LLMConfig(hidden=256, layers=2, heads=4, kv_heads=2, ffn=704, vocab=8000, rope_theta=1e6)
        return nvila.NVILAConfig(vision, llm, scales=(448, 896, 1344))
    deep = mode == "full"
    vision = nvila.VisionConfig(hidden=192, layers=6 if deep else 3, heads=3, mlp=768, patch=14, image=448)
    llm = nvila.LLMConfig(
        hidden=1024, layers=8 if deep else 4, heads=8, kv_heads=2, ffn=2816, vocab=32000, rope_theta=1e6
    )
    return nvila.NVILAConfig(vision, llm, scales=(448, 896, 1344))


def weight_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()] if t.is_floating_point())


def _image(mode: str) -> np.ndarray:
    w, h = (96, 54) if mode == "tiny" else IMAGE
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], axis=-1)
    return rgb.astype(np.uint8)


def bench_provider(builder, cfg, backend: str, precision: str, mode: str, timing, warnings) -> list[common.Row]:
    device = builder.device
    torch.manual_seed(0)
    dtype = {
        "fp32": torch.float32,
        "bf16": torch.bfloat16,
        "fp8": torch.float32 if device.type == "cpu" else torch.bfloat16,
    }[precision]
    model = nvila.NVILA(cfg, backend=backend).to(device=device, dtype=dtype).eval()
    if precision == "fp8":
        nvila.quantize_fp8(model)
    wbytes = weight_bytes(model)
    image = _image(mode)
    plan = model.plan(image.shape[1], image.shape[0])
    v = cfg.vision
    provider = backend  # the precision is the row's dtype
    rows = []

    def row(stage: str, fn, *, rate: float | None = None, unit: str = "", nbytes: int = 0, times=None):
        times = times or common.time_budgeted(fn, timing, device)
        r = builder.row(op=OP, provider=provider, x=torch.empty(0), times=times, nbytes=nbytes, note=stage)
        r.shape, r.dtype, r.memory_mb = f"{image.shape[1]}x{image.shape[0]}", precision, wbytes / 1e6
        if rate is not None:
            r.rate, r.rate_unit = rate / (times[0] * 1e-3), unit
        rows.append(r)
        return times

    with torch.inference_mode():
        from PIL import Image

        pil = Image.fromarray(image)
        pixels = tile_image(pil, plan, v.image_mean, v.image_std, backend=backend)
        row(
            "tile",
            lambda: tile_image(pil, plan, v.image_mean, v.image_std, backend=backend),
            rate=plan.n_tiles,
            unit="tiles/s",
        )
        feats = model.vision(pixels.to(device, dtype))
        row("vision", lambda: model.vision(pixels.to(device, dtype)), rate=plan.n_tiles, unit="tiles/s")
        visual = model.projector(feats, plan, backend)
        row("project", lambda: model.projector(feats, plan, backend), rate=visual.shape[0], unit="tokens/s")
        gen = torch.Generator().manual_seed(1)
        text = model.llm.embed(torch.randint(0, cfg.llm.vocab, (TEXT_TOKENS,), generator=gen).to(device))
        embeds = [torch.cat([visual.to(dtype), text])]
        n_prompt = embeds[0].shape[0]

        # the LLM with a static KV cache for the prompt + one token, as generate() runs it
        llm = model.llm
        S = n_prompt + 1
        llm.setup_caches(1, S, dtype, device)
        key_valid = torch.ones(1, S, dtype=torch.bool, device=device)
        pos = torch.arange(n_prompt, device=device)
        x = embeds[0][None]  # (1, T, H)
        row("prefill", lambda: prefill(model, x, pos, pos[None], key_valid), rate=n_prompt, unit="tokens/s")
        step = torch.tensor([n_prompt], device=device)
        x1 = llm.embed(torch.tensor([[7]], device=device))  # (1, 1, H)
        llm_bytes = weight_bytes(llm) - llm.embed.weight.numel() * llm.embed.weight.element_size()
        if cfg.llm.tie_embeddings:  # the head reads the embedding matrix
            llm_bytes += llm.embed.weight.numel() * llm.embed.weight.element_size()
        row(
            "decode (per token)",
            lambda: decode_one(model, x1, step, step[None], key_valid),
            rate=1,
            unit="tokens/s",
            nbytes=llm_bytes,
        )
    warnings.append(
        f"{backend} {precision}: {plan.n_tiles} tiles, {visual.shape[0]} visual tokens, prompt {n_prompt} tokens, "
        f"weights {wbytes / 1e6:.1f} MB"
    )
    return rows


def run(args) -> list[common.Row]:
    device, mode, timing = common.configure(args)
    busy = common.busy_machine_note() if device.type == "cpu" else None
    builder = common.RowBuilder(device)
    cfg = bench_config(mode)
    rows: list[common.Row] = []
    warnings: list[str] = common.skipped_backends(device)
    base = "fp32" if device.type == "cpu" else "bf16"
    for backend in [*common.benched_backends(device), "reference"]:
        for precision in (base, "fp8"):
            rows += bench_provider(builder, cfg, backend, precision, mode, timing, warnings)
    return common.report(
        rows, title=f"nvila end to end ({mode} run)", busy=busy, warnings=warnings, results_name=f"model_{device.type}"
    )


def main(argv: list[str] | None = None) -> list[common.Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_model", description=__doc__.split("\n")[0])
    common.add_common_args(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
