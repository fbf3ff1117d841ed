"""The report of `make gpu-check` (.ci/gpu_check.sh): one JSON and one markdown file.

    python -m bench.gpu_report DIR

DIR holds what the check wrote: `steps.tsv` (one line a step: name, exit status,
seconds, log file) and `bench/*_cuda.jsonl` (the rows of `python -m bench --device cuda`).
Writes DIR/report.json and DIR/report.md: the steps, then per benchmark case the
fastest backend of ours with GB/s and % of the GPU's spec-sheet memory bandwidth
(memory-bound ops), or TFLOP/s and % of its dense peak for the case's math (fp8_gemm),
beside the fastest peer (torch._scaled_mm, bf16 matmul, torch.compile, ...).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import common

__all__ = ["kernel_lines", "main", "read_rows", "read_steps", "write_report"]


def read_steps(path: Path) -> list[dict]:
    """steps.tsv -> [{"step", "status", "seconds", "log"}]."""
    steps = []
    for line in path.read_text().splitlines():
        if line.strip():
            name, status, seconds, log = line.split("\t")
            steps.append(dict(step=name, status=int(status), seconds=float(seconds), log=log))
    return steps


def read_rows(bench_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(bench_dir.glob("*_cuda.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def kernel_lines(rows: list[dict]) -> list[dict]:
    """Per (op, case, dtype) of the model shapes: our fastest backend against the GPU's peaks
    and against the fastest provider that is not ours."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if not r["sweep"]:
            groups.setdefault((r["op"], r["note"], r["shape"], r["dtype"]), []).append(r)
    out = []
    for (op, note, shape, dtype), group in groups.items():
        ours = [r for r in group if common.is_ours(r["provider"])]
        peers = [r for r in group if not common.is_ours(r["provider"]) and r["provider"] != "reference"]
        if not ours:
            continue
        best = min(ours, key=lambda r: r["median_ms"])
        peer = min(peers, key=lambda r: r["median_ms"]) if peers else None
        hbm = common.hbm_peak_gbps(best["device"])
        line = dict(
            op=op,
            case=note,
            shape=shape,
            dtype=dtype,
            backend=best["provider"],
            ms=best["median_ms"],
            gbps=best["gbps"],
            frac_hbm_peak=best["gbps"] / hbm if hbm and not best["flops"] else None,
            tflops=best["tflops"],
            frac_math_peak=best["frac_peak"],
            peer=peer["provider"] if peer else None,
            peer_ms=peer["median_ms"] if peer else None,
            x_peer=peer["median_ms"] / best["median_ms"] if peer else None,
        )
        out.append(line)
    return out


def _fmt(v, spec: str, scale: float = 1.0) -> str:
    return "-" if v is None else format(v * scale, spec)


def write_report(out_dir: Path) -> dict:
    steps = read_steps(out_dir / "steps.tsv")
    rows = read_rows(out_dir / "bench")
    kernels = kernel_lines(rows)
    device = rows[0]["device"] if rows else "unknown (no benchmark rows)"
    report = dict(device=device, ok=all(s["status"] == 0 for s in steps), steps=steps, kernels=kernels)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    md = [f"# make gpu-check on {device}", "", "| step | status | s | log |", "|---|---|---:|---|"]
    md += [
        f"| {s['step']} | {'ok' if s['status'] == 0 else 'FAILED (' + str(s['status']) + ')'} | "
        f"{s['seconds']:.0f} | {s['log']} |"
        for s in steps
    ]
    md += [
        "",
        "Memory-bound ops: % of the spec-sheet memory bandwidth; fp8_gemm: % of the dense peak of its math.",
        "",
        "| op | case | shape | dtype | ours | ms | GB/s | % HBM peak | TFLOP/s | % peak | best peer | x peer |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    md += [
        f"| {k['op']} | {k['case']} | {k['shape']} | {k['dtype']} | {k['backend']} | {k['ms']:.3f} | "
        f"{k['gbps']:.0f} | {_fmt(k['frac_hbm_peak'], '.0f', 100)} | {_fmt(k['tflops'], '.0f')} | "
        f"{_fmt(k['frac_math_peak'], '.0f', 100)} | {k['peer'] or '-'} | {_fmt(k['x_peer'], '.2f')} |"
        for k in kernels
    ]
    (out_dir / "report.md").write_text("\n".join(md) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_report", description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path, help="the directory make gpu-check wrote (steps.tsv, bench/)")
    report = write_report(parser.parse_args(argv).dir)
    print((parser.parse_args(argv).dir / "report.md").read_text())
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
