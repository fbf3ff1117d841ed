"""vllm.LLM on an NVILA checkpoint through the plugin, against nvila (the oracle): the same
prompt tokens with the visual tokens in the same places, the same greedy tokens; the
vision path on nvila_kernels' compiled ops."""

import os

import numpy as np
import pytest
from oracle import nvila_greedy
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

import nvila
from nvila.media import load_video
from nvila.scoring import prompt_text

SAMPLES = os.path.join(os.path.dirname(nvila.TINY_MODEL), "samples")
MAX_TOKENS = 8


def sample(name: str) -> Image.Image:
    return Image.open(os.path.join(SAMPLES, name)).convert("RGB")


@pytest.fixture(scope="module")
def ref(checkpoint):
    return nvila.load(checkpoint)


@pytest.fixture(scope="module")
def llm(checkpoint):
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process: the kernel probe sees it
    from vllm import LLM

    engine = LLM(
        model=checkpoint, dtype="float32", enforce_eager=True, max_model_len=512, distributed_executor_backend="uni"
    )
    yield engine
    del engine


def vllm_greedy(llm, ref, text, images=(), video=None):
    from vllm import SamplingParams

    data = {}
    if images:
        data["image"] = images[0] if len(images) == 1 else list(images)
    if video is not None:
        data["video"] = np.stack([np.asarray(f) for f in video])
    prompt = prompt_text(ref, text, len(images), video is not None)
    [res] = llm.generate(
        {"prompt": prompt, "multi_modal_data": data}, SamplingParams(temperature=0, max_tokens=MAX_TOKENS)
    )
    return list(res.prompt_token_ids), list(res.outputs[0].token_ids)


CASES = {
    "wide": (["wide.png"], "What colour is the square?"),
    "tall": (["tall.png"], "What colour is the ring?"),
    "square": (["square.png"], "How many shapes are there?"),
    "two images": (["wide.png", "tall.png"], "Which colours do you see?"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_images_match_nvila(llm, ref, case):
    files, text = CASES[case]
    images = [sample(f) for f in files]
    want_ids, want = nvila_greedy(ref, text, images)
    got_ids, got = vllm_greedy(llm, ref, text, images)
    assert got_ids == want_ids  # same text tokens, same number and places of visual tokens
    assert got == want


def test_video_matches_nvila(llm, ref):
    frames = load_video(os.path.join(SAMPLES, "video.mkv"), ref.cfg.num_video_frames, ref.cfg.fps)
    want_ids, want = nvila_greedy(ref, "Which colour appears first in the video?", video=frames)
    got_ids, got = vllm_greedy(llm, ref, "Which colour appears first in the video?", video=frames)
    assert got_ids == want_ids
    assert got == want


def test_chat_uses_the_checkpoint_template(llm, ref):
    """llm.chat renders the conversation with the chat template the plugin gives the tokenizer."""
    from vllm import SamplingParams

    image = sample("wide.png")
    content = [{"type": "image_pil", "image_pil": image}, {"type": "text", "text": "What colour is the square?"}]
    [res] = llm.chat([{"role": "user", "content": content}], SamplingParams(temperature=0, max_tokens=MAX_TOKENS))
    want_ids, want = nvila_greedy(ref, "What colour is the square?", [image])
    assert list(res.prompt_token_ids) == want_ids
    assert list(res.outputs[0].token_ids) == want


class OpCounter(TorchDispatchMode):
    """Counts the nvila_kernels ops (torch.ops.nvila.*) dispatched while it is active."""

    def __init__(self):
        super().__init__()
        self.counts: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "nvila":
            name = func.name().split("::")[1].split(".")[0]
            self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def test_vision_path_runs_the_kernels(llm, ref):
    """One tiled image, two untiled images, a video: tiling, merge/compress and temporal
    pooling run as nvila_kernels' compiled ops (the reference backend dispatches none)."""
    frames = load_video(os.path.join(SAMPLES, "video.mkv"), ref.cfg.num_video_frames, ref.cfg.fps)
    with OpCounter() as counter:
        vllm_greedy(llm, ref, "Which colours?", [sample("square.png").rotate(90)])  # new pixels: no cache hit
        vllm_greedy(llm, ref, "Which colours?", [sample("wide.png").rotate(180), sample("tall.png").rotate(180)])
        vllm_greedy(llm, ref, "Which colour?", video=[f.rotate(180) for f in frames])
    names = " ".join(sorted(counter.counts))
    for op in ("multiscale_tile", "merge_compress", "spatial_compress", "temporal_pool"):
        assert op in names, f"{op} never dispatched as an nvila_kernels op; dispatched: {counter.counts}"


@pytest.mark.parametrize("tiled", [True, False])
def test_token_counts_match_nvila_for_many_sizes(ref, tiled):
    """The processor's visual token count (what it reserves in the prompt) equals the number
    of tokens nvila's vision path makes, over aspect ratios from 1:30 to 30:1 (no engine)."""
    from nvila.vllm.model import image_tokens

    rng = np.random.default_rng(0)
    sizes = [(1, 1), (28, 28), (29, 27), (84, 84), (85, 56), (56, 85), (300, 10), (10, 300), (250, 120), (997, 331)]
    for w, h in sizes:
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        made = sum(block.shape[0] for block in ref.encode_image(image, tiled))
        assert image_tokens(ref.cfg, w, h, tiled) == made, (w, h)
