"""Run every benchmark: `python -m bench [--quick] [--device cpu|cuda]`."""

from __future__ import annotations

import argparse
import sys

from bench import bench_fp8, bench_multiscale_tile, bench_spatial_compress, bench_temporal_pool, common


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    common.add_common_args(parser)
    parser.parse_args(argv)  # validate once; each benchmark parses the same arguments
    bench_spatial_compress.main(argv)
    bench_temporal_pool.main(argv)
    bench_fp8.main(argv)
    bench_multiscale_tile.main(argv)


if __name__ == "__main__":
    main()
