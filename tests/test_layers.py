"""Drop-in modules: SpatialCompress loads the official projector's LayerNorm and
matches space-to-depth + LayerNorm; TemporalPool averages frame groups."""

import pytest
import torch
from torch import nn

from nvila_kernels import reference
from nvila_kernels.layers import SpatialCompress, TemporalPool


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_spatial_compress_loads_official_layernorm(k, backend):
    C = 12
    official_ln = nn.LayerNorm(k * k * C)  # the projector's layers.1
    with torch.no_grad():
        official_ln.weight.normal_()
        official_ln.bias.normal_()
    sc = SpatialCompress(C, k, backend=backend)
    sc.load_state_dict(official_ln.state_dict())  # same parameter names
    grid = torch.randn(2, 7, 7, C)
    expected = reference.spatial_compress(grid, k, official_ln.weight, official_ln.bias, 1e-5)
    torch.testing.assert_close(sc(grid), expected, rtol=1e-5, atol=1e-5)
    # (B, N, C) tokens of a square grid, as the official DownSampleBlock takes them
    tokens = sc(grid.flatten(1, 2))
    torch.testing.assert_close(tokens, expected.flatten(1, 2), rtol=1e-5, atol=1e-5)
    # and the LayerNorm part is the official nn.LayerNorm on the rearranged tokens
    plain = reference.spatial_compress(grid, k)
    torch.testing.assert_close(sc(grid), official_ln(plain), rtol=1e-5, atol=1e-5)


def test_spatial_compress_variants():
    x = torch.randn(1, 4, 4, 3)
    assert list(SpatialCompress(3, 2, layer_norm=False).state_dict()) == []
    torch.testing.assert_close(SpatialCompress(3, 2, layer_norm=False)(x), reference.spatial_compress(x, 2))
    no_affine = SpatialCompress(3, 2, elementwise_affine=False)
    torch.testing.assert_close(
        no_affine(x), nn.LayerNorm(12, elementwise_affine=False)(reference.spatial_compress(x, 2))
    )


def test_temporal_pool_module():
    x = torch.randn(16, 2, 2, 5)
    torch.testing.assert_close(TemporalPool(8)(x), x.view(2, 8, 2, 2, 5).mean(1))
