"""Run the benchmark suite:

    python -m bench [--quick|--full|--tiny] [--ops NAME,...] [--device cpu|cuda] [--out DIR]

Each op's script prints its markdown table and writes <op>_<device>.jsonl / .md; this
entry point then writes summary_<device>.md (the headline table: per op and case, the
best of our backends against the reference and the best peer) and the PNG plots
(bench/plots.py) into the results directory.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench import (
    bench_fp8,
    bench_merge_compress,
    bench_model,
    bench_multiscale_tile,
    bench_spatial_compress,
    bench_temporal_pool,
    common,
    plots,
)

# op name -> the script that benchmarks it (a script may cover several ops)
SCRIPTS = {
    "spatial_compress": bench_spatial_compress,
    "temporal_pool": bench_temporal_pool,
    "merge_compress": bench_merge_compress,
    "multiscale_tile": bench_multiscale_tile,
    "fp8_gemm": bench_fp8,
    "fp8_quantize": bench_fp8,
    "model": bench_model,
}


def headline(rows: list[common.Row]) -> str:
    """Per (op, case, dtype) of the model shapes: the fastest provider of ours, its time,
    and its speedup over the reference and over the fastest peer."""
    lines = [
        "| op | case | shape | dtype | best of ours | ms | % copy BW | x reference | x best peer (peer) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str, str, str], list[common.Row]] = {}
    for r in rows:
        if not r.sweep:
            groups.setdefault((r.op, r.note, r.shape, r.dtype), []).append(r)
    for (op, note, shape, dtype), group in groups.items():
        ours = [r for r in group if common.is_ours(r.provider)]
        if not ours:
            continue
        best = min(ours, key=lambda r: r.median_ms)
        moved = f"{100 * best.frac_copy_bw:.0f}%" if best.bytes else "-"
        ref = "-" if best.speedup_vs_reference is None else f"{best.speedup_vs_reference:.2f}"
        peer = "-" if best.best_peer is None else f"{best.speedup_vs_best_peer:.2f} ({best.best_peer})"
        lines.append(
            f"| {op} | {note} | {shape} | {dtype} | {best.provider} | {best.median_ms:.3f} | {moved} | {ref} | {peer} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[common.Row]:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    common.add_common_args(parser)
    args = parser.parse_args(argv)
    unknown = [op for op in args.ops or () if op not in SCRIPTS]
    if unknown:
        parser.error(f"--ops: unknown op(s) {', '.join(unknown)}; expected some of {', '.join(SCRIPTS)}")
    device, mode, _ = common.configure(args)
    t0 = time.perf_counter()
    rows: list[common.Row] = []
    for script in dict.fromkeys(SCRIPTS[op] for op in args.ops or SCRIPTS):
        rows += script.run(args)
    out_dir = common.results_dir()
    summary = out_dir / f"summary_{device.type}.md"
    r0 = rows[0] if rows else None
    header = f"# Benchmark summary ({mode} run, {time.perf_counter() - t0:.0f} s)\n\n" + (
        f"device: {r0.device}, {r0.threads} threads | torch {r0.torch} | commit {r0.commit}\n\n" if r0 else ""
    )
    summary.write_text(header + headline(rows) + "\n")
    print(header + headline(rows))
    for path in plots.plot_all(rows, out_dir, device.type):
        print(f"plot written to {path}")
    print(f"summary written to {summary}")
    return rows


if __name__ == "__main__":
    main()
