"""plan_tiles / plan_single / plan_lite against NVILA.md section 2, with expected
grids worked out by hand from the rule (not from the code under test)."""

import pytest

from nvila_kernels.tiling import candidate_grids, plan_lite, plan_single, plan_tiles

# NVILA.md: the candidate order for 9..12 tiles, as the official code walks it
DOC_ORDER = [(3, 3), (9, 1), (1, 9), (10, 1), (1, 10), (2, 5), (5, 2), (11, 1), (1, 11), (1, 12), (6, 2), (12, 1),
             (3, 4), (4, 3), (2, 6)]  # fmt: skip


def test_candidate_order_matches_nvila():
    assert candidate_grids(9, 12) == DOC_ORDER


@pytest.mark.parametrize(
    "size, grid, tiles, merged",
    [  # NVILA.md's table: image WxH -> largest grid (cols, rows), tiles, merged map (rows x cols) in tokens
        ((1024, 1024), (3, 3), 14, (96, 96)),
        ((300, 300), (3, 3), 14, (96, 96)),
        ((1920, 1080), (4, 3), 17, (96, 128)),
        ((800, 600), (4, 3), 17, (96, 128)),
        ((1080, 1920), (2, 5), 15, (160, 64)),
        ((4000, 1000), (6, 2), 17, (64, 192)),
        # extremes: the flattest / tallest candidates
        ((1, 1), (3, 3), 14, (96, 96)),
        ((5000, 1), (12, 1), 17, (32, 384)),
        ((1, 5000), (1, 12), 17, (384, 32)),
    ],
)
def test_nvila_8b_plans(size, grid, tiles, merged):
    plan = plan_tiles(*size)
    cols, rows = grid
    assert [(s.cols, s.rows) for s in plan.scales] == [(1, 1), (2, 2), (cols, rows)]
    assert [(s.width, s.height) for s in plan.scales] == [(448, 448), (896, 896), (448 * cols, 448 * rows)]
    assert plan.n_tiles == tiles and plan.block_size == (rows, cols)
    assert (32 * rows, 32 * cols) == merged


def test_exact_tie_breaks_by_area():
    """Aspect 0.875 is exactly between 3x3 (1.0) and 3x4 (0.75): the later candidate
    (3, 4) wins only if the image has more than half of 3x4 tiles' pixels (1,204,224)."""
    assert plan_tiles(875, 1000).block_size == (3, 3)  # 875,000 pixels
    assert plan_tiles(1750, 2000).block_size == (4, 3)  # 3,500,000 pixels: rows 4, cols 3


def test_tile_order_is_row_major_per_scale():
    boxes = plan_tiles(1920, 1080).tile_boxes()
    assert boxes[:5] == [(0, 0, 0, 448, 448), (1, 0, 0, 448, 448), (1, 448, 0, 896, 448), (1, 0, 448, 448, 896),
                         (1, 448, 448, 896, 896)]  # fmt: skip
    assert boxes[5:9] == [(2, 0, 0, 448, 448), (2, 448, 0, 896, 448), (2, 896, 0, 1344, 448), (2, 1344, 0, 1792, 448)]
    assert boxes[-1] == (2, 1344, 896, 1792, 1344) and len(boxes) == 17


def test_tiny_model_scales():
    """Scales 28/56/84 with tile 28 (the tiny test models): same rule, 9..12 tiles.
    56x28 has aspect 2: closest candidate ratios are 2.5 (5x2, diff 0.5), 4/3 and 3."""
    plan = plan_tiles(56, 28, scales=(28, 56, 84), tile=28)
    assert [(s.width, s.height, s.cols, s.rows) for s in plan.scales] == [(28, 28, 1, 1), (56, 56, 2, 2),
                                                                          (140, 56, 5, 2)]  # fmt: skip
    assert plan.block_size == (2, 5) and plan.n_tiles == 15


def test_two_scales():
    plan = plan_tiles(1000, 1000, scales=(896, 448), tile=448, max_tiles=6)  # sorted: 448, 896; 4..6 tiles
    assert [(s.cols, s.rows) for s in plan.scales] == [(1, 1), (2, 2)]


def test_single_and_lite():
    assert plan_single(1920, 1080).n_tiles == 1 and plan_single(7, 3).block_size == (1, 1)
    # aspect 1.78 over 1..12 tiles: ratio 2 (diff 0.22) is closest, first as 2x1, then
    # tied by 4x2, which wins since 1920*1080 > 0.5 * 448^2 * 8
    lite = plan_lite(1920, 1080)
    assert (lite.scales[0].cols, lite.scales[0].rows) == (4, 2) and lite.thumbnail and lite.n_tiles == 9
    small = plan_lite(200, 100)  # same tie, but 20,000 pixels: 2x1 stays
    assert (small.scales[0].cols, small.scales[0].rows) == (2, 1) and small.n_tiles == 3
    square = plan_lite(448, 448)  # 1x1 is the first exact match: no thumbnail
    assert square.n_tiles == 1 and not square.thumbnail
