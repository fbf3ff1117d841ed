"""Prefill without a materialized mask (SDPA's causal path, row by row for left-padded
batches) and the LM head on the last position only, against the explicit-mask path:
same logits (fp32, within reorder error) and the same greedy tokens."""

import pytest
import torch
from model_tiny import make_image, randomize, tiny_model

import nvila
from nvila.config import LLMConfig
from nvila.llm import Qwen2, causal_mask
from nvila.tokenizer import chat_template

CFG = LLMConfig(hidden=64, layers=2, heads=4, kv_heads=2, ffn=96, vocab=101, rope_theta=1e4)


def _masked_logits(llm, x, lens):
    """The explicit-mask prefill of a left-padded batch x (B, T, H): logits (B, T, vocab)."""
    B, T, _ = x.shape
    llm.setup_caches(B, T)
    pos = torch.arange(T)
    pad = torch.tensor([T - n for n in lens])
    valid = pos[None] >= pad[:, None]  # (B, T)
    return llm(x, pos, (pos[None] - pad[:, None]).clamp(min=0), causal_mask(pos, valid))


def _causal_logits(llm, x, lens):
    B, T, _ = x.shape
    llm.setup_caches(B, T)
    pos = torch.arange(T)
    pad = [T - n for n in lens]
    return llm(x, pos, (pos[None] - torch.tensor(pad)[:, None]).clamp(min=0), None, left_pad=pad)


@pytest.mark.parametrize("lens", [[13], [13, 9, 1], [5, 5]])
def test_causal_prefill_matches_the_masked_one(lens):
    llm = randomize(Qwen2(CFG))
    T = max(lens)
    x = torch.zeros(len(lens), T, CFG.hidden)
    for b, n in enumerate(lens):
        x[b, T - n :] = llm.embed(torch.randint(0, CFG.vocab, (n,)))
    with torch.no_grad():
        want, got = _masked_logits(llm, x, lens), _causal_logits(llm, x, lens)
    assert torch.isfinite(got).all()  # padding queries included
    for b, n in enumerate(lens):
        torch.testing.assert_close(got[b, T - n :], want[b, T - n :], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("lens", [[13], [13, 9, 1]])
def test_last_only_prefill_is_the_last_position_of_the_full_one(lens):
    """hidden(last_only=True): the last layer computes the last position only, yet gives that
    position's output and fills the KV cache exactly as the full prefill does."""
    llm = randomize(Qwen2(CFG))
    T = max(lens)
    x = torch.randn(len(lens), T, CFG.hidden)
    pad = [T - n for n in lens]
    pos, rope_pos = torch.arange(T), (torch.arange(T)[None] - torch.tensor(pad)[:, None]).clamp(min=0)
    rows = []  # rows seen by the last layer's MLP
    llm.layers[-1].mlp.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[1]))
    runs = []  # (output, every layer's k and v cache) of the full prefill, then of last_only
    with torch.no_grad():
        for last_only in (False, True):
            llm.setup_caches(len(lens), T + 2)
            h = llm.hidden(x, pos, rope_pos, None, left_pad=pad, last_only=last_only)
            runs.append((h, [(layer.attn.cache.k, layer.attn.cache.v) for layer in llm.layers]))
    (full, full_cache), (last, last_cache) = runs
    assert rows == [T, 1] and last.shape == (len(lens), 1, CFG.hidden)
    torch.testing.assert_close(last, full[:, -1:], atol=1e-5, rtol=1e-5)
    for (k0, v0), (k1, v1) in zip(full_cache, last_cache, strict=True):
        torch.testing.assert_close(k1, k0, atol=0, rtol=0)
        torch.testing.assert_close(v1, v0, atol=0, rtol=0)


def test_causal_prefill_refuses_what_it_cannot_do():
    llm = Qwen2(CFG)
    llm.setup_caches(1, 8)
    x, pos = torch.zeros(1, 4, CFG.hidden), torch.arange(4)
    with pytest.raises(ValueError, match="input_pos"):
        llm.hidden(x, pos + 2, pos[None], None)
    with pytest.raises(ValueError, match="left_pad"):
        llm.hidden(x, pos, pos[None], None, left_pad=[4])
    with pytest.raises(ValueError, match="left_pad"):
        llm.hidden(x, pos, pos[None], torch.ones(1, 1, 4, 8, dtype=torch.bool), left_pad=[0])
    with pytest.raises(ValueError, match="last_only"):
        llm.hidden(x, pos, pos[None], torch.ones(1, 1, 4, 8, dtype=torch.bool), last_only=True)


@torch.no_grad()
def _greedy_masked(model, embeds, n):
    """Greedy tokens of a left-padded batch, every step through the explicit mask and the
    full-prompt logits (the path before the causal prefill)."""
    llm, lens = model.llm, [e.shape[0] for e in embeds]
    B, T = len(embeds), max(lens)
    llm.setup_caches(B, T + n)
    x = torch.zeros(B, T, llm.cfg.hidden)
    valid = torch.zeros(B, T + n, dtype=torch.bool)
    for b, e in enumerate(embeds):
        x[b, T - lens[b] :] = e
        valid[b, T - lens[b] : T] = True
    pad = torch.tensor([T - m for m in lens])
    pos = torch.arange(T)
    logits = llm(x, pos, (pos[None] - pad[:, None]).clamp(min=0), causal_mask(pos, valid))[:, -1]
    out = []
    for t in range(n):
        tok = logits.argmax(-1)
        out.append(tok.tolist())
        step = torch.tensor([T + t])
        valid[:, T + t] = True
        logits = llm(llm.embed(tok)[:, None], step, (step - pad)[:, None], causal_mask(step, valid))[:, -1]
    return out


def test_greedy_tokens_unchanged_for_image_video_and_padded_prompts():
    m = tiny_model()
    one = m.embed_prompt(chat_template([{"role": "user", "content": "<image>What?"}]), [make_image(80, 50)])[0]
    two = m.embed_prompt(
        chat_template([{"role": "user", "content": "<image><image>Compare."}]), [make_image(40, 30, 1), make_image()]
    )[0]
    frames = [make_image(32, 32, s) for s in range(m.cfg.temporal_pool * 2)]
    video = m.embed_prompt(chat_template([{"role": "user", "content": "<vila/video>Describe."}]), video=frames)[0]
    text = m.embed_prompt(chat_template([{"role": "user", "content": "hello"}]))[0]
    for batch in ([one], [two], [video], [text, one, video]):
        got = [t.tolist() for t, _ in nvila.generate_ids(m, batch, 6)]
        assert got == _greedy_masked(m, batch, 6)


def test_prefill_runs_the_lm_head_on_the_last_position_only():
    """A 20k-token vocabulary and a 300-token prompt: the head sees (1, hidden), so
    prefill never holds a prompt x vocabulary logits tensor."""
    cfg = LLMConfig(hidden=32, layers=1, heads=2, kv_heads=1, ffn=32, vocab=20000, rope_theta=1e4)
    m = tiny_model()
    m.llm = randomize(Qwen2(cfg))
    seen = []
    m.llm.norm.register_forward_hook(lambda mod, args, out: seen.append(tuple(args[0].shape)))
    for t, _ in nvila.generate_ids(m, [torch.randn(300, 32), torch.randn(200, 32)], 2):
        assert t.shape == (2,)
    assert seen == [(2, 32), (2, 32)]  # prefill, then one decode step


def test_prefill_and_vision_attention_take_the_fused_kernel():
    """With only SDPA's flash kernel allowed (it raises where it cannot run), the causal
    prefill of a left-padded batch and the vision tower on a tile batch still run."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    m = tiny_model()
    llm, x = m.llm, torch.randn(2, 7, m.cfg.llm.hidden)
    with torch.no_grad(), sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        llm.setup_caches(2, 7)
        pos = torch.arange(7)
        llm.hidden(x, pos, pos.expand(2, 7), None, left_pad=[0, 3])
        llm.hidden(x, pos, pos.expand(2, 7), None, left_pad=[0, 3], last_only=True)
        m.vision(torch.randn(3, 3, m.cfg.vision.image, m.cfg.vision.image))
