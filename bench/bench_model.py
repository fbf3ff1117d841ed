"""End-to-end benchmark of the nvila model: time per stage of one image question.

    python -m bench.bench_model [--quick|--full|--tiny] [--device cpu|cuda] [--out DIR]
    python -m bench.bench_model --peer [--tiny]   # side by side with transformers (run_peer)

A random-weight NVILA with the real Dynamic-S2 geometry (448-pixel tiles of 14-pixel
patches, scales 448/896/1344, a 1920x1080 image: 17 tiles, a 96x128 merged map, 3072
visual tokens after 2x2 compression) and scaled-down widths and depths, so that a CPU
can run it: the ops see NVILA-8B's token counts, the Linear layers are smaller. Stages:
  tile      the image -> 17 normalized tiles (model.preprocessor(): nvila_kernels' multiscale_tile)
  vision    the SigLIP tower over all tiles
  project   merge + 2x2 compression + LayerNorm + projector MLP
  prefill   the LLM over the prompt (visual tokens + text), tokens/s = prompt tokens / time
  decode    one new token with the KV cache, tokens/s = 1 / time; GB/s = LLM weights read / time
Providers: backend (`reference` or our `cpu` / `cuda` / `triton`) x precision (`fp32`
on CPU, `bf16` on GPU, and `fp8`: nvila.quantize_fp8, W8A8 Linear layers). The rows
carry the weight memory of the model in that precision (memory_mb). FP8 on CPU: the path
of every FP8 GEMM shape run (nvila_kernels.layers.fp8_cpu_path) is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses

import numpy as np
import torch

import nvila
from bench import common
from nvila.generate import decode_one, prefill

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


@contextlib.contextmanager
def fp8_gemm_shapes(model: torch.nn.Module):
    """The set of (M, N, K) of every Fp8Linear call of `model` inside the block."""
    from nvila_kernels.layers import Fp8Linear

    shapes: set[tuple[int, int, int]] = set()

    def record(layer, args):
        x = args[0]
        shapes.add((x.numel() // x.shape[-1], layer.out_features, layer.in_features))

    handles = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, Fp8Linear)]
    try:
        yield shapes
    finally:
        for h in handles:
            h.remove()


def fp8_paths_line(shapes: set[tuple[int, int, int]]) -> str:
    """Which CPU path (nvila_kernels.layers.fp8_cpu_path) each FP8 GEMM shape takes."""
    from nvila_kernels import backends
    from nvila_kernels.layers import fp8_cpu_path

    paths = [f"{m} x {k} x {n}: {fp8_cpu_path(m, n, k)}" for m, n, k in sorted(shapes, key=lambda s: (-s[0], s))]
    return f"FP8 GEMM paths on CPU (fp8_gemm ISA {backends.cpu_isa()}), M x K x N: " + ", ".join(paths)


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
    provider = backend  # the precision is the row's dtype
    rows = []
    on_cpu_fp8 = precision == "fp8" and device.type == "cpu" and backend == "cpu"
    shapes = fp8_gemm_shapes(model) if on_cpu_fp8 else contextlib.nullcontext(set())

    def row(stage: str, fn, *, rate: float | None = None, unit: str = "", nbytes: int = 0, times=None, warmed=False):
        times = times or common.time_budgeted(fn, timing, device, warmed=warmed)
        r = builder.row(op=OP, provider=provider, x=torch.empty(0), times=times, nbytes=nbytes, note=stage)
        r.shape, r.dtype, r.memory_mb = f"{image.shape[1]}x{image.shape[0]}", precision, wbytes / 1e6
        if rate is not None:
            r.rate, r.rate_unit = rate / (times[0] * 1e-3), unit
        rows.append(r)
        return times

    with torch.inference_mode(), shapes as fp8_shapes:
        from PIL import Image

        pil = Image.fromarray(image)
        preprocess = model.preprocessor()  # the model's backend
        pixels, _ = preprocess(pil)
        row(
            "tile",
            lambda: preprocess(pil),
            rate=plan.n_tiles,
            unit="tiles/s",
            warmed=True,
        )
        feats = model.vision(pixels.to(device, dtype))
        row("vision", lambda: model.vision(pixels.to(device, dtype)), rate=plan.n_tiles, unit="tiles/s", warmed=True)
        visual = model.projector(feats, plan, backend)
        row(
            "project", lambda: model.projector(feats, plan, backend), rate=visual.shape[0], unit="tokens/s", warmed=True
        )
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
        row("prefill", lambda: prefill(model, x, pos[None], [0]), rate=n_prompt, unit="tokens/s")
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
    if on_cpu_fp8:
        warnings.append(fp8_paths_line(fp8_shapes))
    return rows


# ---- side by side: VILA's stack on transformers (run_peer, --peer) ------------------

PEER_STEPS = 16  # greedy tokens generated on both sides and compared
PROJECTED_PREFILL = "prefill, full depth (projected)"
PROJECTED_TTFT = "time to first token, full depth (projected)"


def full_prefill(m: nvila.NVILA, x: torch.Tensor, rope_pos: torch.Tensor) -> torch.Tensor:
    """The prefill of every layer at every position (the LM head at the last): what
    generation ran before last_only, and what a full layer costs."""
    h = m.llm.hidden(x, torch.arange(x.shape[1]), rope_pos, None, left_pad=[0])
    return m.llm.logits(h[:, -1]).float()


def peer_config(mode: str) -> nvila.NVILAConfig:
    """NVILA-8B widths (SigLIP-so400m, Qwen2-7B, Dynamic-S2 448/896/1344, 2x2 projector)
    with 2 SigLIP blocks computed (select_layer -2 of 3), 1 Qwen2 layer and an 8k
    vocabulary; tiny mode: the tiny preset (checks the path runs)."""
    if mode == "tiny":
        return nvila.preset("tiny")
    c = nvila.preset("nvila-8b")
    vision = dataclasses.replace(c.vision, layers=3)
    llm = dataclasses.replace(c.llm, layers=1, vocab=8192)
    return dataclasses.replace(c, vision=vision, llm=llm)


def _copy(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    dst.weight.copy_(src.weight)
    if getattr(src, "bias", None) is not None:
        dst.bias.copy_(src.bias)


@torch.no_grad()
def peer_models(model: nvila.NVILA):
    """transformers' SiglipVisionModel and Qwen2ForCausalLM (sdpa attention) holding the
    weights of `model`, and the projector as unfused modules (LayerNorm, Linear, GELU,
    Linear), as VILA runs them."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, SiglipVisionConfig, SiglipVisionModel

    v, L = model.cfg.vision, model.cfg.llm
    vcfg = SiglipVisionConfig(
        hidden_size=v.hidden, intermediate_size=v.mlp, num_hidden_layers=v.computed_layers,
        num_attention_heads=v.heads, image_size=v.image, patch_size=v.patch, layer_norm_eps=v.eps,
        hidden_act="gelu_pytorch_tanh", vision_use_head=False, attn_implementation="sdpa",
    )  # fmt: skip
    vision = SiglipVisionModel(vcfg).eval()
    tower = getattr(vision, "vision_model", vision)  # transformers < 5 wraps the transformer
    emb, enc = tower.embeddings, tower.encoder
    _copy(emb.patch_embedding, model.vision.patch)
    _copy(emb.position_embedding, model.vision.pos)
    for ours, theirs in zip(model.vision.blocks, enc.layers, strict=True):
        a = theirs.self_attn
        pairs = [(theirs.layer_norm1, ours.norm1), (theirs.layer_norm2, ours.norm2), (a.q_proj, ours.attn.q),
                 (a.k_proj, ours.attn.k), (a.v_proj, ours.attn.v), (a.out_proj, ours.attn.out),
                 (theirs.mlp.fc1, ours.mlp.fc1), (theirs.mlp.fc2, ours.mlp.fc2)]  # fmt: skip
        for dst, src in pairs:
            _copy(dst, src)
    qcfg = Qwen2Config(
        vocab_size=L.vocab, hidden_size=L.hidden, intermediate_size=L.ffn, num_hidden_layers=L.layers,
        num_attention_heads=L.heads, num_key_value_heads=L.kv_heads, rope_theta=L.rope_theta, rms_norm_eps=L.eps,
        max_position_embeddings=L.max_seq_len, tie_word_embeddings=L.tie_embeddings, attn_implementation="sdpa",
    )  # fmt: skip
    qwen = Qwen2ForCausalLM(qcfg).eval()
    _copy(qwen.model.embed_tokens, model.llm.embed)
    _copy(qwen.model.norm, model.llm.norm)
    _copy(qwen.lm_head, model.llm.embed if model.llm.head is None else model.llm.head)
    for ours, theirs in zip(model.llm.layers, qwen.model.layers, strict=True):
        a, m = theirs.self_attn, theirs.mlp
        pairs = [(theirs.input_layernorm, ours.norm1), (theirs.post_attention_layernorm, ours.norm2),
                 (a.q_proj, ours.attn.q), (a.k_proj, ours.attn.k), (a.v_proj, ours.attn.v), (a.o_proj, ours.attn.o),
                 (m.gate_proj, ours.mlp.gate), (m.up_proj, ours.mlp.up), (m.down_proj, ours.mlp.down)]  # fmt: skip
        for dst, src in pairs:
            _copy(dst, src)
    pr = model.projector
    if pr.k != 2:
        raise ValueError(f"peer: the 2x2 projector (mlp_downsample) only, got k={pr.k}")
    fc1, fc2 = (torch.nn.Linear(f.in_features, f.out_features) for f in (pr.fc1, pr.fc2))
    projector = torch.nn.Sequential(torch.nn.LayerNorm(pr.ln.normalized_shape, eps=pr.eps), fc1, torch.nn.GELU(), fc2)
    for dst, src in zip((projector[0], projector[1], projector[3]), (pr.ln, pr.fc1, pr.fc2), strict=True):
        _copy(dst, src)
    return vision, qwen, projector


def peer_tiles(image, plan, mean, std) -> torch.Tensor:
    """Dynamic-S2 preprocessing in plain PIL + torch: per scale, a bicubic resize to the
    scale's size, cut into tiles (row-major), scaled to [0, 1] and normalized."""
    from PIL import Image

    t, tiles = plan.tile, []
    for s in plan.scales:
        im = torch.from_numpy(np.array(image.resize((s.width, s.height), Image.BICUBIC)))  # (H, W, 3) uint8
        x = im.permute(2, 0, 1).float() / 255  # (3, H, W)
        tiles.append(x.reshape(3, s.rows, t, s.cols, t).permute(1, 3, 0, 2, 4).reshape(-1, 3, t, t))
    m, sd = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    return (torch.cat(tiles) - m) / sd


def hf_processor(tile: int, mean, std):
    """transformers' SigLIP image processor (its PIL backend: no torchvision) for `tile`-pixel
    tiles: bicubic resize to the tile size, rescale by 1/255, normalize."""
    try:
        from transformers import SiglipImageProcessorPil as Processor  # transformers >= 5
    except ImportError:
        from transformers import SiglipImageProcessor as Processor
    return Processor(size={"height": tile, "width": tile}, image_mean=list(mean), image_std=list(std))


def peer_tiles_hf(image, plan, processor) -> torch.Tensor:
    """Dynamic-S2 preprocessing as VILA (and SGLang, which runs VILA's processing) does it:
    per scale a PIL bicubic resize and PIL crops of its tiles (row-major), then the HF image
    processor on all the crops. The same tiles as peer_tiles, computed their way."""
    from PIL import Image

    t, crops = plan.tile, []
    for s in plan.scales:
        im = image.resize((s.width, s.height), Image.BICUBIC)
        crops += [im.crop((c * t, r * t, (c + 1) * t, (r + 1) * t)) for r in range(s.rows) for c in range(s.cols)]
    return processor(images=crops, return_tensors="pt")["pixel_values"]


def peer_project(feats: torch.Tensor, plan, k: int, projector: torch.nn.Module) -> torch.Tensor:
    """VILA's glue after the tower, unfused: each scale's tiles into one map, area-resized
    to the largest scale, concatenated on channels; k x k space-to-depth within the tile
    blocks (tokens row-major over the whole grid), then the projector MLP."""
    n, hw, C = feats.shape
    h = w = int(round(hw**0.5))
    last = plan.scales[-1]
    size, maps, t0 = (last.rows * h, last.cols * w), [], 0
    for s in plan.scales:
        m = feats[t0 : t0 + s.n_tiles].reshape(s.rows, s.cols, h, w, C)
        m = m.permute(4, 0, 2, 1, 3).reshape(1, C, s.rows * h, s.cols * w)
        maps.append(torch.nn.functional.interpolate(m, size=size, mode="area"))
        t0 += s.n_tiles
    merged = torch.cat(maps, dim=1)[0]  # (S*C, H, W)
    if h % k or w % k:
        raise ValueError(f"peer: a tile grid divisible by k={k} only, got {h}x{w}")
    SC = merged.shape[0]
    x = merged.reshape(SC, last.rows, h // k, k, last.cols, w // k, k)  # (c, bi, I, dr, bj, J, dc)
    x = x.permute(1, 2, 4, 5, 3, 6, 0).reshape(-1, k * k * SC)  # tokens (bi, I, bj, J), channels (dr, dc, c)
    return projector(x)


def _peak_growth_mb(fn) -> float:
    """Resident memory high-water mark during fn() above the resident memory before it
    (Linux: VmHWM reset through /proc/self/clear_refs), in 1e6 bytes; nan elsewhere."""

    def status(key: str) -> int:
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status("VmRSS:")
    except OSError:
        return float("nan")
    fn()
    return (status("VmHWM:") - before) / 1e6


def run_peer(args) -> list[common.Row]:
    """Stage by stage: nvila (fp32, fp8) against transformers' SiglipVisionModel +
    Qwen2ForCausalLM (sdpa) with NVILA's glue written here, on the same random weights,
    with the agreement of 16 greedy tokens. Each stage's reps alternate between the three
    sides, so that a shared machine's load drifts over all of them alike."""
    import copy

    from PIL import Image

    device, mode, _ = common.configure(args)
    if device.type != "cpu":
        raise ValueError("--peer: the side-by-side run is a CPU comparison (device cpu)")
    busy = common.busy_machine_note()
    builder = common.RowBuilder(device)
    cfg = peer_config(mode)
    reps = 1 if mode == "tiny" else 3
    torch.manual_seed(0)
    model = nvila.NVILA(cfg).eval()
    for p in model.parameters():  # weights of trained-model scale, so the greedy tokens are not ties
        torch.nn.init.normal_(p, std=0.02) if p.dim() > 1 else None
    vision_peer, qwen, projector = peer_models(model)
    model8 = nvila.quantize_fp8(copy.deepcopy(model))
    image = Image.fromarray(_image(mode))
    plan = model.plan(image.width, image.height)
    v = cfg.vision
    gen = torch.Generator().manual_seed(1)
    text_ids = torch.randint(0, cfg.llm.vocab, (TEXT_TOKENS,), generator=gen)
    tokens: dict[str, list[int]] = {}
    memory: dict[str, float] = {}
    fns: dict[str, dict[str, object]] = {}  # side -> stage -> the timed call (inputs computed once)

    def ours(side: str, m: nvila.NVILA) -> None:
        preprocess = m.preprocessor()
        pixels, _ = preprocess(image)
        feats = m.vision(pixels)
        visual = m.projector(feats, plan)
        embeds = torch.cat([visual, m.llm.embed(text_ids)])
        T = embeds.shape[0]
        m.llm.setup_caches(1, T + PEER_STEPS)
        x, pos = embeds[None], torch.arange(T)[None]
        logits = []
        memory[side] = _peak_growth_mb(lambda: logits.append(prefill(m, x, pos, [0])))
        key_valid = torch.zeros(1, T + PEER_STEPS, dtype=torch.bool)
        key_valid[:, :T] = True
        tok = logits[0].argmax(-1)
        tokens[side] = [int(tok)]
        for t in range(T, T + PEER_STEPS - 1):  # greedy, as nvila.generate_ids runs it
            key_valid[:, t] = True
            step = torch.tensor([t])
            tok = decode_one(m, m.llm.embed(tok)[:, None], step, step[None], key_valid).argmax(-1)
            tokens[side].append(int(tok))
        step, x1 = torch.tensor([T]), m.llm.embed(torch.tensor([[tokens[side][0]]]))
        key_valid = torch.arange(T + PEER_STEPS)[None] <= T  # the timed step: the prompt and itself
        fns[side] = {
            "preprocess": lambda: preprocess(image),
            "vision tower": lambda: m.vision(pixels),
            "merge + compress + projector": lambda: m.projector(feats, plan),
            "prefill": lambda: prefill(m, x, pos, [0]),
            "prefill, every position": lambda: full_prefill(m, x, pos),
            "decode, per token": lambda: decode_one(m, x1, step, step[None], key_valid),
        }

    def theirs(side: str) -> None:
        pixels = peer_tiles(image, plan, v.image_mean, v.image_std)
        processor = hf_processor(v.image, v.image_mean, v.image_std)

        def tower():
            return vision_peer(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]

        feats = tower()
        visual = peer_project(feats, plan, cfg.k, projector)
        x = torch.cat([visual, qwen.model.embed_tokens(text_ids)])[None]

        def prefill_peer():  # as transformers' generate() runs it: the LM head on the last position
            return qwen(inputs_embeds=x, use_cache=True, logits_to_keep=1)

        outs = []
        memory[side] = _peak_growth_mb(lambda: outs.append(prefill_peer()))
        cache, T = outs[0].past_key_values, x.shape[1]
        tok = outs[0].logits[:, -1].argmax(-1)
        tokens[side] = [int(tok)]
        for _ in range(PEER_STEPS - 1):
            tok = qwen(input_ids=tok[:, None], past_key_values=cache, use_cache=True).logits[:, -1].argmax(-1)
            tokens[side].append(int(tok))
        first = torch.tensor([[tokens[side][0]]])

        def decode_peer():
            extra = cache.get_seq_length() - T  # the tokens decoded since the prompt
            if extra:
                cache.crop(-extra)
            return qwen(input_ids=first, past_key_values=cache, use_cache=True)

        fns[side] = {
            "preprocess": lambda: peer_tiles_hf(image, plan, processor),  # VILA's / SGLang's way
            "vision tower": tower,
            "merge + compress + projector": lambda: peer_project(feats, plan, cfg.k, projector),
            "prefill": prefill_peer,
            "prefill, every position": None,  # = "prefill": transformers runs every layer everywhere
            "decode, per token": decode_peer,
        }

    sides = ("transformers", "cpu", "cpu-fp8")
    samples: dict[tuple[str, str], list[float]] = {}
    with torch.inference_mode():
        theirs("transformers")
        ours("cpu", model)
        with fp8_gemm_shapes(model8) as fp8_shapes:
            ours("cpu-fp8", model8)
        for stage in fns["cpu"]:
            n = 5 if stage in ("preprocess", "decode, per token") else reps
            for _ in range(n):
                for side in sides:
                    if fns[side][stage] is None:
                        continue
                    samples.setdefault((stage, side), []).append(
                        common.time_fn(fns[side][stage], warmup=0, reps=1, device=device)[0]
                    )
    times = {key: float(np.median(ts)) for key, ts in samples.items()}
    times["prefill, every position", "transformers"] = times["prefill", "transformers"]
    rows = []
    for (stage, side), ts in samples.items():
        p20, med, p80 = np.percentile(np.asarray(ts), [20, 50, 80])
        r = builder.row(op=OP, provider=side, x=torch.empty(0), times=(med, p20, p80), nbytes=0, note=f"peer: {stage}")
        r.shape, r.dtype = f"{image.width}x{image.height}", "fp8" if side.endswith("fp8") else "fp32"
        rows.append(r)
    n_blocks, n_layers = v.computed_layers, cfg.llm.layers
    full = nvila.preset("nvila-8b")  # the depths the projection is for
    for side in ("transformers", "cpu", "cpu-fp8"):
        times["vision, per block", side] = times["vision tower", side] / n_blocks
        times["time to first token", side] = sum(
            times[s, side] for s in ("preprocess", "vision tower", "merge + compress + projector", "prefill")
        )
        # full depth: every layer as "every position" but the last, which costs what
        # "prefill" saved over "prefill, every position" less (nvila's last_only prefill)
        per_layer = times["prefill, every position", side] / n_layers
        saved = times["prefill, every position", side] - times["prefill", side]
        times["prefill, per layer", side] = per_layer
        times[PROJECTED_PREFILL, side] = full.llm.layers * per_layer - saved
        times[PROJECTED_TTFT, side] = (
            times["preprocess", side]
            + full.vision.computed_layers * times["vision, per block", side]
            + times["merge + compress + projector", side]
            + times[PROJECTED_PREFILL, side]
        )
    stages = ["preprocess", "vision, per block", "merge + compress + projector", "prefill, per layer", "prefill",
              "decode, per token", "time to first token", PROJECTED_PREFILL, PROJECTED_TTFT]  # fmt: skip
    lines = [
        f"## nvila vs transformers, side by side ({mode} run)",
        "",
        f"{plan.n_tiles} tiles, prompt {len(text_ids)} text tokens + visual tokens; {n_blocks} SigLIP blocks, "
        f"{cfg.llm.layers} Qwen2 layer(s), vocabulary {cfg.llm.vocab}; {torch.get_num_threads()} threads; "
        f"median of {reps} (preprocess, decode: 5), the sides' reps interleaved; time to first token = preprocess + "
        "vision + project + prefill",
        "",
        "| stage (ms) | nvila fp32 | nvila fp8 | transformers fp32 | transformers / nvila fp32 | fp32 / fp8 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in stages:
        a, b, c = times[s, "cpu"], times[s, "cpu-fp8"], times[s, "transformers"]
        lines.append(f"| {s} | {a:,.1f} | {b:,.1f} | {c:,.1f} | {c / a:.2f}x | {a / b:.2f}x |")
    lines += [
        "",
        f"prefill peak memory growth (MB): nvila fp32 {memory['cpu']:.0f}, fp8 {memory['cpu-fp8']:.0f}, "
        f"transformers {memory['transformers']:.0f}",
    ]
    agree = sum(x == y for x, y in zip(tokens["cpu"], tokens["transformers"], strict=True))
    agree8 = sum(x == y for x, y in zip(tokens["cpu"], tokens["cpu-fp8"], strict=True))
    lines.append(
        f"greedy tokens: nvila fp32 = transformers on {agree}/{PEER_STEPS}, nvila fp8 = nvila fp32 on "
        f"{agree8}/{PEER_STEPS}"
    )
    lines.append(fp8_paths_line(fp8_shapes))
    if busy:
        lines += ["", busy]
    text = "\n".join(lines)
    print(text)
    common.write_jsonl(rows, "model_peer_cpu")  # creates the results directory
    (common.results_dir() / "model_peer_cpu.md").write_text(text + "\n")
    return rows


def run(args) -> list[common.Row]:
    if getattr(args, "peer", False):
        return run_peer(args)
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
    parser.add_argument(
        "--peer",
        action="store_true",
        help="instead: NVILA-8B widths (2 SigLIP blocks, 1 Qwen2 layer) against transformers' SiglipVisionModel + "
        "Qwen2ForCausalLM with NVILA's glue, per stage",
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
