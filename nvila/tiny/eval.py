"""`python -m nvila.tiny.eval`: exact-match accuracy of the tiny NVILA on the held-out
(test) split of nvila.tiny.shapes, per question type, for each backend and in FP8 mode, and
how often the backends give the same answer as the reference.

    python -m nvila.tiny.eval --images 500 --videos 250 --backend reference cpu --fp8

Answers are generated greedily as nvila.generate_batch does (the CLI's path, with each
scene encoded once for all its questions) and compared with the generator's answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence

import torch

from ..generate import generate_ids
from . import shapes

GROUPS = {"image": shapes.IMAGE_TYPES, "video": shapes.VIDEO_TYPES}


def questions(split: str, n_images: int, n_videos: int) -> list[tuple[shapes.Scene, shapes.QA]]:
    return [(sc, qa) for sc in shapes.scenes(split, n_images, n_videos) for qa in sc.questions]


@torch.inference_mode()
def answer_all(model, items: Sequence[tuple[shapes.Scene, shapes.QA]], batch: int = 32, progress: bool = False):
    """Greedy answers to every (scene, question), as nvila.generate_batch computes them
    (the model's prompt, left-padded batches, stop at <|im_end|>), with each scene's
    media encoded once for all its questions (train.encode_scenes)."""
    from .train import cached_media, encode_scenes, prompt_text

    tok, out = model.tokenizer, []
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        scenes = list({id(sc): sc for sc, _ in chunk}.values())
        with cached_media(model, encode_scenes(model, scenes)):
            embeds = [
                model.embed_prompt(prompt_text(qa, sc.is_video), *(([], sc) if sc.is_video else ([sc], None)))[0]
                for sc, qa in chunk
            ]
        ids: list[list[int]] = [[] for _ in chunk]
        done = [False] * len(chunk)
        for t, alive in generate_ids(model, embeds, max_new_tokens=4, stop_id=tok.im_end_id):
            for b in range(len(chunk)):
                if not done[b] and alive[b]:
                    ids[b].append(int(t[b]))
                done[b] = done[b] or not bool(alive[b])
        out += [tok.decode(x).strip() for x in ids]
        if progress:
            sys.stderr.write(f"\r  {len(out)}/{len(items)}")
            sys.stderr.flush()
    if progress:
        sys.stderr.write("\r")
    return out


def accuracy(items, answers) -> dict[str, float]:
    """Exact match per question type and per group (image, video)."""
    hits, counts = defaultdict(int), defaultdict(int)
    for (_, qa), a in zip(items, answers, strict=True):
        group = "video" if qa.qtype in shapes.VIDEO_TYPES else "image"
        for key in (qa.qtype, group, "all"):
            hits[key] += a == qa.answer
            counts[key] += 1
    return {k: hits[k] / counts[k] for k in counts}


def agreement(a: Sequence[str], b: Sequence[str]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def load_model(path: str | None, backend: str | None, fp8: bool = False, device: str = "cpu"):
    import nvila

    model = nvila.load(path or nvila.TINY_MODEL, dtype="fp32", device=device, backend=backend)
    return nvila.quantize_fp8(model) if fp8 else model


def evaluate(
    path: str | None,
    backends: Sequence[str],
    fp8: bool,
    n_images: int,
    n_videos: int,
    split: str = "test",
    device: str = "cpu",
    progress: bool = False,
):
    """{run name: (accuracy dict, answers)}, runs "<backend>" and "<backend>+fp8"."""
    items = questions(split, n_images, n_videos)
    runs = {}
    for be in backends:
        for q in (False, True) if fp8 else (False,):
            name = be + ("+fp8" if q else "")
            model = load_model(path, be, q, device)
            t0 = time.time()
            answers = answer_all(model, items, progress=progress)
            runs[name] = (accuracy(items, answers), answers, time.time() - t0)
    return items, runs


def report(items, runs) -> str:
    types = [t for t in shapes.QUESTION_TYPES if any(qa.qtype == t for _, qa in items)]
    cols = types + [g for g in ("image", "video") if any(qa.qtype in GROUPS[g] for _, qa in items)] + ["all"]
    counts = {c: sum(qa.qtype == c or c == "all" or qa.qtype in GROUPS.get(c, ()) for _, qa in items) for c in cols}
    lines = [f"held-out questions: {len(items)} (" + ", ".join(f"{c} {counts[c]}" for c in cols[:-1]) + ")"]
    lines.append(f"{'run':<16}" + "".join(f"{c:>9}" for c in cols) + f"{'agree':>9}{'time':>8}")
    ref = runs.get("reference", next(iter(runs.values())))[1]
    for name, (acc, answers, secs) in runs.items():
        row = "".join(f"{100 * acc[c]:8.1f}%" for c in cols)
        lines.append(f"{name:<16}{row}{100 * agreement(answers, ref):8.1f}%{secs:7.0f}s")
    lines.append("agree: answers identical to the first reference (or first) run's")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nvila.tiny.eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint directory (default: the shipped tiny model)")
    p.add_argument("--backend", nargs="+", default=None, help="default: reference and the fastest kernels here")
    p.add_argument("--fp8", action="store_true", help="also run every backend in FP8 mode (nvila.quantize_fp8)")
    p.add_argument("--images", type=int, default=500, help="image scenes (about 3.7 questions each)")
    p.add_argument("--videos", type=int, default=250, help="video scenes (2 questions each)")
    p.add_argument("--split", default="test", choices=list(shapes.SPLITS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.backend is None:
        from nvila_kernels import backends

        fast = backends.resolve("spatial_compress", None, torch.device(args.device))
        args.backend = ["reference"] + ([fast] if fast != "reference" else [])
    items, runs = evaluate(args.model, args.backend, args.fp8, args.images, args.videos, args.split, args.device, True)
    print(report(items, runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
