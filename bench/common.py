"""Shared benchmark helpers: timing, the copy-bandwidth limit, result rows and writers.

Every benchmark reports physics: bytes moved, GB/s, and the fraction of the machine's
copy bandwidth measured in the same run (`copy_bandwidth`), so a number can be read
without knowing the machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent

L2_FLUSH_BYTES = 256 * 1024 * 1024  # larger than any GPU's L2 cache
COPY_BYTES = 256 * 1024 * 1024  # default size of the copy-bandwidth probe (per buffer)

_flush_buffers: dict[torch.device, torch.Tensor] = {}


def time_fn(fn: Callable[[], object], *, warmup: int, reps: int, device: torch.device) -> tuple[float, float, float]:
    """Run `fn` `warmup` times, then time it `reps` times; returns (median, p20, p80) in ms.

    CPU: wall time of each call with time.perf_counter.
    CUDA: CUDA events around each call, with a 256 MB write before each rep so the call
    starts with a cold L2; the host does not synchronize inside the timed loop.
    """
    if reps < 1:
        raise ValueError(f"reps: expected >= 1, got {reps}")
    device = torch.device(device)
    if device.type == "cuda":
        times = _time_cuda(fn, warmup=warmup, reps=reps, device=device)
    elif device.type == "cpu":
        times = _time_cpu(fn, warmup=warmup, reps=reps)
    else:
        raise ValueError(f"device: expected cpu or cuda, got {device}")
    p20, median, p80 = np.percentile(np.asarray(times), [20, 50, 80])
    return float(median), float(p20), float(p80)


def _time_cpu(fn: Callable[[], object], *, warmup: int, reps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _time_cuda(fn: Callable[[], object], *, warmup: int, reps: int, device: torch.device) -> list[float]:
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    flush = _flush_buffers.get(device)
    if flush is None:
        flush = _flush_buffers[device] = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device)
    with torch.cuda.device(device):
        for _ in range(warmup):
            fn()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        torch.cuda.synchronize(device)
        for start, end in zip(starts, ends, strict=True):
            flush.zero_()  # evict the L2: every rep reads its inputs from HBM
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
    return [start.elapsed_time(end) for start, end in zip(starts, ends, strict=True)]


def copy_bandwidth(device: torch.device, nbytes: int = COPY_BYTES, *, warmup: int = 2, reps: int = 10) -> float:
    """The device's copy bandwidth in GB/s (1e9 bytes/s): `dst.copy_(src)` of `nbytes`
    into an existing, already-touched buffer; bytes moved = read + write = 2 * nbytes."""
    device = torch.device(device)
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.zeros_like(src)  # touched: no page faults in the timed copies
    median_ms, _, _ = time_fn(lambda: dst.copy_(src), warmup=warmup, reps=reps, device=device)
    return 2 * src.numel() * src.element_size() / (median_ms * 1e-3) / 1e9


def device_name(device: torch.device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def tensor_bytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclasses.dataclass
class Row:
    """One measurement: an op on one shape and dtype by one provider."""

    op: str
    provider: str  # a backend of ours ("cpu", "cpu+out" = with out=), "reference", or "eager"
    shape: str  # input shape, e.g. "1x96x128x3456"
    dtype: str
    device: str  # CPU model or GPU name
    threads: int  # torch.get_num_threads()
    median_ms: float
    p20_ms: float
    p80_ms: float
    bytes: int  # bytes moved: input + output
    gbps: float  # bytes / median time, in 1e9 bytes/s
    copy_gbps: float  # the copy bandwidth measured in the same run
    frac_copy_bw: float  # gbps / copy_gbps
    speedup_vs_eager: float | None  # eager median / this median
    speedup_vs_reference: float | None  # reference median / this median
    max_abs_err: float | None  # max |this - nvila_kernels.reference|, in fp32
    note: str  # what the case is (e.g. "NVILA-8B, k=2")
    torch: str
    commit: str
    machine: str


class RowBuilder:
    """Fills the per-run fields of a Row (device, threads, versions, copy bandwidth)."""

    def __init__(self, device: torch.device, copy_gbps: float):
        self.device = torch.device(device)
        self.copy_gbps = copy_gbps
        self.device_name = device_name(self.device)
        self.threads = torch.get_num_threads()
        self.commit = git_commit()
        self.machine = f"{platform.node()} ({platform.machine()})"

    def row(
        self,
        *,
        op: str,
        provider: str,
        x: torch.Tensor,
        times: tuple[float, float, float],
        nbytes: int,
        note: str,
        max_abs_err: float | None = None,
    ) -> Row:
        median, p20, p80 = times
        gbps = nbytes / (median * 1e-3) / 1e9
        return Row(
            op=op,
            provider=provider,
            shape="x".join(map(str, x.shape)),
            dtype=dtype_name(x.dtype),
            device=self.device_name,
            threads=self.threads,
            median_ms=median,
            p20_ms=p20,
            p80_ms=p80,
            bytes=nbytes,
            gbps=gbps,
            copy_gbps=self.copy_gbps,
            frac_copy_bw=gbps / self.copy_gbps,
            speedup_vs_eager=None,
            speedup_vs_reference=None,
            max_abs_err=max_abs_err,
            note=note,
            torch=torch.__version__,
            commit=self.commit,
            machine=self.machine,
        )


def fill_speedups(rows: Sequence[Row]) -> None:
    """Set speedup_vs_eager / speedup_vs_reference of rows sharing (op, shape, dtype)."""
    base: dict[tuple[str, str, str, str], float] = {}
    for r in rows:
        if r.provider in ("eager", "reference"):
            base[(r.op, r.shape, r.dtype, r.provider)] = r.median_ms
    for r in rows:
        eager = base.get((r.op, r.shape, r.dtype, "eager"))
        ref = base.get((r.op, r.shape, r.dtype, "reference"))
        r.speedup_vs_eager = None if eager is None else eager / r.median_ms
        r.speedup_vs_reference = None if ref is None else ref / r.median_ms


def write_jsonl(rows: Sequence[Row], name: str) -> Path:
    """Write rows to bench/results/<name>.jsonl, replacing the previous run's file."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.jsonl"
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(dataclasses.asdict(r)) + "\n")
    return path


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows as a markdown table; the per-run fields go in a header line above it."""
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    header = (
        f"device: {r0.device}, {r0.threads} threads | copy bandwidth: {r0.copy_gbps:.1f} GB/s | "
        f"torch {r0.torch} | commit {r0.commit} | {r0.machine}"
    )
    cols = (
        "case",
        "shape",
        "dtype",
        "provider",
        "median ms",
        "p20 ms",
        "p80 ms",
        "MB moved",
        "GB/s",
        "% copy BW",
        "x eager",
        "x ref",
        "max err",
    )
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = (
            r.note,
            r.shape,
            r.dtype,
            r.provider,
            f"{r.median_ms:.3f}",
            f"{r.p20_ms:.3f}",
            f"{r.p80_ms:.3f}",
            f"{r.bytes / 1e6:.1f}",
            f"{r.gbps:.1f}",
            f"{100 * r.frac_copy_bw:.0f}%",
            _fmt(r.speedup_vs_eager, ".2f"),
            _fmt(r.speedup_vs_reference, ".2f"),
            _fmt(r.max_abs_err, ".1e"),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def benched_backends(device: torch.device) -> list[str]:
    """Our compiled backends worth timing on `device`: never the emulator, never Triton's
    interpreter (CPU), and not the reference (timed directly as the "reference" provider)."""
    from nvila_kernels import backends

    device = torch.device(device)
    out = []
    for b in backends.available_backends(device):
        if b in ("reference", "emu") or (b == "triton" and device.type != "cuda"):
            continue
        out.append(b)
    return out


def max_abs_err(y: torch.Tensor, expected: torch.Tensor) -> float:
    return (y.float() - expected.float()).abs().max().item()


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclasses.dataclass(frozen=True)
class Timing:
    """How long to measure: `warmup` untimed calls, then as many reps as fit in
    `budget_s` seconds, clamped to [min_reps, max_reps]."""

    warmup: int
    budget_s: float
    min_reps: int
    max_reps: int


QUICK = Timing(warmup=1, budget_s=0.5, min_reps=3, max_reps=20)
FULL = Timing(warmup=3, budget_s=3.0, min_reps=10, max_reps=300)


def time_budgeted(fn: Callable[[], object], timing: Timing, device: torch.device) -> tuple[float, float, float]:
    """time_fn with the number of reps chosen from one timed call and `timing.budget_s`."""
    once_ms, _, _ = time_fn(fn, warmup=timing.warmup, reps=1, device=device)
    reps = int(timing.budget_s * 1e3 / max(once_ms, 1e-3))
    reps = max(timing.min_reps, min(timing.max_reps, reps))
    return time_fn(fn, warmup=0, reps=reps, device=device)


def measure(
    builder: RowBuilder,
    *,
    op: str,
    provider: str,
    fn: Callable[[], torch.Tensor],
    x: torch.Tensor,
    nbytes: int,
    expected: torch.Tensor,
    note: str,
    timing: Timing,
) -> Row:
    """Check `fn()` against `expected` (max abs error, recorded in the row), then time it."""
    err = max_abs_err(fn(), expected)
    times = time_budgeted(fn, timing, builder.device)
    return builder.row(op=op, provider=provider, x=x, times=times, nbytes=nbytes, note=note, max_abs_err=err)


def add_common_args(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer reps (and smaller video shapes)")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=default_device(), help="default: cuda if available, else cpu"
    )


def busy_machine_note() -> str | None:
    """A warning line when other processes load the CPU (timings will be noisy), else None."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cpus = os.cpu_count() or 1
    if load > 0.5 * cpus:
        return f"WARNING: load average {load:.2f} on {cpus} CPUs at start: other processes run, timings are noisy"
    return None
