"""The shipped tiny NVILA (nvila.TINY_MODEL) and its task (nvila.tiny.shapes): the dataset
generator is deterministic by seed and its answers agree with its pixels, the training
batch is the prompt the model builds, the shipped checkpoint answers held-out
questions, the kernel backends and FP8 mode agree with the reference, and the CLI,
demo and package data use it."""

import fnmatch
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nvila
from nvila.media import load_image, load_video
from nvila.tiny import eval as tiny_eval
from nvila.tiny import shapes, train

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]


# ---- the dataset -------------------------------------------------------------------


def test_generator_is_deterministic_by_seed():
    a, b = shapes.image_scene("test", 7), shapes.image_scene("test", 7)
    assert a.image.tobytes() == b.image.tobytes() and a.questions == b.questions and a.shapes == b.shapes
    v, w = shapes.video_scene("val", 3), shapes.video_scene("val", 3)
    assert [f.tobytes() for f in v.frames] == [f.tobytes() for f in w.frames] and v.questions == w.questions
    # other indices and other splits are other scenes
    others = [shapes.image_scene("test", 8), shapes.image_scene("train", 7), shapes.image_scene("val", 7)]
    assert all(o.image.tobytes() != a.image.tobytes() for o in others)
    assert shapes.video_scene("train", 3).frames[0].tobytes() != v.frames[0].tobytes()
    with pytest.raises(ValueError, match="split"):
        shapes.image_scene("dev", 0)


def _colour_at(image, shape: shapes.Shape) -> str | None:
    """The palette colour at a pixel every kind of shape covers (the box centre; for a
    ring, the middle of its left stroke), or None for background."""
    l, t, r, b = shape.box
    x = l + shapes.stroke_width(r - l) // 2 if shape.kind == "ring" else (l + r) // 2
    px = np.asarray(image, dtype=np.float32)[(t + b) // 2, x]
    name, dist = min(((n, np.linalg.norm(px - c)) for n, c in shapes.COLOURS.items()), key=lambda x: x[1])
    return name if dist < 40 else None


def _relation_holds(a: shapes.Shape, rel: str, b: shapes.Shape) -> bool:
    return {"left of": a.box[2] <= b.box[0], "right of": b.box[2] <= a.box[0],
            "above": a.box[3] <= b.box[1], "below": b.box[3] <= a.box[1]}[rel]  # fmt: skip


def test_answers_agree_with_the_pixels():
    for i in range(40):
        sc = shapes.image_scene("train", i)
        by_name = {s.name: s for s in sc.shapes}
        assert 1 <= len(sc.shapes) <= 4
        for s in sc.shapes:
            assert _colour_at(sc.image, s) == s.colour
        for qa in sc.questions + [qa for group in shapes.dense_questions(sc) for qa in group]:
            if qa.qtype == "colour":
                kind = re.fullmatch(r"What colour is the (\w+)\?", qa.question).group(1)
                assert qa.answer == next(s.colour for s in sc.shapes if s.kind == kind)
            elif qa.qtype == "shape":
                colour = re.fullmatch(r"What shape is the (\w+) object\?", qa.question).group(1)
                assert qa.answer == next(s.kind for s in sc.shapes if s.colour == colour)
            elif qa.qtype == "count":
                assert qa.answer == str(len(sc.shapes))
            elif qa.qtype == "relation":
                m = re.fullmatch(r"Is the (\w+ \w+) (left of|right of|above|below) the (\w+ \w+)\?", qa.question)
                a, rel, b = by_name[m.group(1)], m.group(2), by_name[m.group(3)]
                opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}[rel]
                assert _relation_holds(a, rel, b) == (qa.answer == "yes")
                assert _relation_holds(a, opposite, b) == (qa.answer == "no")  # never ambiguous
            elif qa.qtype == "colours":
                assert qa.answer.split() == [c for c in shapes.COLOURS if c in {s.colour for s in sc.shapes}]
            elif qa.qtype == "shapes":
                assert qa.answer.split() == [k for k in shapes.KINDS if k in {s.kind for s in sc.shapes}]
    for i in range(20):
        sc = shapes.video_scene("train", i)
        seen = [[_colour_at(f, s) == s.colour for f in sc.frames] for s in sc.shapes]
        assert seen == sc.visible
        first = [min(j for j, v in enumerate(row) if v) for row in seen]
        assert sorted(first)[0] < sorted(first)[1]  # one shape strictly first
        first_q, frames_q = sc.questions
        assert first_q.answer == sc.shapes[int(np.argmin(first))].colour
        name = re.fullmatch(r"How many frames show the (\w+ \w+)\?", frames_q.question).group(1)
        assert frames_q.answer == str(sum(seen[[s.name for s in sc.shapes].index(name)]))


def test_dense_training_questions():
    """shapes.dense_questions: every shape's colour and kind, relations of different
    pairs, the held-out questions' count and lists; no question of a group names an
    answer of another question of its group (the groups are packed into chats)."""
    relations = 0
    for i in range(60):
        sc = shapes.image_scene("train", i)
        groups = shapes.dense_questions(sc)
        qas = [qa for g in groups for qa in g]
        assert len(qas) == len({qa.question for qa in qas})  # no question twice
        for qtype, key in (("colour", "colour"), ("shape", "kind")):
            asked = [qa for qa in qas if qa.qtype == qtype]
            assert sorted(qa.answer for qa in asked) == sorted(getattr(s, key) for s in sc.shapes)
        for qtype in ("count", "colours", "shapes"):
            assert [qa for qa in qas if qa.qtype == qtype] == [qa for qa in sc.questions if qa.qtype == qtype]
        rel = [re.fullmatch(r"Is the (\w+ \w+) .+ the (\w+ \w+)\?", qa.question).groups() for qa in qas
               if qa.qtype == "relation"]  # fmt: skip
        assert len(rel) <= 3 and len({frozenset(r) for r in rel}) == len(rel)  # different pairs
        assert bool(rel) == any(qa.qtype == "relation" for qa in sc.questions)
        relations += len(rel)
        for g in groups:
            words = {w for qa in g for w in qa.answer.split()} - {"yes", "no"}
            for qa in g:
                others = " ".join(o.question for o in g if o is not qa)
                assert not any(w in others.split(" ") or w + "?" in others.split(" ") for w in qa.answer.split()
                               if w in words), (qa, g)  # fmt: skip
        assert shapes.dense_questions(sc) == groups  # seeded by the scene
    assert relations > 60  # more than one per scene on average
    with pytest.raises(ValueError, match="scene"):
        shapes.dense_questions(shapes.video_scene("train", 0))


def test_images_give_varied_dynamic_s2_grids():
    model = train.init_model(train.build_tokenizer())
    grids = {model.plan(*shapes.image_scene("train", i).image.size).block_size for i in range(60)}
    assert len(grids) >= 5, grids


def test_every_answer_is_one_token_and_prompts_fit():
    tok = train.build_tokenizer()
    for word in [*shapes.COLOURS, *shapes.KINDS, "yes", "no", *map(str, range(1, 9))]:
        assert len(tok.encode(word)) == 1, word
    assert len(tok) <= nvila.preset("tiny-shapes").llm.vocab


# ---- training ----------------------------------------------------------------------


def test_training_batch_is_the_prompt_the_model_builds():
    """make_batch's batched vision path and cached media give the embeddings that
    model.embed_prompt computes for the same prompt one image / video at a time."""
    torch.manual_seed(0)
    model = train.init_model(train.build_tokenizer(), seed=1).eval()
    scenes = [shapes.image_scene("train", 2), shapes.video_scene("train", 0), shapes.image_scene("train", 5)]
    with torch.no_grad():
        x, y, qtypes = train.make_batch(model, scenes)
        row = 0
        for sc in scenes:
            for qa in sc.questions:
                text = train.prompt_text(qa, sc.is_video) + qa.answer + "<|im_end|>"
                if sc.is_video:
                    embeds, ids = model.embed_prompt(text, [], sc.frames)
                else:
                    embeds, ids = model.embed_prompt(text, [sc.image])
                torch.testing.assert_close(x[row, : len(embeds)], embeds, rtol=1e-5, atol=1e-5)
                assert not x[row, len(embeds) :].any()
                targets = y[row][y[row] != -100].tolist()
                assert model.tokenizer.decode(targets) == qa.answer + "<|im_end|>"
                assert qtypes[row] == [qa.qtype]
                row += 1
        assert row == len(x)
        # packed: one multi-turn chat per scene whose targets are all the answers
        _, yp, qp = train.make_batch(model, scenes, pack=True)
        for b, sc in enumerate(scenes):
            answers = {qa.qtype: qa.answer for qa in sc.questions}
            expected = "".join(answers[q] + "<|im_end|>" for q in qp[b])
            assert model.tokenizer.decode(yp[b][yp[b] != -100].tolist()) == expected
        # dense: a packed chat per group of shapes.dense_questions for images
        _, yd, qd = train.make_batch(model, scenes, pack=True, dense=True)
        groups = shapes.dense_questions(scenes[0]) + [scenes[1].questions] + shapes.dense_questions(scenes[2])
        assert len(yd) == len(groups)
        for b, g in enumerate(groups):
            assert sorted(qd[b]) == sorted(qa.qtype for qa in g)
            got = model.tokenizer.decode(yd[b][yd[b] != -100].tolist()).split("<|im_end|>")[:-1]
            assert sorted(got) == sorted(qa.answer for qa in g)


@pytest.mark.parametrize("dense", [False, True])
def test_shared_prefix_batch_computes_what_separate_chats_do(dense):
    """Training runs each scene's chats as branches over one shared prefix (the visual
    tokens once) and packs scenes into rows: the loss at every answer token must equal
    what make_batch's one-chat-per-row batch gives, with fewer tokens through the LLM."""
    torch.manual_seed(0)
    model = train.init_model(train.build_tokenizer(), seed=2).eval()
    scenes = [shapes.image_scene("train", i) for i in (2, 5, 9)] + [shapes.video_scene("train", i) for i in (0, 3)]

    def losses(x, y, rope_pos=None, mask=None):
        at = y != -100
        logits = train.logits_of(model, x, rope_pos, mask, at)
        return F.cross_entropy(logits, y[at], reduction="none"), y[at]

    with torch.no_grad():
        blocks = train.encode_scenes(model, scenes)
        xb, yb, _ = train.make_batch(model, scenes, pack=True, blocks=blocks, dense=dense)
        want, want_y = losses(xb, yb)
        assert len(want) > 20
        # one scene at a time: one row, targets in make_batch's order
        got = [losses(*train.shared_prefix_batch(model, [sc], blocks=blocks, dense=dense)) for sc in scenes]
        torch.testing.assert_close(torch.cat([g[0] for g in got]), want, rtol=1e-5, atol=1e-5)
        assert torch.equal(torch.cat([g[1] for g in got]), want_y)
        # all scenes packed: the same losses, in row order
        x, y, rope_pos, mask = train.shared_prefix_batch(model, scenes, blocks=blocks, dense=dense)
        got, got_y = losses(x, y, rope_pos, mask)
        torch.testing.assert_close(got.sort().values, want.sort().values, rtol=1e-5, atol=1e-5)
        assert torch.equal(got_y.sort().values, want_y.sort().values)
        assert len(x) < len(scenes)  # the short scenes share rows
        # (equal losses also show that no branch sees another chat: with random weights
        # any extra key changes the logits) and fewer positions run through the LLM
        assert x.shape[0] * x.shape[1] < xb.shape[0] * xb.shape[1]


def test_position_targets_are_token_centres_row_major():
    pos = train.token_positions(2, 3)
    want = [[(c + 0.5) / 3, (r + 0.5) / 2] for r in range(2) for c in range(3)]
    torch.testing.assert_close(pos, torch.tensor(want))


def test_training_is_reproducible_from_its_seed(tmp_path):
    args = ["--steps", "2", "--images", "2", "--videos", "1", "--val-every", "2", "--val-images", "2",
            "--val-videos", "1", "--pack", "--no-dense", "--aux-position", "0"]  # fmt: skip
    a = train.train(train.parse_args(args))
    b = train.train(train.parse_args(args))
    c = train.train(train.parse_args([*args, "--seed", "1"]))
    init = train.init_model(train.build_tokenizer())
    sa, sb, sc, s0 = (m.state_dict() for m in (a, b, c, init))
    assert all(torch.equal(sa[n], sb[n]) for n in sa)
    assert not all(torch.equal(sa[n], sc[n]) for n in sa)  # another seed, other weights
    assert not all(torch.equal(sa[n], s0[n]) for n in sa)  # it trained
    # dense questions with the position probe train too, and to other weights
    e = train.train(train.parse_args([*args, "--dense", "--aux-position", "1"]))
    assert not all(torch.equal(sa[n], t) for n, t in e.state_dict().items())
    # the 3x3 projector variant trains and round-trips too
    d = train.train(train.parse_args([*args, "--projector", "mlp_downsample_3x3_fix"]))
    nvila.save(d, str(tmp_path / "ck3"))
    assert nvila.load(str(tmp_path / "ck3"), dtype="fp32").cfg.k == 3
    nvila.save(a, str(tmp_path / "ck"))
    back = nvila.load(str(tmp_path / "ck"), dtype="fp32")
    for p, q in zip(a.state_dict().values(), back.state_dict().values(), strict=True):
        assert torch.equal(p, q)


# ---- the shipped model -------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return nvila.load(nvila.TINY_MODEL, dtype="fp32")


@pytest.fixture(scope="module")
def small_eval():
    """A few dozen held-out questions (the full evaluation is python -m nvila.tiny.eval)."""
    return tiny_eval.questions("test", 10, 8)


def test_shipped_checkpoint_is_the_tiny_shapes_config(shipped):
    want = nvila.preset("tiny-shapes")
    assert shipped.cfg.vision == want.vision and shipped.cfg.scales == (28, 56, 84)
    assert shipped.cfg.projector_type == "mlp_downsample" and shipped.cfg.image_mode == "dynamic_s2"
    assert shipped.cfg.temporal_pool == want.temporal_pool and shipped.cfg.num_video_frames == 8
    size = sum(f.stat().st_size for f in Path(nvila.TINY_MODEL).rglob("*.safetensors"))
    assert size < 5e6


def test_shipped_model_answers_held_out_questions(shipped, small_eval):
    answers = tiny_eval.answer_all(shipped, small_eval)
    acc = tiny_eval.accuracy(small_eval, answers)
    # what the model has learnt well (python -m nvila.tiny.eval has the full picture);
    # chance: count 1/4, colour lists ~1/30, first colour ~1/5, all image questions ~1/5;
    # the colour of a named kind and the kind of a named colour ~1/2.5 by guessing among
    # the colours / kinds present
    assert acc["count"] >= 0.9 and acc["colours"] >= 0.9 and acc["first"] >= 0.9, acc
    assert acc["colour"] >= 0.9 and acc["shape"] >= 0.9 and acc["shapes"] >= 0.9, acc
    assert acc["image"] >= 0.85, acc


def test_shipped_model_answers_the_samples(shipped):
    with open(os.path.join(nvila.SAMPLES, "samples.json")) as f:
        samples = json.load(f)
    right = []
    for s in samples.values():
        path = os.path.join(nvila.SAMPLES, s["file"])
        media = {"video": path} if s["video"] else {"images": [path]}
        for qtype, question, expected in s["questions"]:
            answer = nvila.generate(shipped, question, max_new_tokens=4, **media)
            right.append(answer == expected)
            if qtype in ("colour", "shape", "count", "colours", "shapes", "first"):
                assert answer == expected, question
    assert sum(right) >= 0.75 * len(right)


def test_widening_keeps_what_the_model_computes(shipped, small_eval):
    """nvila.tiny.widen (how the shipped model got heads of 32): the wider LLM, with zeros in
    its new channels, gives the old logits and answers; with noise it does not."""
    from nvila.generate import prefill
    from nvila.tiny.widen import widen

    h = shipped.cfg.llm.hidden
    wide = widen(shipped, 2 * h)
    assert wide.cfg.llm.hidden == 2 * h and wide.cfg.llm.heads == shipped.cfg.llm.heads
    torch.manual_seed(0)
    x = torch.randn(2, 40, h)
    pos = torch.arange(40).expand(2, 40)
    outs = []
    for m, xx in ((shipped, x), (wide, torch.cat([x, torch.zeros_like(x)], -1))):
        m.llm.setup_caches(2, 64)
        outs.append(prefill(m, xx, pos, [0, 5]))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-4, rtol=1e-4)
    some = small_eval[:12]
    assert tiny_eval.answer_all(wide, some) == tiny_eval.answer_all(shipped, some)
    noisy = widen(shipped, 2 * h, noise=0.05)
    noisy.llm.setup_caches(2, 64)
    assert not torch.allclose(prefill(noisy, torch.cat([x, torch.zeros_like(x)], -1), pos, [0, 5]), outs[0], atol=1e-3)
    with pytest.raises(ValueError, match="hidden"):
        widen(shipped, h + 1)


@pytest.mark.parametrize("fp8", [False, True])
def test_kernel_backend_and_fp8_agree_with_the_reference(shipped, small_eval, fp8):
    ref = tiny_eval.answer_all(shipped, small_eval)
    other = tiny_eval.answer_all(tiny_eval.load_model(None, "cpu", fp8=fp8), small_eval)
    assert tiny_eval.agreement(ref, other) >= (0.95 if fp8 else 0.97)


def test_samples_are_the_held_out_scenes_they_name():
    with open(os.path.join(nvila.SAMPLES, "samples.json")) as f:
        samples = json.load(f)
    assert {s["file"] for s in samples.values()} == set(os.listdir(nvila.SAMPLES)) - {"samples.json"}
    for s in samples.values():
        assert s["split"] == "test"
        path = os.path.join(nvila.SAMPLES, s["file"])
        if s["video"]:
            sc = shapes.video_scene(s["split"], s["index"])
            frames = load_video(path, len(sc.frames))
            assert [f.tobytes() for f in frames] == [f.tobytes() for f in sc.frames]  # lossless
        else:
            sc = shapes.image_scene(s["split"], s["index"])
            assert load_image(path).tobytes() == sc.image.tobytes()
        assert s["questions"] == [[qa.qtype, qa.question, qa.answer] for qa in sc.questions]


def test_cli_uses_the_shipped_model_by_default(capsys, shipped):
    from nvila.cli import main

    image = os.path.join(nvila.SAMPLES, "wide.png")
    question = "How many shapes are there?"
    assert main(["--image", image, "--prompt", question, "--max-new-tokens", "4"]) == 0
    expected = nvila.generate(shipped, question, images=[image], max_new_tokens=4)
    assert capsys.readouterr().out == expected + "\n"
    assert expected == str(len(shapes.image_scene("test", _sample_index("wide")).shapes))


def _sample_index(name: str) -> int:
    with open(os.path.join(nvila.SAMPLES, "samples.json")) as f:
        return json.load(f)[name]["index"]


def test_demo_shows_the_model(capsys):
    from nvila.tiny import demo

    assert demo.model_demo()
    out = capsys.readouterr().out
    assert "Dynamic-S2 tiles" in out and "visual tokens" in out and "Q: How many shapes are there?" in out
    assert "video.mkv: 8 frames" in out


def test_package_data_ships_the_assets():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^packages = \[.*"nvila\.tiny".*\]$', pyproject, flags=re.M), "nvila.tiny is not packaged"
    section = pyproject.split("[tool.setuptools.package-data]")[1]
    globs = json.loads(re.search(r'^"nvila.tiny" = (\[.*\])$', section, flags=re.M).group(1))
    assets = ROOT / "nvila" / "tiny" / "assets"
    files = [p.relative_to(assets.parent).as_posix() for p in assets.rglob("*") if p.is_file()]
    assert any(f.endswith(".safetensors") for f in files) and any(f.endswith(".mkv") for f in files)
    for f in files:
        assert any(fnmatch.fnmatch(f, g) for g in globs), f
