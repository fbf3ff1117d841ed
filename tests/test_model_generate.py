"""nvila.generate end to end on a tiny random model: greedy determinism, stopping,
left-padded batches, sampling, reference vs kernel backends, FP8 mode, the CLI and
the video path with temporal pooling."""

import os
import subprocess
import sys

import pytest
import torch
from model_tiny import make_image, tiny_model

import nvila
from nvila.generate import sample
from nvila_kernels import backends

pytestmark = pytest.mark.model

QUESTION = "What is in the image?"


def test_greedy_is_deterministic_and_streams():
    m = tiny_model()
    img = make_image(80, 50)
    a = nvila.generate(m, QUESTION, images=[img], max_new_tokens=12)
    pieces = list(nvila.generate(m, QUESTION, images=[img], max_new_tokens=12, stream=True))
    assert len(pieces) > 1 and "".join(pieces) == a
    assert len(m.tokenizer.encode(a)) > 0


def _first_tokens(m, embeds, n):
    return [int(t[0]) for t, _ in nvila.generate_ids(m, [embeds], n)]


def test_stops_on_stop_token():
    m = tiny_model()
    embeds, _ = m.embed_prompt(nvila.tokenizer.chat_template([{"role": "user", "content": "hello"}]))
    free = _first_tokens(m, embeds, 8)
    stop = free[3]
    first = free.index(stop)
    steps = list(nvila.generate_ids(m, [embeds], 8, stop_id=stop))
    assert len(steps) == first + 1  # stops right after emitting it
    assert [bool(a[0]) for _, a in steps] == [True] * first + [False]
    assert [int(t[0]) for t, _ in steps] == free[: first + 1]
    # generate() stops at <|im_end|>: a head that always prefers it ends at step 0
    head = torch.nn.Linear(64, m.cfg.llm.vocab)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[m.tokenizer.im_end_id] = 1.0
    m.llm.head = head
    steps = list(nvila.generate_ids(m, [embeds], 8, stop_id=m.tokenizer.im_end_id))
    assert len(steps) == 1 and not steps[0][1][0]
    assert nvila.generate(m, "hello", max_new_tokens=8) == ""


def test_compiled_decode_step_gives_the_same_tokens():
    m = tiny_model()
    embeds, _ = m.embed_prompt(nvila.tokenizer.chat_template([{"role": "user", "content": "hello"}]))
    eager = [int(t[0]) for t, _ in nvila.generate_ids(m, [embeds], 6)]
    assert [int(t[0]) for t, _ in nvila.generate_ids(m, [embeds], 6, compile=True)] == eager


def test_batch_with_left_padding_equals_single_runs():
    m = tiny_model()
    reqs = [
        ("hi", [], None),
        (QUESTION, [make_image(80, 50)], None),
        ("Describe both.", [make_image(), make_image(30, 60)], None),
    ]
    batch = nvila.generate_batch(m, reqs, max_new_tokens=10)
    single = [nvila.generate(m, t, images=i, max_new_tokens=10) for t, i, _ in reqs]
    assert batch == single


def test_sampling():
    m = tiny_model()
    greedy = nvila.generate(m, "hello", max_new_tokens=10)
    assert nvila.generate(m, "hello", max_new_tokens=10, temperature=1.0, top_p=1e-6, seed=1) == greedy
    a = nvila.generate(m, "hello", max_new_tokens=10, temperature=1.5, seed=3)
    assert a == nvila.generate(m, "hello", max_new_tokens=10, temperature=1.5, seed=3)
    draws = {nvila.generate(m, "hello", max_new_tokens=10, temperature=1.5, seed=s) for s in range(4)}
    assert len(draws) > 1
    with pytest.raises(ValueError, match="top_p"):
        nvila.generate(m, "hello", top_p=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        nvila.generate(m, "hello", max_new_tokens=0)


def test_sample_top_p_keeps_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample(logits, 1.0, 0.7, g) for _ in range(400)])
    assert set(draws.flatten().tolist()) == {0, 1}  # 0.5 < 0.7 <= 0.5 + 0.3


FAST = [b for b in ("cpu", "triton", "emu") if backends.unavailable_reason(b, torch.device("cpu")) is None]


# The model's wiring of each op is backend-independent (nvila_kernels.functional): the
# Dynamic-S2 model on Triton's interpreter (its merge_compress alone ~3 min) adds nothing
# the cpu/emu runs and tests/test_merge_compress.py's Triton cases do not check.
@pytest.mark.parametrize(
    ("name", "backend"), [(n, b) for n in ("tiny", "tiny-lite") for b in FAST if (n, b) != ("tiny", "triton")]
)
def test_reference_and_kernel_backends_agree(name, backend):
    m = tiny_model(name)
    img = make_image(80, 50)
    m.backend = "reference"
    prompt = nvila.tokenizer.chat_template([{"role": "user", "content": "<image>What?"}])
    ref, _ = m.embed_prompt(prompt, [img])
    ref_tokens = [int(t[0]) for t, _ in nvila.generate_ids(m, [ref], 8)]
    m.backend = backend
    fast, _ = m.embed_prompt(prompt, [img])
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)
    assert [int(t[0]) for t, _ in nvila.generate_ids(m, [fast], 8)] == ref_tokens


def test_fp8_mode_runs_and_sqnr():
    m = tiny_model()
    prompt = nvila.tokenizer.chat_template([{"role": "user", "content": "<image>What?"}])
    img = make_image(80, 50)

    @torch.no_grad()
    def logits(model):
        e, _ = model.embed_prompt(prompt, [img])
        T = e.shape[0]
        model.llm.setup_caches(1, T)
        pos = torch.arange(T)
        return model.llm(e[None], pos, pos[None], torch.ones(T, T, dtype=torch.bool).tril()[None, None])

    exact = logits(m)
    nvila.quantize_fp8(m)
    from nvila_kernels.layers import Fp8Linear

    assert isinstance(m.llm.layers[0].mlp.up, Fp8Linear) and isinstance(m.vision.blocks[0].attn.q, Fp8Linear)
    assert isinstance(m.llm.head, torch.nn.Linear) and isinstance(m.projector.fc1, torch.nn.Linear)
    q = logits(m)
    sqnr = 10 * torch.log10(exact.pow(2).sum() / (exact - q).pow(2).sum()).item()
    bf16 = logits(tiny_model().to(torch.bfloat16)).float()
    sqnr_bf16 = 10 * torch.log10(exact.pow(2).sum() / (exact - bf16).pow(2).sum()).item()
    print(f"logits SQNR vs fp32: FP8 (LLM + vision Linear layers) {sqnr:.1f} dB, bf16 model {sqnr_bf16:.1f} dB")
    # E4M3 keeps 3 mantissa bits to bf16's 7 (~24 dB less per rounding); the random tiny
    # model amplifies errors (bf16 itself reaches only ~33 dB), so FP8 lands near 15 dB.
    assert sqnr > 10 and sqnr_bf16 - sqnr < 30
    assert isinstance(nvila.generate(m, QUESTION, images=[img], max_new_tokens=4), str)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-nvila")
    nvila.save(tiny_model(), str(path))
    make_image(80, 50).save(path / "image.png")
    return path


def test_cli_streams_answer(checkpoint):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "nvila", "--model", str(checkpoint), "--image", str(checkpoint / "image.png"),
           "--prompt", QUESTION, "--max-new-tokens", "6", "--dtype", "fp32", "--device", "cpu"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    m = nvila.load(str(checkpoint), dtype=torch.float32)
    want = nvila.generate(m, QUESTION, images=[str(checkpoint / "image.png")], max_new_tokens=6)
    assert out.stdout == want + "\n"
    bad = subprocess.run(cmd[:4] + ["--prompt", "x"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0


def _write_video(path, n_frames=12, size=(48, 32)):
    import av
    import numpy as np

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=6)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        rng = np.random.default_rng(0)
        for i in range(n_frames):
            a = np.full((size[1], size[0], 3), (20 * i) % 256, dtype=np.uint8)
            a[: size[1] // 2] = rng.integers(0, 256, (size[1] // 2, size[0], 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@torch.no_grad()
def test_video_frames_and_temporal_pooling(tmp_path):
    from nvila.media import load_video

    video = tmp_path / "v.mp4"
    _write_video(video)
    m = tiny_model()  # 8 frames, temporal_pool 4
    frames = load_video(str(video), m.cfg.num_video_frames)
    assert len(frames) == 8 and frames[0].size == (48, 32)
    blocks = m.encode_video(frames)
    assert [b.shape for b in blocks] == [(16, 64)] * 2
    per_frame = torch.stack([m.encode_image(f, tiled=False)[0] for f in frames])  # (8, 16, 64)
    torch.testing.assert_close(torch.stack(blocks), per_frame.view(2, 4, 16, 64).mean(1), atol=1e-5, rtol=1e-5)
    prompt = nvila.tokenizer.chat_template([{"role": "user", "content": "<vila/video>Describe the video."}])
    _, ids = m.embed_prompt(prompt, video=frames)
    assert (ids == -1).sum() == 2 * 16
    answer = nvila.generate(m, "Describe the video.", video=str(video), max_new_tokens=5)
    assert isinstance(answer, str) and answer


def test_cli_fp8_in_process(checkpoint, capsys):
    from nvila.cli import main

    args = ["--model", str(checkpoint), "--prompt", "hello", "--max-new-tokens", "4", "--fp8", "--backend", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and len(out) > 1
