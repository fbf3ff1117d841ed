"""`python -m nvila.tiny.train`: train the tiny NVILA (preset "tiny-shapes") on the
procedural task of nvila.tiny.shapes, on the CPU, with PyTorch autograd through the
reference backend of every nvila_kernels op, and save it in the HF layout.

Every step draws fresh scenes of the train split (scene indices step*n .. step*n+n-1,
so a run is reproducible from --seed, which only seeds the weights), runs all their
tiles and video frames through the vision tower as one batch, and asks every question
of every scene in one multi-turn chat per scene (--no-pack: one chat per question):
teacher-forced cross-entropy on the answers and the <|im_end|> after each. --dense:
each image is asked shapes.dense_questions instead (training only: the colour of every
shape by kind, the kind of every shape by colour, up to three relations, the count and
lists), one packed chat per group, so that no question gives away another's answer.
Plus a grounding loss (--aux): a linear probe, discarded after training, predicts each
visual token's shape colour and kind from the projector output (image tokens and video
frames before temporal pooling), and with --aux-position the token's place in the
image; without the probe the LLM and the vision tower stay at chance for hundreds of steps.
AdamW with warm-up and a cosine schedule; the validation accuracy (single-turn, every
answer token and <|im_end|> right, teacher forced) is logged per question type.

The shipped model (nvila/tiny/assets/tiny) was made in three steps: one run of the
defaults from seed 0 (3000 steps of 16 images (dense questions) + 4 videos, the grounding
probe with its position loss, 2 torch threads; 1617 s of training on the 2-core machine;
hidden 64, heads of 16), its LLM widened to hidden 128 (heads of 32, for vLLM; see
nvila/tiny/widen.py), and 1000 more steps from the widened model:

    python -m nvila.tiny.train --out /tmp/t64
    python -m nvila.tiny.widen --model /tmp/t64 --hidden 128 --noise 0.01 --out /tmp/w128
    python -m nvila.tiny.train --init /tmp/w128 --llm-hidden 128 --steps 1000 --lr 1e-3 \
        --first-step 3000 --out nvila/tiny/assets/tiny

Every scene's chats go through the LLM as branches over one shared prefix (the visual
tokens once; see shared_prefix_batch) and the LM head runs only where there is an
answer to predict, which makes a step about 1.5x faster than one row per chat.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F

import nvila_kernels as nk

from ..config import preset
from ..media import user_content
from ..model import NVILA
from ..tokenizer import IM_END, Tokenizer, chat_template
from ..weights import save
from . import shapes

ASSET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "tiny")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<vila/video>"]
PRESET = "tiny-shapes"


def build_tokenizer(vocab_size: int = 400) -> Tokenizer:
    """A byte-level BPE trained on the task's text and the chat template; every answer
    word is a single token."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = shapes.corpus()
    text += [chat_template([{"role": "user", "content": "<image>" + t}]) for t in text]
    answers = list(shapes.COLOURS) + list(shapes.KINDS) + [str(i) for i in range(10)] + ["yes", "no"]
    tok.train_from_iterator(text * 4 + answers * 40, trainer)
    return Tokenizer(tok)


def init_model(
    tokenizer: Tokenizer,
    seed: int = 0,
    projector_type: str = "mlp_downsample",
    llm_heads: int | None = None,
    llm_kv_heads: int | None = None,
    llm_hidden: int | None = None,
) -> NVILA:
    """A freshly initialised tiny-shapes model (reference backend) with `tokenizer`;
    projector_type "mlp_downsample_3x3_fix" for the 3x3 projector; llm_heads / llm_kv_heads:
    the LLM's attention and KV heads (default: the preset's; vLLM's CPU attention needs
    heads of >= 32 channels, e.g. 2 heads and 1 KV head at the preset's width 64)."""
    base = preset(PRESET)
    heads = {"heads": llm_heads or base.llm.heads, "kv_heads": llm_kv_heads or base.llm.kv_heads,
             "hidden": llm_hidden or base.llm.hidden}  # fmt: skip
    llm = type(base.llm)(**{**base.llm.__dict__, "vocab": len(tokenizer), **heads})
    cfg = preset(PRESET, llm=llm, projector_type=projector_type)
    torch.manual_seed(seed)
    model = NVILA(cfg, backend="reference")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("embed.weight", "pos.weight")):
                p.normal_(0.0, 0.02)
    model.tokenizer = tokenizer
    return model


# ---- batches ----------------------------------------------------------------------


def encode_scenes(model: NVILA, scenes: Sequence[shapes.Scene]) -> dict[int, list[torch.Tensor]]:
    """The visual blocks of every scene, keyed by id(scene), as model.encode_image /
    model.encode_video compute them, with all tiles and frames in one vision batch
    (and a video's tokens before temporal pooling under ("frames", id(scene)))."""
    cfg = model.cfg
    tiled, frames = model.preprocessor(), model.preprocessor(tiled=False)
    pixels, plans = [], []
    for sc in scenes:
        if sc.is_video:
            plans.append(None)
            pixels.append(frames.batch(sc.frames)[0])  # (T, 3, tile, tile)
        else:
            p, plan = tiled(sc.image)
            plans.append(plan)
            pixels.append(p)
    feats = model.vision(torch.cat(pixels).to(model.dtype))
    blocks, t0 = {}, 0
    for sc, plan in zip(scenes, plans, strict=True):
        if plan is None:
            f = feats[t0 : t0 + len(sc.frames)]
            t0 += len(sc.frames)
            f = f.repeat(1, 1, len(cfg.scales)) if len(cfg.scales) > 1 else f
            tokens = model.projector.compress_tiles(f, model.backend)
            blocks[("frames", id(sc))] = tokens  # (frames, n, H) before pooling, for aux_loss
            if cfg.temporal_pool > 1:
                tokens = nk.temporal_pool(tokens.contiguous(), cfg.temporal_pool, backend=model.backend)
            blocks[id(sc)] = list(tokens.unbind(0))
        else:
            f = feats[t0 : t0 + plan.n_tiles]
            t0 += plan.n_tiles
            blocks[id(sc)] = [model.projector(f, plan, model.backend)]
    return blocks


def step_scenes(step: int, images: int, videos: int) -> list[shapes.Scene]:
    """The training scenes of step `step`: image scenes step*images.. and video scenes
    step*videos.. of the train split."""
    batch = shapes.scenes("train", images, 0, start=step * images)
    return batch + [shapes.video_scene("train", step * videos + i) for i in range(videos)]


@contextmanager
def cached_media(model: NVILA, blocks: dict[int, list[torch.Tensor]]):
    """model.embed_prompt with scenes as media: their blocks come from `blocks`, so the
    prompt is assembled by the model's own code."""
    model.encode_image = lambda scene, tiled=True: blocks[id(scene)]
    model.encode_video = lambda scene: blocks[id(scene)]
    try:
        yield
    finally:
        del model.encode_image, model.encode_video


def prompt_text(qa: shapes.QA, video: bool) -> str:
    """The chat prompt for a question, as nvila.generate builds it."""
    return chat_template([{"role": "user", "content": user_content(qa.question, 0 if video else 1, video)}])


def conversation(
    model: NVILA, scene: shapes.Scene, pack: bool, dense: bool = False
) -> list[tuple[str, list[shapes.QA]]]:
    """The training texts of a scene: one single-turn chat per question, or (pack) one
    multi-turn chat asking every question in a shuffled order (seeded by the scene).
    dense: an image scene's questions are those of shapes.dense_questions instead, one
    packed chat per group."""
    video = scene.is_video
    groups = shapes.dense_questions(scene) if dense and not video else [list(scene.questions)]
    if not pack:
        return [(prompt_text(qa, video) + qa.answer + IM_END, [qa]) for qas in groups for qa in qas]
    chats = []
    for g, qas in enumerate(groups):
        seed = scene.index if len(groups) == 1 else scene.index * len(groups) + g
        order = torch.randperm(len(qas), generator=torch.Generator().manual_seed(seed)).tolist()
        qas = [qas[i] for i in order]
        messages = []
        for i, qa in enumerate(qas):
            content = user_content(qa.question, 0 if video else 1, video) if i == 0 else qa.question
            messages += [{"role": "user", "content": content}, {"role": "assistant", "content": qa.answer}]
        chats.append((chat_template(messages, add_generation_prompt=False).removesuffix("\n"), qas))
    return chats


def answer_targets(tok: Tokenizer, ids: torch.Tensor) -> torch.Tensor:
    """(T,) next-token targets: the tokens of every assistant turn (its answer and
    <|im_end|>) at the positions that predict them, -100 elsewhere."""
    header = tok.encode(chat_template([], add_generation_prompt=True).split(IM_END + "\n")[-1])
    start, end = len(header), tok.im_end_id
    ids_l = ids.tolist()
    t = torch.full((len(ids_l),), -100, dtype=torch.long)
    i = 0
    while i <= len(ids_l) - start:
        if ids_l[i : i + start] == header:
            j = i + start
            while j < len(ids_l):
                t[j - 1] = ids_l[j]
                if ids_l[j] == end:
                    break
                j += 1
            i = j
        i += 1
    return t


def make_batch(model: NVILA, scenes: Sequence[shapes.Scene], pack: bool = False, blocks=None, dense: bool = False):
    """Every question of every scene -> (embeds (B, T, H) right-padded, targets (B, T)
    with -100 except at the positions that predict an answer and its <|im_end|>, and
    the question types of each row). blocks: encode_scenes(model, scenes) if known;
    dense: see conversation."""
    blocks = encode_scenes(model, scenes) if blocks is None else blocks
    seqs, tgts, qtypes = [], [], []
    with cached_media(model, blocks):
        for sc in scenes:
            for text, qas in conversation(model, sc, pack, dense):
                media = ([], sc) if sc.is_video else ([sc], None)
                embeds, ids = model.embed_prompt(text, *media)
                seqs.append(embeds)
                tgts.append(answer_targets(model.tokenizer, ids))
                qtypes.append([qa.qtype for qa in qas])
    T = max(len(s) for s in seqs)
    x = torch.zeros(len(seqs), T, seqs[0].shape[-1], dtype=seqs[0].dtype)
    y = torch.full((len(seqs), T), -100, dtype=torch.long)
    for b, (s, t) in enumerate(zip(seqs, tgts, strict=True)):
        x[b, : len(s)] = s
        y[b, : len(t)] = t
    return x, y, qtypes


def shared_prefix_batch(model: NVILA, scenes: Sequence[shapes.Scene], pack: bool = True, blocks=None,
                        dense: bool = False):  # fmt: skip
    """The chats of make_batch, each scene's run together: the prefix every chat of a
    scene shares (system prompt, the user turn's start, the visual tokens and the
    newline after them) once, then the rest of each chat as a branch that attends to
    the prefix and to itself only, at the rotary positions it has in its own chat; the
    scenes are packed into as few rows as the longest one needs (first fit, longest
    first), each attending only to itself. Every position computes what it computes in
    make_batch's row of its chat, but the visual tokens run through the LLM once per
    scene instead of once per chat (--dense asks 4 chats per image), and rows carry
    little padding. -> (embeds (B, T, H), targets (B, T), rope positions (B, T),
    attention mask (B, 1, T, T); padding attends to itself only)."""
    blocks = encode_scenes(model, scenes) if blocks is None else blocks
    runs = []  # per scene: embeds, targets, rope positions, branch (-1: shared prefix, g: chat g)
    with cached_media(model, blocks):
        for sc in scenes:
            media = ([], sc) if sc.is_video else ([sc], None)
            chats = [model.embed_prompt(text, *media) for text, _ in conversation(model, sc, pack, dense)]
            ids0 = chats[0][1]
            P = int((ids0 == -1).nonzero().max()) + 2  # through the newline after the last visual block
            parts = [(chats[0][0][:P], torch.full((P,), -100), torch.arange(P), torch.full((P,), -1))]
            for g, (e, ids) in enumerate(chats):
                t = answer_targets(model.tokenizer, ids)
                if not torch.equal(ids[:P], ids0[:P]) or (t[:P] != -100).any():
                    raise AssertionError(f"scene {sc.index}: chats differ, or an answer lies, in the first {P} tokens")
                parts.append((e[P:], t[P:], torch.arange(P, len(ids)), torch.full((len(ids) - P,), g)))
            runs.append([torch.cat(p) for p in zip(*parts, strict=True)])
    T = max(len(r[0]) for r in runs)
    rows: list[list[int]] = []  # scene indices per row, first fit by decreasing length
    used: list[int] = []  # positions taken in each row
    for i in sorted(range(len(runs)), key=lambda i: -len(runs[i][0])):
        n = len(runs[i][0])
        r = next((r for r in range(len(rows)) if used[r] + n <= T), len(rows))
        if r == len(rows):
            rows.append([])
            used.append(0)
        rows[r].append(i)
        used[r] += n
    B, H = len(rows), runs[0][0].shape[-1]
    x = torch.zeros(B, T, H, dtype=runs[0][0].dtype)
    y = torch.full((B, T), -100, dtype=torch.long)
    rope_pos = torch.zeros(B, T, dtype=torch.long)
    branch = torch.full((B, T), -2, dtype=torch.long)
    scene = torch.full((B, T), -1, dtype=torch.long)  # -1: padding
    for b, row in enumerate(rows):
        t0 = 0
        for i in row:
            e, t, p, br = runs[i]
            n = len(e)
            x[b, t0 : t0 + n], y[b, t0 : t0 + n], rope_pos[b, t0 : t0 + n] = e, t, p
            branch[b, t0 : t0 + n], scene[b, t0 : t0 + n] = br, i
            t0 += n
    qs, ks, qb, kb = scene[:, :, None], scene[:, None, :], branch[:, :, None], branch[:, None, :]
    sees = torch.ones(T, T, dtype=torch.bool).tril() & (qs == ks) & (qs >= 0) & ((qb == kb) | (kb == -1))
    sees |= torch.eye(T, dtype=torch.bool)  # padding queries attend to themselves (no NaN)
    return x, y, rope_pos, sees[:, None]


def token_labels(size: tuple[int, int], visible: Sequence[shapes.Shape], gh: int, gw: int):
    """Auxiliary grounding labels of a gh x gw grid of visual tokens over an image of
    `size` (row-major): the colour and the kind of the shape covering most of each
    token's area (at least a third of it), 0 for background."""
    W, H = size
    colour = torch.zeros(gh, gw, dtype=torch.long)
    kind = torch.zeros(gh, gw, dtype=torch.long)
    for r in range(gh):
        y0, y1 = r * H / gh, (r + 1) * H / gh
        for c in range(gw):
            x0, x1 = c * W / gw, (c + 1) * W / gw
            best, area = None, (y1 - y0) * (x1 - x0) / 3
            for s in visible:
                l, t, rr, b = s.box
                a = max(0.0, min(x1, rr) - max(x0, l)) * max(0.0, min(y1, b) - max(y0, t))
                if a >= area:
                    best, area = s, a
            if best is not None:
                colour[r, c] = 1 + list(shapes.COLOURS).index(best.colour)
                kind[r, c] = 1 + shapes.KINDS.index(best.kind)
    return colour.flatten(), kind.flatten()


def token_positions(gh: int, gw: int) -> torch.Tensor:
    """(gh * gw, 2) centre (x, y) of every token of a gh x gw grid (row-major), in 0..1."""
    y = (torch.arange(gh, dtype=torch.float32) + 0.5) / gh
    x = (torch.arange(gw, dtype=torch.float32) + 0.5) / gw
    return torch.stack(torch.meshgrid(x, y, indexing="xy"), -1).reshape(-1, 2)


def aux_loss(model: NVILA, head: torch.nn.Linear, scenes, blocks, position: float = 0.0) -> torch.Tensor:
    """Cross-entropy of a linear probe (discarded after training) predicting every image
    token's colour and kind from the projector output; position > 0: plus that weight
    times the squared error of its prediction of the token's place in the image (x, y
    in 0..1), for the relation questions."""
    feats, colours, kinds, places = [], [], [], []
    side = -(-model.cfg.vision.grid // model.cfg.k)
    for sc in scenes:
        if sc.is_video:  # every frame before temporal pooling: one tile
            frames = [(f.size, [s for s, v in zip(sc.shapes, sc.visible, strict=True) if v[i]], side, side)
                      for i, f in enumerate(sc.frames)]  # fmt: skip
            feats.append(blocks[("frames", id(sc))].flatten(0, 1))
        else:
            rows, cols = model.plan(*sc.image.size).block_size
            frames = [(sc.image.size, sc.shapes, rows * side, cols * side)]
            feats.append(blocks[id(sc)][0])
        for labels in frames:
            c, k = token_labels(*labels)
            colours.append(c)
            kinds.append(k)
            places.append(token_positions(*labels[2:]))
    out = head(torch.cat(feats))
    nc, nk = len(shapes.COLOURS) + 1, len(shapes.KINDS) + 1
    loss = F.cross_entropy(out[:, :nc], torch.cat(colours)) + F.cross_entropy(out[:, nc : nc + nk], torch.cat(kinds))
    if position > 0:
        loss = loss + position * F.mse_loss(out[:, nc + nk :], torch.cat(places))
    return loss


def logits_of(model: NVILA, x: torch.Tensor, rope_pos=None, mask=None, at=None) -> torch.Tensor:
    """Causal LM logits (B, T, vocab) of right-padded embeddings (no KV cache reuse);
    rope_pos, mask: those of shared_prefix_batch (default: one chat per row); at: a
    (B, T) bool, only the logits (N, vocab) of those positions (the LM head and the
    softmax are then not run on the rest)."""
    B, T, _ = x.shape
    model.llm.setup_caches(B, T, x.dtype, x.device)
    pos = torch.arange(T)
    rope_pos = pos[None].expand(B, T) if rope_pos is None else rope_pos
    mask = torch.ones(T, T, dtype=torch.bool).tril()[None, None] if mask is None else mask
    h = model.llm.hidden(x, pos, rope_pos, mask)
    return model.llm.logits(h if at is None else h[at]).float()


def correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) bool: every target position predicted right by argmax."""
    hit = (logits.argmax(-1) == y) | (y == -100)
    return hit.all(dim=1)


@torch.no_grad()
def validate(model: NVILA, scenes: Sequence[shapes.Scene], batch: int = 32) -> dict[str, float]:
    """Teacher-forced exact-match accuracy per question type (and "image", "video")."""
    hits, counts = defaultdict(int), defaultdict(int)
    for i in range(0, len(scenes), batch):
        x, y, qtypes = make_batch(model, scenes[i : i + batch])
        ok = correct(logits_of(model, x), y)
        for (q,), o in zip(qtypes, ok.tolist(), strict=True):
            group = "video" if q in shapes.VIDEO_TYPES else "image"
            for key in (q, group):
                hits[key] += o
                counts[key] += 1
    return {k: hits[k] / counts[k] for k in counts}


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _bar(step: int, steps: int, t0: float, msg: str) -> None:
    done = (step + 1) / steps
    eta = (time.time() - t0) / done * (1 - done)
    bar = "#" * int(30 * done)
    sys.stderr.write(f"\r[{bar:<30}] {step + 1}/{steps} {msg} eta {eta:4.0f}s")
    sys.stderr.flush()


def train(args: argparse.Namespace) -> NVILA:
    torch.set_num_threads(args.threads)
    tok = build_tokenizer()
    model = init_model(tok, args.seed, args.projector, args.llm_heads, args.llm_kv_heads, args.llm_hidden).train()
    if args.init:  # continue from a checkpoint (new optimizer state and schedule)
        from ..weights import load

        model.load_state_dict(load(args.init, dtype="fp32").state_dict())
    no_decay = {n for n, p in model.named_parameters() if p.dim() < 2 or n.endswith(("embed.weight", "pos.weight"))}
    decay = [p for n, p in model.named_parameters() if n not in no_decay]
    other = [p for n, p in model.named_parameters() if n in no_decay]
    n_out = len(shapes.COLOURS) + len(shapes.KINDS) + 2 + (2 if args.aux_position > 0 else 0)
    probe = torch.nn.Linear(model.cfg.llm.hidden, n_out)
    other += list(probe.parameters())
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))  # fmt: skip
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tiny-shapes: {n_params / 1e3:.0f}k parameters, {args.steps} steps of {args.images} images + "
          f"{args.videos} videos, seed {args.seed}", flush=True)  # fmt: skip
    val = shapes.scenes("val", args.val_images, args.val_videos)
    t0 = time.time()
    ema = None
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        batch = step_scenes(args.first_step + step, args.images, args.videos)
        blocks = encode_scenes(model, batch)
        x, y, rope_pos, mask = shared_prefix_batch(model, batch, pack=args.pack, blocks=blocks, dense=args.dense)
        at = y != -100
        loss = F.cross_entropy(logits_of(model, x, rope_pos, mask, at), y[at])
        if args.aux > 0:
            loss = loss + args.aux * aux_loss(model, probe, batch, blocks, args.aux_position)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        _bar(step, args.steps, t0, f"loss {ema:.3f}")
        if (step + 1) % args.val_every == 0 or step + 1 == args.steps:
            model.eval()
            acc = validate(model, val)
            model.train()
            sys.stderr.write("\n")
            print(f"step {step + 1} loss {ema:.3f} {time.time() - t0:.0f}s val " +
                  " ".join(f"{k} {v:.3f}" for k, v in sorted(acc.items())), flush=True)  # fmt: skip
    model.eval().requires_grad_(False)
    model.llm.setup_caches(1, 1)  # drop the training-size caches
    return model


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m nvila.tiny.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--images", type=int, default=16, help="image scenes per step (all their questions)")
    p.add_argument("--videos", type=int, default=4, help="video scenes per step")
    p.add_argument("--pack", action=argparse.BooleanOptionalAction, default=True,
                   help="all questions of a scene in one multi-turn chat (else one chat per question)")  # fmt: skip
    p.add_argument("--dense", action=argparse.BooleanOptionalAction, default=True,
                   help="train on shapes.dense_questions of every image (else on its held-out questions)")  # fmt: skip
    p.add_argument("--aux", type=float, default=1.0, help="weight of the grounding probe loss (see aux_loss)")
    p.add_argument("--aux-position", type=float, default=1.0,
                   help="weight (within --aux) of the probe's token position loss (see aux_loss)")  # fmt: skip
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--wd", type=float, default=0.01)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (1 is faster on a busy machine)")
    p.add_argument("--val-every", type=int, default=200)
    p.add_argument("--val-images", type=int, default=96)
    p.add_argument("--val-videos", type=int, default=48)
    p.add_argument("--projector", default="mlp_downsample", choices=["mlp_downsample", "mlp_downsample_3x3_fix"],
                   help="2x2 (the shipped model) or 3x3 spatial-to-channel projector")  # fmt: skip
    p.add_argument("--llm-heads", type=int, default=None, help="the LLM's attention heads (default: the preset's 4)")
    p.add_argument("--llm-kv-heads", type=int, default=None, help="the LLM's KV heads (default: the preset's 2)")
    p.add_argument("--llm-hidden", type=int, default=None, help="the LLM's width (default: the preset's 64)")
    p.add_argument("--init", default=None, help="start from this checkpoint instead of random weights")
    p.add_argument("--first-step", type=int, default=0, help="data offset: step s trains on the scenes of step s")
    p.add_argument("--out", default=None, help="checkpoint directory (default: print only, save nothing)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    model = train(args)
    print(f"trained in {time.time() - t0:.0f}s", flush=True)
    if args.out:
        save(model, args.out)
        print(f"saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
