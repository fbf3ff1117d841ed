"""nvila.processor and the prompt splicing of nvila.model: chat template, tiling order,
frame sampling, where visual tokens land in the prompt."""

import numpy as np
import pytest
import torch
from model_tiny import make_image, tile_image, tiny_model
from PIL import Image

from nvila.media import frame_indices, split_media, user_content
from nvila.tokenizer import chat_template
from nvila_kernels.tiling import plan_single, plan_tiles

pytestmark = pytest.mark.model


def test_chat_template_exact():
    msgs = [{"role": "user", "content": user_content("What is this?", 1)}]
    assert chat_template(msgs) == (
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
        "<|im_start|>user\n<image>What is this?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": user_content("Hi", 2)},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": user_content("And this?", video=True)},
    ]
    assert chat_template(msgs, add_generation_prompt=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<image><image>Hi<|im_end|>\n"
        "<|im_start|>assistant\nHello<|im_end|>\n"
        "<|im_start|>user\n<vila/video>And this?<|im_end|>\n"
    )
    assert split_media("a<image><image>b<vila/video>") == ["a", "<image>", "<image>", "b", "<vila/video>"]


def test_tile_image_order_and_normalization():
    # 2x2 quadrants of distinct colours; scale 64 cuts four 32-pixel tiles row-major
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    a = np.zeros((64, 64, 3), dtype=np.uint8)
    for i, c in enumerate(colours):
        r, q = divmod(i, 2)
        a[r * 32 : (r + 1) * 32, q * 32 : (q + 1) * 32] = c
    plan = plan_tiles(64, 64, (32, 64), 32, 4)
    x = tile_image(Image.fromarray(a), plan)
    assert x.shape == (1 + 4, 3, 32, 32) and x.dtype == torch.float32
    for i, c in enumerate(colours):
        want = (torch.tensor(c, dtype=torch.float32) / 255 - 0.5) / 0.5
        # the tile's centre pixel (far from the resampling at the quadrant borders)
        torch.testing.assert_close(x[1 + i, :, 16, 16], want)
    flat = tile_image(Image.new("RGB", (50, 20), (51, 102, 204)), plan_single(50, 20, 32), std=(0.25, 0.5, 1.0))
    want = (torch.tensor([51, 102, 204]) / 255 - 0.5) / torch.tensor([0.25, 0.5, 1.0])
    torch.testing.assert_close(flat[0].permute(1, 2, 0), want.expand(32, 32, 3))


def test_frame_indices():
    assert frame_indices(10, 4) == [0, 3, 6, 9]
    assert frame_indices(5, 8) == [0, 1, 1, 2, 2, 3, 3, 4]
    # 4 s at 25 fps sampled at 2 fps: t = 0, 0.5, 1.0, ... -> int(t * 25)
    assert frame_indices(100, 3, fps=2.0, video_fps=25.0) == [0, 12, 25]
    with pytest.raises(ValueError, match="frames"):
        frame_indices(0, 4)


def _runs(ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of every run of -1 in ids."""
    out, start = [], None
    for i, v in enumerate(ids.tolist() + [0]):
        if v == -1 and start is None:
            start = i
        elif v != -1 and start is not None:
            out.append((start, i - start))
            start = None
    return out


@torch.no_grad()
def test_splicing_multi_image():
    m = tiny_model()
    tok = m.tokenizer
    images = [make_image(80, 50, 1), make_image(30, 60, 2)]
    prompt = chat_template([{"role": "user", "content": user_content("Compare them.", 2)}])
    embeds, ids = m.embed_prompt(prompt, images)
    head = tok.encode("<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n")
    tail = tok.encode("Compare them.<|im_end|>\n<|im_start|>assistant\n")
    n = m.cfg.tokens_per_tile  # several images: each one non-tiled tile
    assert ids.tolist() == head + [-1] * n + [tok.newline_id] + [-1] * n + [tok.newline_id] + tail
    assert _runs(ids) == [(len(head), n), (len(head) + n + 1, n)]
    blocks = [m.encode_image(im, tiled=False)[0] for im in images]
    torch.testing.assert_close(embeds[len(head) : len(head) + n], blocks[0])
    torch.testing.assert_close(embeds[len(head) + n + 1 : len(head) + 2 * n + 1], blocks[1])
    text = ids != -1
    torch.testing.assert_close(embeds[text], m.llm.embed(ids[text]))
    assert tok.encode("<image>") != [] and not (ids == tok.encode("<image>")[0]).any()  # placeholders never embedded


@torch.no_grad()
def test_splicing_single_image_is_tiled_and_lite_expands_tiles():
    m = tiny_model()
    prompt = chat_template([{"role": "user", "content": user_content("What?", 1)}])
    embeds, ids = m.embed_prompt(prompt, [make_image(80, 50)])
    assert [n for _, n in _runs(ids)] == [12 * 16]  # 4x3 tiles at the largest scale, 2x2 per 8x8 block
    lite = tiny_model("tiny-lite")
    embeds, ids = lite.embed_prompt(prompt, [make_image(80, 50)])
    runs = _runs(ids)
    assert [n for _, n in runs] == [9] * 7  # 3x2 tiles + thumbnail, 121 -> 9 tokens per tile here
    nl = lite.tokenizer.newline_id
    for s, n in runs:  # each tile: tokens, "\n" embedding, then the prompt's own "\n"
        assert ids[s + n].item() == nl and ids[s + n + 1].item() == nl
    assert lite.tokenizer.decode(ids[runs[-1][0] + 11 :].tolist()).startswith("What?")


def test_placeholder_count_mismatch():
    m = tiny_model()
    prompt = chat_template([{"role": "user", "content": user_content("What?", 1)}])
    with pytest.raises(ValueError, match="images"):
        m.embed_prompt(prompt, [])
    with pytest.raises(ValueError, match="video"):
        m.embed_prompt(prompt, [make_image()], video=[make_image()] * 4)
