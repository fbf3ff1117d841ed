"""A procedural visual question answering task for the tiny NVILA (no downloads).

Images: a few coloured shapes (filled square, ring, plus, diagonal cross) on a noisy
dark background, at varied sizes and aspect ratios (so Dynamic-S2 picks different tile
grids). Every shape in an image has its own colour and its own kind, so "the ring" and
"the red object" name one shape.
Videos: a few frames with shapes that appear and disappear.

Questions (answers are one word, or a list for colours and shapes):
    colour    What colour is the ring?                        red
    shape     What shape is the red object?                   ring
    count     How many shapes are there?                      3
    relation  Is the red ring left of the blue square?       yes / no
    colours   Which colours do you see?                       red blue
    shapes    Which shapes do you see?                        square ring
    first     Which colour appears first in the video?        green
    frames    How many frames show the red circle?            5

Splits are disjoint streams of seeds: scene i of split s is drawn from
numpy.random.default_rng([SPLITS[s], i]), so the same (split, index) always gives the
same pixels and questions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "white": (240, 240, 240),
}
# Kinds that differ in every part, not only in outline: Dynamic-S2 cuts a shape across
# tiles and the vision tower sees each tile alone, so a filled circle and a filled
# square would look the same in most of their tokens.
KINDS = ("square", "ring", "plus", "cross")
SPLITS = {"train": 0, "val": 1, "test": 2}
IMAGE_TYPES = ("colour", "shape", "count", "relation", "colours", "shapes")
VIDEO_TYPES = ("first", "frames")
QUESTION_TYPES = IMAGE_TYPES + VIDEO_TYPES
VIDEO_FRAMES = 8
RELATIONS = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


@dataclass(frozen=True)
class Shape:
    colour: str
    kind: str
    box: tuple[int, int, int, int]  # left, top, right, bottom (pixels, exclusive)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"


@dataclass(frozen=True)
class QA:
    qtype: str
    question: str
    answer: str


@dataclass
class Scene:
    """An image (frames is None) or a video (image is its first frame) with its questions."""

    split: str
    index: int
    image: Image.Image
    shapes: list[Shape]
    questions: list[QA]
    frames: list[Image.Image] | None = None
    visible: list[list[bool]] | None = None  # video: visible[shape][frame]

    @property
    def is_video(self) -> bool:
        return self.frames is not None


def _rng(split: str, index: int, video: bool) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index: expected an int >= 0, got {index!r}")
    return np.random.default_rng([SPLITS[split], int(video), index])


def _background(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A dark, slightly tinted background with pixel noise: (base colour, (h, w, 3) float)."""
    base = rng.uniform(30, 70) + rng.uniform(-8, 8, size=3)
    noise = rng.normal(0, 4, size=(height, width, 3))
    return base, base + noise


def draw_shape(draw: ImageDraw.ImageDraw, s: Shape) -> None:
    l, t, r, b = s.box
    fill = COLOURS[s.colour]
    stroke = stroke_width(r - l)
    if s.kind == "square":  # filled
        draw.rectangle((l, t, r - 1, b - 1), fill=fill)
    elif s.kind == "ring":  # a circle's outline
        draw.ellipse((l, t, r - 1, b - 1), outline=fill, width=stroke)
    elif s.kind == "plus":  # a horizontal and a vertical bar
        m = (r - l - stroke) // 2
        draw.rectangle((l + m, t, l + m + stroke - 1, b - 1), fill=fill)
        draw.rectangle((l, t + m, r - 1, t + m + stroke - 1), fill=fill)
    else:  # cross: the two diagonals
        draw.line((l, t, r - 1, b - 1), fill=fill, width=stroke)
        draw.line((l, b - 1, r - 1, t), fill=fill, width=stroke)


def stroke_width(size: int) -> int:
    """Line width of rings, pluses and crosses of a size x size box."""
    return max(3, size // 4)


def render(width: int, height: int, shapes: list[Shape], background: np.ndarray) -> Image.Image:
    img = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for s in shapes:
        draw_shape(draw, s)
    return img


def _place(rng: np.random.Generator, width: int, height: int, n: int, size: int) -> list[tuple[int, int, int, int]]:
    """n non-overlapping size x size boxes (a gap of size/4 between them), or [] when
    rejection sampling fails."""
    gap = max(2, size // 4)
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(200):
        if len(boxes) == n:
            return boxes
        x, y = int(rng.integers(0, width - size + 1)), int(rng.integers(0, height - size + 1))
        box = (x, y, x + size, y + size)
        if all(box[0] >= o[2] + gap or o[0] >= box[2] + gap or box[1] >= o[3] + gap or o[1] >= box[3] + gap
               for o in boxes):  # fmt: skip
            boxes.append(box)
    return boxes if len(boxes) == n else []


def _image_size(rng: np.random.Generator) -> tuple[int, int]:
    """Aspect ratios 1:3 .. 3:1 (log-uniform), short side 48..112 pixels."""
    aspect = float(np.exp(rng.uniform(np.log(1 / 3), np.log(3))))
    short = int(rng.integers(48, 113))
    long_ = min(int(round(short * max(aspect, 1 / aspect))), 300)
    return (long_, short) if aspect >= 1 else (short, long_)


def _shapes(rng: np.random.Generator, width: int, height: int, n: int, size_frac) -> list[Shape]:
    while True:
        size = max(10, int(min(width, height) * rng.uniform(*size_frac)))
        boxes = _place(rng, width, height, n, size)
        if boxes:
            break
        n = max(1, n - 1) if rng.random() < 0.2 else n
    colours = rng.choice(list(COLOURS), size=n, replace=False)
    kinds = rng.choice(KINDS, size=n, replace=False)
    return [Shape(str(c), str(k), b) for c, k, b in zip(colours, kinds, boxes, strict=True)]


def _relation_options(shapes: list[Shape]) -> list[tuple[Shape, str, Shape]]:
    """Every (a, "left of" / "above", b) of two shapes clearly apart on that axis (their
    boxes do not overlap on it)."""
    options = []
    for a in shapes:
        for b in shapes:
            if a is b:
                continue
            if a.box[2] <= b.box[0]:
                options.append((a, "left of", b))
            if a.box[3] <= b.box[1]:
                options.append((a, "above", b))
    return options


def _ask_relation(rng: np.random.Generator, a: Shape, rel: str, b: Shape) -> QA:
    """The yes/no question of a true relation: half the time asked from b's side, and
    half the time with the opposite relation (answer no)."""
    if rng.random() < 0.5:  # ask it from b's side
        a, rel, b = b, RELATIONS[rel], a
    answer = "yes"
    if rng.random() < 0.5:
        rel, answer = RELATIONS[rel], "no"
    return QA("relation", f"Is the {a.name} {rel} the {b.name}?", answer)


def _relation(rng: np.random.Generator, shapes: list[Shape]) -> QA | None:
    """A yes/no question about two shapes that are clearly apart on one axis."""
    options = _relation_options(shapes)
    if not options:
        return None
    return _ask_relation(rng, *options[int(rng.integers(len(options)))])


def image_scene(split: str, index: int) -> Scene:
    """Scene `index` of `split`: an image of 1..4 shapes and its questions (one of each
    image type; no relation question when no two shapes are apart)."""
    rng = _rng(split, index, video=False)
    width, height = _image_size(rng)
    n = int(rng.integers(1, 5))
    shapes = _shapes(rng, width, height, n, (0.26, 0.38))
    _, bg = _background(rng, width, height)
    image = render(width, height, shapes, bg)
    target = shapes[int(rng.integers(len(shapes)))]
    asked = shapes[int(rng.integers(len(shapes)))]
    qs = [
        QA("colour", f"What colour is the {target.kind}?", target.colour),
        QA("shape", f"What shape is the {asked.colour} object?", asked.kind),
        QA("count", "How many shapes are there?", str(len(shapes))),
    ]
    rel = _relation(rng, shapes)
    if rel is not None:
        qs.append(rel)
    present = {s.colour for s in shapes} | {s.kind for s in shapes}
    qs.append(QA("colours", "Which colours do you see?", " ".join(c for c in COLOURS if c in present)))
    qs.append(QA("shapes", "Which shapes do you see?", " ".join(k for k in KINDS if k in present)))
    return Scene(split, index, image, shapes, qs)


def dense_questions(scene: Scene, max_relations: int = 3) -> list[list[QA]]:
    """Training-only supervision of an image scene (the held-out questions stay those
    of image_scene): groups of questions whose texts and answers give away nothing about
    the others' answers, each meant for one chat of its own: the colour of every shape
    by kind; the kind of every shape by colour; the count and up to max_relations
    relation questions about different pairs of shapes; the colour and kind lists.
    Drawn from a stream of its own, seeded by the scene's split and index."""
    if scene.is_video:
        raise ValueError(f"scene: expected an image scene, got video scene {scene.index} of {scene.split!r}")
    rng = np.random.default_rng([SPLITS[scene.split], 0, scene.index, 1])
    by_type = {qa.qtype: qa for qa in scene.questions}
    colour = [QA("colour", f"What colour is the {s.kind}?", s.colour) for s in scene.shapes]
    kind = [QA("shape", f"What shape is the {s.colour} object?", s.kind) for s in scene.shapes]
    pairs: dict[frozenset, list[tuple[Shape, str, Shape]]] = {}
    for a, rel, b in _relation_options(scene.shapes):
        pairs.setdefault(frozenset((a.name, b.name)), []).append((a, rel, b))
    relations = []
    for i in rng.permutation(len(pairs))[:max_relations]:
        options = list(pairs.values())[int(i)]
        relations.append(_ask_relation(rng, *options[int(rng.integers(len(options)))]))
    return [colour, kind, [by_type["count"], *relations], [by_type["colours"], by_type["shapes"]]]


def video_scene(split: str, index: int, n_frames: int = VIDEO_FRAMES) -> Scene:
    """Scene `index` of `split`: n_frames frames where 2..3 shapes each stay visible for
    one contiguous run of frames; one shape appears strictly first."""
    rng = _rng(split, index, video=True)
    width, height = int(rng.integers(40, 97)), int(rng.integers(40, 97))
    n = int(rng.integers(2, 4))
    shapes = _shapes(rng, width, height, n, (0.3, 0.4))
    n = len(shapes)
    while True:
        starts = rng.integers(0, n_frames - 1, size=n)
        if (starts == starts.min()).sum() == 1:
            break
    lengths = [int(rng.integers(1, n_frames - s + 1)) for s in starts]
    counted = int(rng.integers(n))  # the shape whose frames are counted: uniform length
    lengths[counted] = int(rng.integers(1, n_frames + 1))
    if lengths[counted] > n_frames - starts[counted]:
        starts[counted] = int(rng.integers(0, n_frames - lengths[counted] + 1))
        while (starts == starts.min()).sum() != 1:  # keep one strict first appearance
            i = int(rng.choice([j for j in range(n) if j != counted]))
            starts[i] = int(rng.integers(0, n_frames - 1))
            lengths[i] = int(rng.integers(1, n_frames - starts[i] + 1))
    visible = [[int(s) <= f < int(s) + ln for f in range(n_frames)] for s, ln in zip(starts, lengths, strict=True)]
    base, _ = _background(rng, width, height)
    frames = []
    for f in range(n_frames):
        bg = base + rng.normal(0, 4, size=(height, width, 3))
        frames.append(render(width, height, [s for s, v in zip(shapes, visible, strict=True) if v[f]], bg))
    first = shapes[int(np.argmin(starts))]
    c = shapes[counted]
    qs = [
        QA("first", "Which colour appears first in the video?", first.colour),
        QA("frames", f"How many frames show the {c.name}?", str(sum(visible[counted]))),
    ]
    return Scene(split, index, frames[0], shapes, qs, frames, visible)


def scenes(split: str, n_images: int, n_videos: int, start: int = 0) -> list[Scene]:
    """The first n_images image scenes and n_videos video scenes of `split` from `start`."""
    return [image_scene(split, start + i) for i in range(n_images)] + [
        video_scene(split, start + i) for i in range(n_videos)
    ]


def corpus() -> list[str]:
    """Every word and phrase the task uses, for training the tokenizer."""
    words = list(COLOURS) + list(KINDS) + [str(i) for i in range(1, 10)] + ["yes", "no"]
    text = [
        "You are a helpful assistant",
        "What colour is the",
        "What shape is the object?",
        "How many shapes are there?",
        "Which colour appears first in the video?",
        "How many frames show the",
        "Which colours do you see?",
        "Which shapes do you see?",
    ]
    text += [f"Is the {c} {k} {r} the {c2} {k2}?" for c, c2 in zip(COLOURS, list(COLOURS)[1:], strict=False)
             for k, k2 in zip(KINDS, KINDS[1:], strict=False) for r in RELATIONS]  # fmt: skip
    text += [f"What colour is the {k}?" for k in KINDS] + [f"What shape is the {c} object?" for c in COLOURS]
    text += [f"How many frames show the {c} {k}?" for c in COLOURS for k in KINDS]
    text += [" ".join(COLOURS), " ".join(KINDS)]
    return text + words


def sample_scenes() -> dict[str, Scene]:
    """The bundled samples: the first held-out (test) scenes that are wide, tall and square
    with at least three shapes, and the first held-out video."""
    picks: dict[str, Scene] = {}
    wanted = {"wide": lambda a: a >= 2.0, "tall": lambda a: a <= 0.5, "square": lambda a: 0.8 <= a <= 1.25}
    i = 0
    while len(picks) < len(wanted):
        sc = image_scene("test", i)
        aspect = sc.image.width / sc.image.height
        for name, ok in wanted.items():
            if name not in picks and ok(aspect) and len(sc.shapes) >= 3:
                picks[name] = sc
        i += 1
    picks["video"] = video_scene("test", 0)
    return picks


def write_samples(out_dir: str) -> None:
    """Write the sample images (PNG), the video (lossless FFV1 in Matroska, 4 fps) and
    samples.json (file, split, index, questions and answers of each)."""
    import json
    import os

    import av

    os.makedirs(out_dir, exist_ok=True)
    index = {}
    for name, sc in sample_scenes().items():
        if sc.is_video:
            file = f"{name}.mkv"
            with av.open(os.path.join(out_dir, file), "w") as container:
                stream = container.add_stream("ffv1", rate=4)
                stream.width, stream.height = sc.frames[0].size
                stream.pix_fmt = "bgr0"
                for f in sc.frames:
                    for packet in stream.encode(av.VideoFrame.from_image(f)):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
        else:
            file = f"{name}.png"
            sc.image.save(os.path.join(out_dir, file))
        index[name] = {
            "file": file,
            "split": sc.split,
            "index": sc.index,
            "video": sc.is_video,
            "questions": [[qa.qtype, qa.question, qa.answer] for qa in sc.questions],
        }
    with open(os.path.join(out_dir, "samples.json"), "w") as f:
        json.dump(index, f, indent=2)
