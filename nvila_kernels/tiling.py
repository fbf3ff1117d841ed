"""Dynamic-S2 tile plans: which resized images and which tiles NVILA cuts from an
image (NVILA.md section 2). Pure Python; the plan drives the tiling and merge ops.

Three plans:
- plan_tiles(width, height, scales, tile, max_tiles): NVILA-8B/15B's Dynamic-S2.
  Every scale but the largest resizes the whole image to a (tile*k) square,
  k = scale / scales[0], and cuts k x k tiles; the largest picks a grid of
  cols x rows tiles (min (scales[-1]/scales[0])^2 tiles, at most max_tiles) whose
  aspect ratio is closest to the image's. Tiles are row-major within a scale,
  scales ascending. block_size = (rows, cols) of the largest grid.
- plan_single(width, height, tile): no tiling, one tile of the whole image
  (extra images of a multi-image prompt, video frames).
- plan_lite(width, height, tile, max_tiles): NVILA-Lite: one scale, 1..max_tiles
  tiles by the same aspect-ratio rule, plus a thumbnail of the whole image when
  there is more than one tile.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ScalePlan", "TilePlan", "plan_tiles", "plan_single", "plan_lite", "candidate_grids", "closest_grid"]


@dataclass(frozen=True)
class ScalePlan:
    """One resized copy of the image and its tile grid."""

    width: int  # resized width in pixels (= tile * cols)
    height: int  # resized height in pixels (= tile * rows)
    cols: int
    rows: int

    @property
    def n_tiles(self) -> int:
        return self.cols * self.rows


@dataclass(frozen=True)
class TilePlan:
    """Every tile of every scale, in NVILA's order (scales as listed, tiles row-major)."""

    image_width: int
    image_height: int
    tile: int
    scales: tuple[ScalePlan, ...]
    block_size: tuple[int, int]  # (rows, cols) of the tile grid the features merge into
    thumbnail: bool = False  # NVILA-Lite: scales[-1] is a 1x1 thumbnail of the whole image

    @property
    def n_tiles(self) -> int:
        return sum(s.n_tiles for s in self.scales)

    def tile_boxes(self) -> list[tuple[int, int, int, int, int]]:
        """(scale index, left, top, right, bottom) of every tile, in order."""
        t = self.tile
        return [
            (i, c * t, r * t, (c + 1) * t, (r + 1) * t)
            for i, s in enumerate(self.scales)
            for r in range(s.rows)
            for c in range(s.cols)
        ]


def _check_image_size(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")


def _check_positive_int(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {v!r}")


def candidate_grids(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """(cols, rows) grids with min_tiles <= cols*rows <= max_tiles, in the order the
    official code walks them: a Python set of tuples, sorted stably by tile count.
    The tie-break of closest_grid depends on this order, so it is built the same way."""
    grids = {
        (i, j)
        for n in range(min_tiles, max_tiles + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_tiles <= i * j <= max_tiles
    }
    return sorted(grids, key=lambda g: g[0] * g[1])


def closest_grid(width: int, height: int, grids: list[tuple[int, int]], tile: int) -> tuple[int, int]:
    """The grid whose cols/rows is closest to width/height; on an exact tie the later
    candidate wins when the image has more than half the grid's pixels."""
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in grids:
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * tile * tile * cols * rows:
            best = (cols, rows)
    return best


def plan_tiles(
    width: int, height: int, scales: tuple[int, ...] = (448, 896, 1344), tile: int = 448, max_tiles: int = 12
) -> TilePlan:
    """NVILA's Dynamic-S2 plan for a width x height image (see the module docstring)."""
    _check_image_size(width, height)
    _check_positive_int("tile", tile)
    _check_positive_int("max_tiles", max_tiles)
    if not scales or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in scales):
        raise ValueError(f"scales: expected a non-empty sequence of ints >= 1, got {scales!r}")
    scales = tuple(sorted(scales))
    if any(s % scales[0] for s in scales):
        raise ValueError(f"scales: expected multiples of the smallest scale {scales[0]}, got {scales}")
    min_tiles = (scales[-1] // scales[0]) ** 2
    if max_tiles < min_tiles:
        raise ValueError(
            f"max_tiles: expected at least (scales[-1] / scales[0])^2 = {min_tiles} tiles for scales {scales}, "
            f"got {max_tiles}"
        )
    plans = []
    for s in scales[:-1]:
        k = s // scales[0]
        plans.append(ScalePlan(tile * k, tile * k, k, k))
    cols, rows = closest_grid(width, height, candidate_grids(min_tiles, max_tiles), tile)
    plans.append(ScalePlan(tile * cols, tile * rows, cols, rows))
    return TilePlan(width, height, tile, tuple(plans), (rows, cols))


def plan_single(width: int, height: int, tile: int = 448) -> TilePlan:
    """No tiling: the whole image resized to one tile x tile square; block size (1, 1)."""
    _check_image_size(width, height)
    _check_positive_int("tile", tile)
    return TilePlan(width, height, tile, (ScalePlan(tile, tile, 1, 1),), (1, 1))


def plan_lite(width: int, height: int, tile: int = 448, max_tiles: int = 12) -> TilePlan:
    """NVILA-Lite: one scale of 1..max_tiles tiles by the aspect-ratio rule, then a
    thumbnail (the whole image as one tile) when there is more than one tile. Each
    tile is its own image in the prompt; block_size is the grid (rows, cols)."""
    _check_image_size(width, height)
    _check_positive_int("tile", tile)
    _check_positive_int("max_tiles", max_tiles)
    cols, rows = closest_grid(width, height, candidate_grids(1, max_tiles), tile)
    plans = [ScalePlan(tile * cols, tile * rows, cols, rows)]
    thumbnail = cols * rows > 1
    if thumbnail:
        plans.append(ScalePlan(tile, tile, 1, 1))
    return TilePlan(width, height, tile, tuple(plans), (rows, cols), thumbnail)
