"""PNG plots of benchmark rows (matplotlib, no display needed).

- `<op>_<device>_speedup.png`: per op, the speedup of every provider over the reference
  on each model-shape case (log scale; 1 = as fast as the reference).
- `<sweep>_<device>_roofline.png`: per sweep, what each provider achieves against the
  limit measured in the same run. Ops with arithmetic work (GEMM) are drawn as a
  roofline: TFLOP/s against arithmetic intensity (FLOP per byte moved), under the
  memory roof (copy bandwidth x intensity) and the compute roof (the GPU's dense peak,
  or on a CPU the best rate any provider reached, marked "measured"). Memory-bound
  sweeps are drawn as GB/s against the sweep's x value, under the copy bandwidth.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from bench.common import Row, is_ours

# one colour per provider family, the same in every plot
_COLOURS = {
    "cpu": "#1f77b4",
    "cuda": "#2ca02c",
    "triton": "#9467bd",
    "reference": "#7f7f7f",
    "eager": "#d62728",
    "compile": "#ff7f0e",
}


def _colour(provider: str, fallback_index: int) -> str:
    base = provider.split("+", 1)[0]
    if base in _COLOURS:
        return _COLOURS[base]
    palette = ["#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939", "#843c39"]
    return palette[fallback_index % len(palette)]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def speedup_plot(rows: Sequence[Row], op: str, path: Path) -> Path | None:
    """Grouped bars: x = case (note, dtype), one bar per provider, height = x reference."""
    rows = [r for r in rows if r.op == op and not r.sweep and r.speedup_vs_reference is not None]
    if not rows:
        return None
    plt = _pyplot()
    cases = list(dict.fromkeys(f"{r.note}\n{r.dtype}" for r in rows))
    providers = list(dict.fromkeys(r.provider for r in rows))
    width = 0.8 / len(providers)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(cases) + 2), 4.2))
    for i, provider in enumerate(providers):
        xs, ys = [], []
        for j, case in enumerate(cases):
            r = next((r for r in rows if f"{r.note}\n{r.dtype}" == case and r.provider == provider), None)
            if r is not None:
                xs.append(j - 0.4 + (i + 0.5) * width)
                ys.append(r.speedup_vs_reference)
        hatch = "" if is_ours(provider) else "//"
        ax.bar(xs, ys, width, label=provider, color=_colour(provider, i), hatch=hatch, edgecolor="white")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(cases)), cases, fontsize=8)
    ax.set_ylabel("speedup over the reference (log)")
    r0 = rows[0]
    ax.set_title(f"{op} on {r0.device} ({r0.threads} threads)", fontsize=10)
    ax.legend(fontsize=7, ncol=min(4, len(providers)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def roofline_plot(rows: Sequence[Row], sweep: str, path: Path) -> Path | None:
    rows = [r for r in rows if r.sweep == sweep]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    providers = list(dict.fromkeys(r.provider for r in rows))
    copy_gbps = max(r.copy_gbps for r in rows)
    compute = any(r.flops for r in rows)
    for i, provider in enumerate(providers):
        pr = sorted((r for r in rows if r.provider == provider), key=lambda r: r.sweep_x or 0.0)
        if compute:
            xs = [r.flops / r.bytes for r in pr]
            ys = [r.tflops for r in pr]
        else:
            xs = [r.sweep_x for r in pr]
            ys = [r.gbps for r in pr]
        style = "-o" if is_ours(provider) else "--s"
        ax.plot(xs, ys, style, label=provider, color=_colour(provider, i), markersize=4)
    if compute:
        intensities = sorted(r.flops / r.bytes for r in rows)
        lo, hi = intensities[0] / 2, intensities[-1] * 2
        peaks = [r.peak_tflops for r in rows if r.peak_tflops]
        roof, roof_label = (max(peaks), "dense peak") if peaks else (max(r.tflops for r in rows), "best measured")
        memory = [copy_gbps * 1e9 * x / 1e12 for x in (lo, hi)]
        ax.plot([lo, hi], memory, ":", color="black", label=f"copy BW roof ({copy_gbps:.0f} GB/s)")
        ax.axhline(roof, color="black", linestyle="-.", linewidth=0.8, label=f"compute roof ({roof_label})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
        ax.set_ylabel("TFLOP/s")
        for r in rows:  # label the sweep points once, on our first provider
            if r.provider == providers[0]:
                ax.annotate(f"{r.sweep_x:g}", (r.flops / r.bytes, r.tflops), fontsize=6)
    else:
        ax.axhline(copy_gbps, color="black", linestyle=":", label=f"copy bandwidth ({copy_gbps:.0f} GB/s)")
        ax.set_xlabel(sweep)
        ax.set_ylabel("GB/s")
    r0 = rows[0]
    ax.set_title(f"{sweep} on {r0.device}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(rows: Sequence[Row], out_dir: Path, device_type: str) -> list[Path]:
    """Every plot the rows allow, written to out_dir; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for op in dict.fromkeys(r.op for r in rows):
        p = speedup_plot(rows, op, out_dir / f"{op}_{device_type}_speedup.png")
        if p is not None:
            paths.append(p)
    for sweep in dict.fromkeys(r.sweep for r in rows if r.sweep):
        p = roofline_plot(rows, sweep, out_dir / f"{_slug(sweep)}_{device_type}_roofline.png")
        if p is not None:
            paths.append(p)
    return paths
