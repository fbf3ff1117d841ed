"""`nvila` / `python -m nvila`: answer a prompt about images or a video with a local
NVILA checkpoint (by default the tiny model shipped in the package, which knows
coloured shapes: see nvila.tiny.shapes), streaming the answer."""

from __future__ import annotations

import argparse
import sys

import torch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nvila", description=__doc__)
    p.add_argument("--model", default=None, help="checkpoint directory (HF layout); default: the shipped tiny model")
    p.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    p.add_argument("--video", help="video file")
    p.add_argument("--prompt", required=True, help="the user message")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the decode step")
    p.add_argument("--fp8", action="store_true", help="FP8 W8A8 Linears in LLM and vision tower (quantized on load)")
    p.add_argument("--backend", default=None, help="nvila_kernels backend (reference, cpu, cuda, triton, emu)")
    p.add_argument(
        "--dtype", default=None, choices=["bf16", "fp16", "fp32"], help="the LLM's; default: bf16 on GPU, fp32 on CPU"
    )
    p.add_argument(
        "--vision-dtype",
        default=None,
        choices=["bf16", "fp16", "fp32"],
        help="the vision tower's and projector's; default: fp16 on GPU without --dtype (as released), else --dtype",
    )
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from .media import MediaError
    from .weights import CheckpointError

    try:
        return _run(args)
    except (MediaError, CheckpointError, FileNotFoundError) as e:  # bad input: one line, no traceback
        sys.stdout.write("\n")
        sys.stderr.write(f"nvila: error: {e}\n")
        return 2


def _run(args: argparse.Namespace) -> int:
    from . import TINY_MODEL, generate, load

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load(
        args.model or TINY_MODEL,
        dtype=args.dtype,
        device=device,
        backend=args.backend,
        vision_dtype=args.vision_dtype,
        fp8=args.fp8,
    )
    for piece in generate(
        model,
        args.prompt,
        images=args.image,
        video=args.video,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        stream=True,
        seed=args.seed,
        compile=args.compile,
    ):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
