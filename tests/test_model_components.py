"""nvila components against straightforward independent implementations: config
validation, the SigLIP tower, merge + compression projector, the Qwen2 decoder and
its KV cache. Tiny configs, random weights, fp32."""

import math

import pytest
import torch
from model_tiny import randomize, tiny_model

import nvila
from nvila.config import LLMConfig, NVILAConfig, VisionConfig, preset
from nvila.llm import Qwen2, causal_mask
from nvila.projector import Projector, merge_compress
from nvila.vision import VisionTower
from nvila_kernels.tiling import plan_lite, plan_single, plan_tiles

pytestmark = pytest.mark.model

# ---- config --------------------------------------------------------------------


def test_presets_validate_and_match_nvila_md():
    for name, cfg in nvila.PRESETS.items():
        assert isinstance(cfg, NVILAConfig), name
    c = preset("nvila-8b")
    assert (c.mm_hidden, c.k, c.tokens_per_tile, c.vision.computed_layers) == (3456, 2, 256, 26)
    assert (c.llm.hidden, c.llm.layers, c.llm.heads, c.llm.kv_heads, c.llm.ffn) == (3584, 28, 28, 4, 18944)
    lite = preset("nvila-lite-2b")
    assert (lite.mm_hidden, lite.k, lite.tokens_per_tile, lite.llm.tie_embeddings) == (1152, 3, 121, True)
    assert preset("nvila-15b").llm.hidden == 5120
    assert preset("nvila-8b-video").temporal_pool == 8


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: VisionConfig(hidden=30, heads=4), "heads"),
        (lambda: VisionConfig(image=30, patch=4), "patch"),
        (lambda: VisionConfig(select_layer=0), "select_layer"),
        (lambda: LLMConfig(heads=6, kv_heads=4, hidden=48), "kv_heads"),
        (lambda: LLMConfig(vocab=0), "vocab"),
        (lambda: LLMConfig(rope_theta=-1.0), "rope_theta"),
        (lambda: NVILAConfig(projector_type="mlp"), "projector_type"),
        (lambda: NVILAConfig(scales=(448, 900)), "scales"),
        (lambda: NVILAConfig(scales=(896, 448)), "scales"),
        (lambda: NVILAConfig(max_tiles=4), "max_tiles"),
        (lambda: NVILAConfig(image_mode="lite"), "scales"),
        (lambda: NVILAConfig(num_video_frames=12, temporal_pool=8), "temporal_pool"),
        (lambda: preset("nvila-9b"), "name"),
    ],
)
def test_bad_config_values_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---- vision ----------------------------------------------------------------------


def _layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _siglip_by_hand(tower: VisionTower, pixels: torch.Tensor, n_blocks: int) -> torch.Tensor:
    cfg, sd = tower.cfg, tower.state_dict()
    P, G, D = cfg.patch, cfg.grid, cfg.hidden
    # patches row-major, each flattened (c, py, px) like the conv weight
    patches = pixels.unfold(2, P, P).unfold(3, P, P)  # (n, 3, G, G, P, P)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(pixels.shape[0], G * G, 3 * P * P)
    x = patches @ sd["patch.weight"].reshape(D, -1).T + sd["patch.bias"] + sd["pos.weight"]
    hd = D // cfg.heads
    for i in range(n_blocks):
        p = lambda n, i=i: sd[f"blocks.{i}.{n}"]
        h = _layer_norm(x, p("norm1.weight"), p("norm1.bias"), cfg.eps)
        q, k, v = (h @ p(f"attn.{n}.weight").T + p(f"attn.{n}.bias") for n in "qkv")
        heads = []
        for j in range(cfg.heads):
            s = slice(j * hd, (j + 1) * hd)
            a = torch.softmax(q[..., s] @ k[..., s].transpose(-1, -2) / math.sqrt(hd), dim=-1)
            heads.append(a @ v[..., s])
        x = x + torch.cat(heads, -1) @ p("attn.out.weight").T + p("attn.out.bias")
        h = _layer_norm(x, p("norm2.weight"), p("norm2.bias"), cfg.eps)
        h = h @ p("mlp.fc1.weight").T + p("mlp.fc1.bias")
        h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
        x = x + h @ p("mlp.fc2.weight").T + p("mlp.fc2.bias")
    return x


def test_vision_tower_matches_siglip_by_hand_and_skips_last_block():
    cfg = VisionConfig(hidden=32, layers=3, heads=2, mlp=64, patch=4, image=32)
    tower = randomize(VisionTower(cfg))
    assert len(tower.blocks) == 2  # hidden_states[-2] of a 3-block tower
    pixels = torch.rand(3, 3, 32, 32) * 2 - 1
    y = tower(pixels)
    assert y.shape == (3, 64, 32)
    torch.testing.assert_close(y, _siglip_by_hand(tower, pixels, 2), atol=2e-5, rtol=2e-5)
    with pytest.raises(ValueError, match="pixels"):
        tower(torch.zeros(1, 3, 28, 28))


# ---- projector -------------------------------------------------------------------


def _area_resize_by_hand(m: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(h, w, C) -> (H, W, C): adaptive average pooling, one output cell at a time."""
    h, w, _ = m.shape
    out = torch.empty(H, W, m.shape[2])
    for i in range(H):
        r0, r1 = (i * h) // H, -(-((i + 1) * h) // H)
        for j in range(W):
            c0, c1 = (j * w) // W, -(-((j + 1) * w) // W)
            out[i, j] = m[r0:r1, c0:c1].mean((0, 1))
    return out


def _merge_compress_by_hand(features, plan, k, w, b, eps):
    n, hw, C = features.shape
    g = int(math.isqrt(hw))
    last = plan.scales[-1]
    H, W = last.rows * g, last.cols * g
    maps, t = [], 0
    for s in plan.scales:
        m = torch.empty(s.rows * g, s.cols * g, C)
        for r in range(s.rows):
            for c in range(s.cols):
                m[r * g : (r + 1) * g, c * g : (c + 1) * g] = features[t].reshape(g, g, C)
                t += 1
        maps.append(_area_resize_by_hand(m, H, W))
    merged = torch.cat(maps, -1)  # (H, W, S*C)
    SC = merged.shape[-1]
    side = -(-g // k)
    grid = torch.zeros(last.rows * side, last.cols * side, k * k * SC)
    for br in range(last.rows):
        for bc in range(last.cols):
            for I in range(side):
                for J in range(side):
                    for dr in range(k):
                        for dc in range(k):
                            y, x = k * I + dr, k * J + dc
                            if y < g and x < g:
                                slot = dr * k + dc
                                grid[br * side + I, bc * side + J, slot * SC : (slot + 1) * SC] = merged[
                                    br * g + y, bc * g + x
                                ]
    return _layer_norm(grid.reshape(-1, k * k * SC), w, b, eps)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("plan", [plan_tiles(80, 50, (32, 64, 96), 32), plan_tiles(40, 130, (32, 64), 32, 6)])
def test_merge_compress_matches_nvila_order_by_hand(k, plan):
    C = 5
    S = len(plan.scales)
    feats = torch.randn(plan.n_tiles, 64, C)
    w, b = 1 + 0.1 * torch.randn(k * k * S * C), 0.1 * torch.randn(k * k * S * C)
    y = merge_compress(feats, plan, k, w, b, 1e-5)
    ref = _merge_compress_by_hand(feats, plan, k, w, b, 1e-5)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("name", ["tiny", "tiny-lite"])
def test_projector_mlp_by_hand(name):
    cfg = preset(name)
    proj = randomize(Projector(cfg))
    sd = proj.state_dict()
    x = torch.randn(7, cfg.k * cfg.k * cfg.mm_hidden)
    gelu = lambda t: 0.5 * t * (1 + torch.erf(t / math.sqrt(2)))
    lin = lambda t, n: t @ sd[f"{n}.weight"].T + sd[f"{n}.bias"]
    if cfg.k == 2:
        ref = lin(gelu(lin(x, "fc1")), "fc2")
    else:
        h = gelu(lin(x, "fc1"))
        h = _layer_norm(h, sd["ln2.weight"], sd["ln2.bias"], 1e-5)
        ref = lin(gelu(lin(h, "fc2")), "fc3")
    torch.testing.assert_close(proj.mlp(x), ref, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize(
    "size, tiles, tokens",
    [((1024, 1024), 14, 2304), ((300, 300), 14, 2304), ((1920, 1080), 17, 3072), ((800, 600), 17, 3072),
     ((1080, 1920), 15, 2560), ((4000, 1000), 17, 3072)],
)  # fmt: skip
def test_full_size_token_counts_on_meta_device(size, tiles, tokens):
    """NVILA.md section 2's table, at the real NVILA-8B shapes, by shape logic only."""
    with torch.device("meta"):
        model = nvila.NVILA(preset("nvila-8b"))
        plan = model.plan(*size)
        assert plan.n_tiles == tiles
        feats = model.vision(torch.empty(plan.n_tiles, 3, 448, 448))
        assert feats.shape == (tiles, 1024, 1152)
        assert model.projector(feats, plan).shape == (tokens, 3584)
        single = model.vision_features(torch.empty(1, 3, 448, 448))
        assert model.projector(single, plan_single(*size, 448)).shape == (256, 3584)
    with torch.device("meta"):
        lite = nvila.NVILA(preset("nvila-lite-2b"))
        plan = plan_lite(*size, 448)
        out = lite.projector.compress_tiles(torch.empty(plan.n_tiles, 1024, 1152))
        assert out.shape == (plan.n_tiles, 121, 1536)


# ---- LLM -------------------------------------------------------------------------


def _qwen2_by_hand(llm: Qwen2, ids: torch.Tensor) -> torch.Tensor:
    """One sequence (T,) -> logits (T, vocab), no cache."""
    cfg, sd = llm.cfg, llm.state_dict()
    T, hd = ids.shape[0], cfg.head_dim
    rms = lambda x, w: x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg.eps) * w
    inv = cfg.rope_theta ** (-torch.arange(0, hd, 2).double() / hd)
    ang = (torch.arange(T).double()[:, None] * inv[None]).float()  # (T, hd/2)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    rot = lambda x: x * cos + torch.cat([-x[..., hd // 2 :], x[..., : hd // 2]], -1) * sin
    x = sd["embed.weight"][ids]
    group = cfg.heads // cfg.kv_heads
    for i in range(cfg.layers):
        p = lambda n, i=i: sd[f"layers.{i}.{n}"]
        h = rms(x, p("norm1.weight"))
        q = h @ p("attn.q.weight").T + p("attn.q.bias")
        k = h @ p("attn.k.weight").T + p("attn.k.bias")
        v = h @ p("attn.v.weight").T + p("attn.v.bias")
        heads = []
        for j in range(cfg.heads):
            kv = slice((j // group) * hd, (j // group + 1) * hd)
            qj, kj = rot(q[:, j * hd : (j + 1) * hd]), rot(k[:, kv])
            s = qj @ kj.T / math.sqrt(hd) + torch.full((T, T), float("-inf")).triu(1)
            heads.append(torch.softmax(s, -1) @ v[:, kv])
        x = x + torch.cat(heads, -1) @ p("attn.o.weight").T
        h = rms(x, p("norm2.weight"))
        g = h @ p("mlp.gate.weight").T
        x = x + (g * torch.sigmoid(g) * (h @ p("mlp.up.weight").T)) @ p("mlp.down.weight").T
    x = rms(x, sd["norm.weight"])
    return x @ (sd["embed.weight"] if cfg.tie_embeddings else sd["head.weight"]).T


def _full(llm: Qwen2, ids: torch.Tensor) -> torch.Tensor:
    B, T = ids.shape
    llm.setup_caches(B, T + 4)
    pos = torch.arange(T)
    valid = torch.zeros(B, T + 4, dtype=torch.bool)
    valid[:, :T] = True
    return llm(llm.embed(ids), pos, pos.expand(B, T), causal_mask(pos, valid))


@pytest.mark.parametrize("tied", [False, True])
def test_qwen2_matches_by_hand(tied):
    cfg = LLMConfig(hidden=64, layers=2, heads=4, kv_heads=2, ffn=96, vocab=101, rope_theta=1e4, tie_embeddings=tied)
    llm = randomize(Qwen2(cfg))
    ids = torch.randint(0, 101, (13,))
    with torch.no_grad():
        y = _full(llm, ids[None])[0]
        torch.testing.assert_close(y, _qwen2_by_hand(llm, ids), atol=1e-4, rtol=1e-4)


def test_kv_cache_decode_equals_full_recompute():
    cfg = LLMConfig(hidden=64, layers=2, heads=4, kv_heads=1, ffn=96, vocab=101, rope_theta=1e4)
    llm = randomize(Qwen2(cfg))
    ids = torch.randint(0, 101, (2, 11))
    T0, S = 6, 11
    with torch.no_grad():
        full = _full(llm, ids)  # (2, 11, vocab)
        llm.setup_caches(2, S)
        valid = torch.zeros(2, S, dtype=torch.bool)
        valid[:, :T0] = True
        pos = torch.arange(T0)
        steps = [llm(llm.embed(ids[:, :T0]), pos, pos.expand(2, T0), causal_mask(pos, valid))]
        for t in range(T0, S):
            valid[:, t] = True
            pos = torch.tensor([t])
            steps.append(llm(llm.embed(ids[:, t : t + 1]), pos, pos.expand(2, 1), causal_mask(pos, valid)))
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-4, rtol=1e-4)


def test_llm_needs_caches():
    llm = Qwen2(LLMConfig(hidden=16, layers=1, heads=2, kv_heads=1, ffn=8, vocab=10))
    with pytest.raises(RuntimeError, match="setup_caches"):
        llm(torch.zeros(1, 1, 16), torch.tensor([0]), torch.tensor([[0]]), torch.ones(1, 1, 1, 1, dtype=torch.bool))


def test_tiny_model_shapes():
    m = tiny_model()
    plan = m.plan(80, 50)
    assert (plan.n_tiles, plan.block_size) == (1 + 4 + 12, (3, 4))
    blocks = m.encode_image(torch.randint(0, 256, (50, 80, 3), dtype=torch.uint8))
    assert [b.shape for b in blocks] == [(12 * 16, 64)]
    blocks = m.encode_image(torch.randint(0, 256, (50, 80, 3), dtype=torch.uint8), tiled=False)
    assert [b.shape for b in blocks] == [(16, 64)]
    lite = tiny_model("tiny-lite")
    blocks = lite.encode_image(torch.randint(0, 256, (50, 80, 3), dtype=torch.uint8))
    assert [b.shape for b in blocks] == [(9, 64)] * 7  # 3x2 tiles + thumbnail, 3x3 tokens each
