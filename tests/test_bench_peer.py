"""bench_model --peer compares like with like: transformers' SiglipVisionModel and
Qwen2ForCausalLM loaded with the nvila model's weights, and the bench's unfused glue
(preprocessing, merge + compress + projector), compute what nvila computes."""

import torch
from model_tiny import make_image, tile_image, tiny_model

from bench import bench_model


@torch.no_grad()
def test_peer_stack_computes_what_nvila_computes():
    m = tiny_model()
    vision, qwen, projector = bench_model.peer_models(m)
    image = make_image(80, 50)
    plan = m.plan(image.width, image.height)
    v = m.cfg.vision
    pixels = bench_model.peer_tiles(image, plan, v.image_mean, v.image_std)
    # Pillow's float bicubic vs our exact uint8 resampling: within a rounding of the 8-bit pixels
    torch.testing.assert_close(pixels, tile_image(image, plan, v.image_mean, v.image_std), atol=2 / 255 / 0.5, rtol=0)
    processor = bench_model.hf_processor(v.image, v.image_mean, v.image_std)  # the timed preprocessing
    torch.testing.assert_close(bench_model.peer_tiles_hf(image, plan, processor), pixels, atol=1e-5, rtol=0)
    feats = vision(pixel_values=pixels, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(feats, m.vision(pixels), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        bench_model.peer_project(feats, plan, m.cfg.k, projector), m.projector(feats, plan), atol=1e-4, rtol=1e-4
    )
    x = torch.randn(1, 9, m.cfg.llm.hidden)
    m.llm.setup_caches(1, 9)
    pos = torch.arange(9)
    torch.testing.assert_close(qwen(inputs_embeds=x).logits, m.llm(x, pos, pos[None], None), atol=1e-4, rtol=1e-4)
