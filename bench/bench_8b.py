"""NVILA-8B at full size on the CPU: a random-weight checkpoint in the release layout,
loaded with bf16 weights and with FP8 quantize-on-load (nvila.load(path, fp8=True)).

    python -m bench.bench_8b [--dir DIR] [--variants fp8,bf16] [--decode-tokens 8] [--no-image]

The checkpoint (preset "nvila-8b": SigLIP + Qwen2-7B, bf16, each part sharded with a
model.safetensors.index.json, the configs load() reads; the tokenizer is the shipped tiny
model's, enough to build prompts: the random model's answers are ids, not text) is written
once, shard by shard, to --dir (default ~/.cache/nvila_kernels/nvila-8b-random) and reused.

Each variant runs in a fresh subprocess, one at a time, and reports:
  load_s        nvila.load() wall time
  peak_rss_gb   VmHWM (the process's peak resident memory) after the load, and for bf16
                after one decode step (its weights are memory-mapped: a step pages them in)
  weights_gb    the loaded model's parameters and buffers (FP8: the FP8 Linears + the bf16 rest)
fp8 only, with the CPU copy bandwidth measured in the same process:
  decode        tokens/s over --decode-tokens greedy steps after a text prompt, against the
                weight-streaming bound: copy GB/s / LLM weight bytes read per token
  ttft          time to the first token (prompt embedding + prefill + LM head) for a
                text-only prompt and for one 448x448 image (14 Dynamic-S2 tiles, 2304 visual tokens)
The bf16 variant runs only when MemAvailable holds its weights with a margin: bf16 NVILA-8B
is ~16 GB resident.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
import torch

import nvila
from bench import common
from nvila.weights import SUBDIRS, checkpoint_names, config_jsons

DEFAULT_DIR = os.path.expanduser("~/.cache/nvila_kernels/nvila-8b-random")
SHARD_BYTES = 2 * 10**9  # bounds the writer's memory: one shard is built at a time
TEXT_PROMPT = "Describe the weather in Paris in one short sentence."
GB = 1e9


# ---- the checkpoint -------------------------------------------------------------


def checkpoint_shapes(cfg: nvila.NVILAConfig) -> dict[str, dict[str, torch.Size]]:
    """subdirectory -> checkpoint tensor name -> shape, in checkpoint_names order."""
    with torch.device("meta"):
        model = nvila.NVILA(cfg)
    state = model.state_dict()
    shapes: dict[str, dict[str, torch.Size]] = {sub: {} for sub in SUBDIRS}
    for ours, (sub, theirs) in checkpoint_names(cfg).items():
        shapes[sub][theirs] = state[ours].shape
    return shapes


def random_tensor(name: str, shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    """bf16: norm weights 1, biases 0, other weights N(0, 0.02^2)."""
    if len(shape) == 1:
        is_norm_weight = name.endswith("weight") and ("norm" in name or name.startswith("layers.1."))  # projector LN
        return torch.ones(shape, dtype=torch.bfloat16) if is_norm_weight else torch.zeros(shape, dtype=torch.bfloat16)
    return (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)


def write_checkpoint(path: str, cfg: nvila.NVILAConfig) -> None:
    """Write the random-weight checkpoint to `path` (via path + ".partial", renamed when
    complete, so an interrupted write is never taken for a checkpoint)."""
    from safetensors.torch import save_file

    shapes = checkpoint_shapes(cfg)
    total = sum(s.numel() * 2 for part in shapes.values() for s in part.values())
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    free = shutil.disk_usage(parent).free
    if free < total + GB:
        raise SystemExit(
            f"bench_8b: {parent} has {free / GB:.1f} GB free, the checkpoint needs {total / GB:.1f} GB + 1"
        )
    tmp = path + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    for name, content in config_jsons(cfg, torch.bfloat16).items():
        os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
        with open(os.path.join(tmp, name), "w") as f:
            json.dump(content, f, indent=2)
    shutil.copy(os.path.join(nvila.TINY_MODEL, "llm", "tokenizer.json"), os.path.join(tmp, "llm", "tokenizer.json"))
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for sub in SUBDIRS:
        # group the part's tensors into shards of at most SHARD_BYTES (one tensor may exceed it alone)
        groups: list[list[str]] = [[]]
        size = 0
        for name, shape in shapes[sub].items():
            nbytes = shape.numel() * 2
            if groups[-1] and size + nbytes > SHARD_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(name)
            size += nbytes
        weight_map = {}
        for i, names in enumerate(groups):
            fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
            shard = {n: random_tensor(n, shapes[sub][n], gen) for n in names}
            save_file(shard, os.path.join(tmp, sub, fname), metadata={"format": "pt"})
            del shard
            weight_map.update(dict.fromkeys(names, fname))
            print(f"  wrote {sub}/{fname} ({time.perf_counter() - t0:.0f} s)", flush=True)
        part_bytes = sum(shapes[sub][n].numel() * 2 for n in weight_map)
        with open(os.path.join(tmp, sub, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": part_bytes}, "weight_map": weight_map}, f, indent=2)
    os.rename(tmp, path)


# ---- one variant, in its own process ----------------------------------------------


def status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def mem_available_gb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / GB
    raise RuntimeError("/proc/meminfo has no MemAvailable")


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def image_448() -> np.ndarray:
    yy, xx = np.mgrid[0:448, 0:448]
    return np.stack([xx * 255 // 448, yy * 255 // 448, (xx + yy) * 255 // 896], axis=-1).astype(np.uint8)


def run_variant(path: str, variant: str, decode_tokens: int, image: bool) -> dict:
    from nvila.generate import generate_ids
    from nvila.scoring import prompt_embeds

    out: dict = {
        "variant": variant,
        "threads": torch.get_num_threads(),
        "rss_before_load_gb": status_kb("VmRSS") * 1024 / GB,
    }
    t0 = time.perf_counter()
    model = nvila.load(path, dtype="bf16", fp8=variant == "fp8")
    out["load_s"] = time.perf_counter() - t0
    out["peak_rss_after_load_gb"] = status_kb("VmHWM") * 1024 / GB
    out["rss_after_load_gb"] = status_kb("VmRSS") * 1024 / GB
    out["weights_gb"] = nbytes([*model.parameters(), *model.buffers()]) / GB
    llm = model.llm
    # read per decoded token: every decoder layer, the final norm and the LM head (one embedding row)
    per_token = nbytes([*llm.layers.parameters(), *llm.layers.buffers(), *llm.norm.parameters()])
    per_token += nbytes(llm.head.parameters()) if llm.head is not None else nbytes([llm.embed.weight])
    out["bytes_per_token_gb"] = per_token / GB

    def timed_generate(images: list, steps: int) -> tuple[float, list[float]]:
        with torch.inference_mode():
            t = time.perf_counter()
            embeds, _ = prompt_embeds(model, ("<image>\n" if images else "") + TEXT_PROMPT, images)
            times = []
            for _tok, _alive in generate_ids(model, [embeds], max_new_tokens=steps):
                times.append(time.perf_counter() - t)
                t = time.perf_counter()
        return times[0], times[1:]

    if variant == "bf16":  # the mapped weights are paged in by the first forward pass
        ttft, _ = timed_generate([], 1)
        out["ttft_text_s"] = ttft
        out["peak_rss_after_forward_gb"] = status_kb("VmHWM") * 1024 / GB
        return out
    out["copy_gbps"] = common.copy_bandwidth(torch.device("cpu"))
    ttft, steps = timed_generate([], decode_tokens + 1)
    out["ttft_text_s"] = ttft
    out["decode_step_s"] = steps
    out["decode_tok_s"] = len(steps) / sum(steps)
    out["bound_tok_s"] = out["copy_gbps"] * GB / per_token
    out["peak_rss_after_decode_gb"] = status_kb("VmHWM") * 1024 / GB
    if image:
        ttft, _ = timed_generate([image_448()], 1)
        out["ttft_image_s"] = ttft
    out["peak_rss_end_gb"] = status_kb("VmHWM") * 1024 / GB
    out["maxrss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB
    return out


# ---- driver ---------------------------------------------------------------------


def report(r: dict) -> str:
    lines = [f"## {r['variant']}  (torch threads {r['threads']})"]
    lines.append(
        f"load {r['load_s']:.1f} s; weights {r['weights_gb']:.2f} GB; peak RSS after load "
        f"{r['peak_rss_after_load_gb']:.2f} GB = {r['peak_rss_after_load_gb'] / r['weights_gb']:.3f}x the weights "
        f"(RSS before load {r['rss_before_load_gb']:.2f} GB)"
    )
    if "peak_rss_after_forward_gb" in r:
        lines.append(f"peak RSS after one forward pass (weights paged in) {r['peak_rss_after_forward_gb']:.2f} GB")
    if "decode_tok_s" in r:
        lines.append(
            f"decode {r['decode_tok_s']:.3f} tok/s (median step {np.median(r['decode_step_s']):.2f} s) vs bound "
            f"{r['bound_tok_s']:.3f} tok/s = {r['copy_gbps']:.1f} GB/s copy / {r['bytes_per_token_gb']:.2f} GB/token: "
            f"{100 * r['decode_tok_s'] / r['bound_tok_s']:.0f}% of the bound"
        )
        lines.append(f"peak RSS after decode {r['peak_rss_after_decode_gb']:.2f} GB")
    lines.append(f"TTFT text-only {r['ttft_text_s']:.1f} s")
    if "ttft_image_s" in r:
        lines.append(f"TTFT one 448x448 image {r['ttft_image_s']:.1f} s; peak RSS {r['peak_rss_end_gb']:.2f} GB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_8b", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default=DEFAULT_DIR, help="the random-weight checkpoint (written when missing)")
    p.add_argument("--variants", default="fp8,bf16", help="comma-separated: fp8, bf16")
    p.add_argument("--decode-tokens", type=int, default=8)
    p.add_argument("--no-image", action="store_true", help="skip the 448x448 image TTFT (minutes on 2 cores)")
    p.add_argument("--child", choices=["fp8", "bf16"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run_variant(args.dir, args.child, args.decode_tokens, not args.no_image)))
        return
    variants = args.variants.split(",")
    if not set(variants) <= {"fp8", "bf16"}:
        p.error(f"--variants: expected fp8 and/or bf16, got {args.variants!r}")
    cfg = nvila.preset("nvila-8b")
    if not os.path.isdir(args.dir):
        print(f"writing the random-weight NVILA-8B checkpoint to {args.dir}", flush=True)
        write_checkpoint(args.dir, cfg)
    print(f"# NVILA-8B (random weights) on {common.device_name(torch.device('cpu'))}, commit {common.git_commit()}")
    for variant in variants:
        need = sum(s.numel() * 2 for part in checkpoint_shapes(cfg).values() for s in part.values()) / GB
        available = mem_available_gb()
        if variant == "bf16" and available < 1.1 * need + 1:
            print(f"## bf16\nnot run: MemAvailable {available:.1f} GB < 1.1 x {need:.1f} GB of bf16 weights + 1 GB")
            continue
        print(f"(load average {os.getloadavg()[0]:.1f}, MemAvailable {available:.1f} GB)", flush=True)
        cmd = [sys.executable, "-m", "bench.bench_8b", "--child", variant, "--dir", args.dir]
        cmd += ["--decode-tokens", str(args.decode_tokens)] + (["--no-image"] if args.no_image else [])
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"## {variant}\nFAILED (exit {done.returncode}):\n{done.stderr[-3000:]}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(report(result), flush=True)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
