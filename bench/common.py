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
import re
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
    return summarize(samples(fn, warmup=warmup, reps=reps, device=device))


def samples(fn: Callable[[], object], *, warmup: int, reps: int, device: torch.device) -> list[float]:
    """time_fn's timed calls, each in ms."""
    if reps < 1:
        raise ValueError(f"reps: expected >= 1, got {reps}")
    device = torch.device(device)
    if device.type == "cuda":
        return _time_cuda(fn, warmup=warmup, reps=reps, device=device)
    if device.type == "cpu":
        return _time_cpu(fn, warmup=warmup, reps=reps)
    raise ValueError(f"device: expected cpu or cuda, got {device}")


def summarize(times: list[float]) -> tuple[float, float, float]:
    """(median, p20, p80) of timed calls."""
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


def copy_bandwidth(
    device: torch.device, nbytes: int = COPY_BYTES, *, pairs: int = 3, warmup: int = 2, reps: int = 10
) -> float:
    """The device's copy bandwidth in GB/s (1e9 bytes/s): `dst.copy_(src)` of `nbytes`
    into an existing, already-touched buffer; bytes moved = read + write = 2 * nbytes.

    The median over `pairs` freshly allocated (src, dst) pairs, `reps` copies each: on a
    VM the bandwidth of one buffer pair depends on where its pages landed (up to 1.5x
    apart between pairs), so one pair is not the machine's number.
    """
    device = torch.device(device)
    times: list[float] = []
    for _ in range(pairs):
        src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
        dst = torch.zeros_like(src)  # touched: no page faults in the timed copies
        for _ in range(warmup):
            dst.copy_(src)
        for _ in range(reps):
            times.append(time_fn(lambda s=src, d=dst: d.copy_(s), warmup=0, reps=1, device=device)[0])
        del src, dst
    return 2 * (nbytes // 4) * 4 / (float(np.median(times)) * 1e-3) / 1e9


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
    copy_gbps: float  # the copy bandwidth, measured in the same run just before this case
    frac_copy_bw: float  # gbps / copy_gbps
    speedup_vs_eager: float | None  # eager median / this median
    speedup_vs_reference: float | None  # reference median / this median
    max_abs_err: float | None  # max |this - nvila_kernels.reference|, in fp32
    note: str  # what the case is (e.g. "NVILA-8B, k=2")
    torch: str
    commit: str
    machine: str
    flops: int = 0  # arithmetic work of the case (GEMM: 2*M*N*K), 0 for memory-bound ops
    tflops: float | None = None  # flops / median time, in 1e12 FLOP/s
    peak_tflops: float | None = None  # the device's dense peak for the case's math (known GPUs only)
    frac_peak: float | None = None  # tflops / peak_tflops
    best_peer: str | None = None  # the fastest peer provider on the same case
    speedup_vs_best_peer: float | None = None  # best peer median / this median
    sweep: str = ""  # name of the sweep this row belongs to ("" = a model shape)
    sweep_x: float | None = None  # the sweep's x value (e.g. M, or megapixels)
    rate: float | None = None  # items per second where that is the natural unit (tokens/s, tiles/s)
    rate_unit: str = ""  # e.g. "tokens/s"
    memory_mb: float | None = None  # memory the case holds (e.g. model weights), in 1e6 bytes


class RowBuilder:
    """Fills the per-run fields of a Row (device, threads, versions) and the copy
    bandwidth, re-measured by `measure_copy_bandwidth` before each case: on a shared
    machine the limit drifts during a run, so each row is compared with one taken
    seconds before it."""

    def __init__(self, device: torch.device, timing: Timing | None = None):
        self.device = torch.device(device)
        self.copy_pairs, self.copy_bytes = (3, COPY_BYTES) if timing is None else (timing.copy_pairs, timing.copy_bytes)
        self.copy_gbps: float | None = None  # set by measure_copy_bandwidth
        self.device_name = device_name(self.device)
        self.threads = torch.get_num_threads()
        self.commit = git_commit()
        alloc = cpu_allocator()
        self.machine = f"{platform.node()} ({platform.machine()})" + ("" if alloc == "glibc" else f", {alloc} malloc")

    def measure_copy_bandwidth(self) -> float:
        self.copy_gbps = copy_bandwidth(self.device, self.copy_bytes, pairs=self.copy_pairs)
        return self.copy_gbps

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
        flops: int = 0,
        math: str | None = None,
        sweep: str = "",
        sweep_x: float | None = None,
    ) -> Row:
        """One row; `flops` with `math` ("fp8", "bf16", "fp32") gives TFLOP/s and, on a
        GPU of known peak, the fraction of it."""
        median, p20, p80 = times
        if self.copy_gbps is None:
            self.measure_copy_bandwidth()
        gbps = nbytes / (median * 1e-3) / 1e9
        tflops = flops / (median * 1e-3) / 1e12 if flops else None
        peak = dense_peak_tflops(self.device_name, math) if flops and math else None
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
            flops=flops,
            tflops=tflops,
            peak_tflops=peak,
            frac_peak=None if peak is None else tflops / peak,
            sweep=sweep,
            sweep_x=sweep_x,
        )


def is_ours(provider: str) -> bool:
    """Providers that are a backend of nvila_kernels ("cpu", "cuda+out", "cpu-fp32", ...)."""
    return re.split(r"[+-]", provider, maxsplit=1)[0] in OUR_BACKENDS


OUR_BACKENDS = ("cpu", "cuda", "triton")
BASELINES = ("eager", "reference")  # the two baselines of the "x eager" / "x ref" columns


def fill_speedups(rows: Sequence[Row]) -> None:
    """Set the speedup columns of rows sharing (op, note, shape, dtype): vs "eager", vs
    "reference", and vs the fastest peer (any provider that is neither ours nor the
    reference: eager, torch.compile, torch._scaled_mm, Pillow, ...)."""
    groups: dict[tuple[str, str, str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.op, r.note, r.shape, r.dtype), []).append(r)
    for group in groups.values():
        base = {r.provider: r.median_ms for r in group if r.provider in BASELINES}
        peers = [r for r in group if not is_ours(r.provider) and r.provider != "reference"]
        best = min(peers, key=lambda r: r.median_ms) if peers else None
        for r in group:
            r.speedup_vs_eager = base["eager"] / r.median_ms if "eager" in base else None
            r.speedup_vs_reference = base["reference"] / r.median_ms if "reference" in base else None
            if best is not None:
                r.best_peer, r.speedup_vs_best_peer = best.provider, best.median_ms / r.median_ms


# dense (no sparsity) tensor-core peaks in TFLOP/s of known GPUs, by name fragment
DENSE_PEAK_TFLOPS = {
    "H100 SXM": {"fp8": 1979.0, "bf16": 989.0, "fp32": 67.0},
    "H100 80GB HBM3": {"fp8": 1979.0, "bf16": 989.0, "fp32": 67.0},
    "H100 PCIe": {"fp8": 1513.0, "bf16": 756.0, "fp32": 51.0},
    "H100 NVL": {"fp8": 1671.0, "bf16": 835.0, "fp32": 60.0},
    "H200": {"fp8": 1979.0, "bf16": 989.0, "fp32": 67.0},
    "L40S": {"fp8": 733.0, "bf16": 362.0, "fp32": 91.6},
    "RTX 4090": {"fp8": 660.0, "bf16": 330.0, "fp32": 82.6},
    "A100": {"bf16": 312.0, "fp32": 19.5},
}


# memory bandwidth (spec sheet, 1e9 bytes/s) of known GPUs, by name fragment
HBM_PEAK_GBPS = {
    "H100 SXM": 3350.0,
    "H100 80GB HBM3": 3350.0,
    "H100 PCIe": 2000.0,
    "H100 NVL": 3900.0,
    "H200": 4800.0,
    "L40S": 864.0,
    "RTX 4090": 1008.0,
    "A100-SXM4-80GB": 2039.0,
    "A100": 1555.0,
}


def hbm_peak_gbps(device_name: str) -> float | None:
    return next((peak for fragment, peak in HBM_PEAK_GBPS.items() if fragment in device_name), None)


def dense_peak_tflops(device_name: str, math: str | None) -> float | None:
    for fragment, peaks in DENSE_PEAK_TFLOPS.items():
        if fragment in device_name:
            return peaks.get(math or "")
    return None


def results_dir() -> Path:
    """Where results go: bench/results, or the --out directory of this run."""
    return _results_dir[0]


_results_dir = [RESULTS_DIR]


def write_jsonl(rows: Sequence[Row], name: str) -> Path:
    """Write rows to <results dir>/<name>.jsonl, replacing the previous run's file."""
    results_dir().mkdir(parents=True, exist_ok=True)
    path = results_dir() / f"{name}.jsonl"
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(dataclasses.asdict(r)) + "\n")
    return path


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows as a markdown table; the per-run fields go in a header line above it.
    Columns a run does not fill (TFLOP/s, rate, memory) are left out."""
    if not rows:
        return "(no rows)"
    r0 = rows[0]
    header = f"device: {r0.device}, {r0.threads} threads | torch {r0.torch} | commit {r0.commit} | {r0.machine}"
    flops = any(r.flops for r in rows)
    rate = any(r.rate is not None for r in rows)
    memory = any(r.memory_mb is not None for r in rows)
    cols = ["case", "shape", "dtype", "provider", "median ms", "p20 ms", "p80 ms", "MB moved", "GB/s", "copy GB/s"]
    cols += ["% copy BW"] + (["TFLOP/s", "% peak"] if flops else []) + (["rate"] if rate else [])
    cols += (["weights MB"] if memory else []) + ["x eager", "x ref", "x best peer", "max err"]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        moved = r.bytes > 0
        cells = [
            r.note,
            r.shape,
            r.dtype,
            r.provider,
            f"{r.median_ms:.3f}",
            f"{r.p20_ms:.3f}",
            f"{r.p80_ms:.3f}",
            f"{r.bytes / 1e6:.1f}" if moved else "-",
            f"{r.gbps:.1f}" if moved else "-",
            f"{r.copy_gbps:.1f}",
            f"{100 * r.frac_copy_bw:.0f}%" if moved else "-",
        ]
        if flops:
            cells += [_fmt(r.tflops, ".3g"), "-" if r.frac_peak is None else f"{100 * r.frac_peak:.0f}%"]
        if rate:
            cells.append("-" if r.rate is None else f"{r.rate:,.1f} {r.rate_unit}")
        if memory:
            cells.append(_fmt(r.memory_mb, ".1f"))
        cells += [
            _fmt(r.speedup_vs_eager, ".2f"),
            _fmt(r.speedup_vs_reference, ".2f"),
            "-" if r.speedup_vs_best_peer is None else f"{r.speedup_vs_best_peer:.2f} ({r.best_peer})",
            _fmt(r.max_abs_err, ".1e"),
        ]
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
    `budget_s` seconds, clamped to [min_reps, max_reps]; the copy bandwidth before each
    case over `copy_pairs` buffer pairs of `copy_bytes`."""

    warmup: int
    budget_s: float
    min_reps: int
    max_reps: int
    copy_pairs: int = 3
    copy_bytes: int = COPY_BYTES


QUICK = Timing(warmup=1, budget_s=0.5, min_reps=3, max_reps=20, copy_pairs=1)
FULL = Timing(warmup=3, budget_s=3.0, min_reps=10, max_reps=300)


def time_budgeted(
    fn: Callable[[], object], timing: Timing, device: torch.device, *, warmed: bool = False
) -> tuple[float, float, float]:
    """time_fn with the number of reps chosen from the first timed call (which is one of
    them) and `timing.budget_s`. `warmed`: the caller has just called `fn` (e.g. to check
    its output), which counts as the first of `timing.warmup` untimed calls."""
    first = samples(fn, warmup=max(0, timing.warmup - int(warmed)), reps=1, device=device)
    reps = int(timing.budget_s * 1e3 / max(first[0], 1e-3))
    reps = max(timing.min_reps, min(timing.max_reps, reps))
    if reps == 1:
        return summarize(first)
    return summarize(first + samples(fn, warmup=0, reps=reps - 1, device=device))


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
    times = time_budgeted(fn, timing, builder.device, warmed=True)
    return builder.row(op=op, provider=provider, x=x, times=times, nbytes=nbytes, note=note, max_abs_err=err)


def compiled(fn: Callable) -> Callable:
    """torch.compile of an eager composition (the "compile" peer); the first call, made
    outside the timed region by measure(), compiles it."""
    return torch.compile(fn, dynamic=False)


# max |provider - reference| allowed, relative to max |reference|: about 2 ulps of the dtype
REL_TOL = {torch.float32: 1e-5, torch.float16: 2**-10, torch.bfloat16: 2**-7}


def measure_providers(
    builder: RowBuilder,
    providers: list[tuple[str, Callable[[], torch.Tensor]]],
    *,
    op: str,
    x: torch.Tensor,
    expected: torch.Tensor,
    note: str,
    timing: Timing,
    warnings: list[str],
    rel_tol: dict[torch.dtype, float] = REL_TOL,
) -> list[Row]:
    """measure() for each (provider, fn), bytes moved = x + expected; a MISMATCH line goes
    to `warnings` for any provider further than rel_tol[dtype] * max |expected| from it."""
    nbytes = tensor_bytes(x, expected)
    tol = rel_tol[x.dtype] * expected.abs().max().item()
    rows = []
    for provider, fn in providers:
        kw = dict(op=op, provider=provider, fn=fn, x=x, nbytes=nbytes, expected=expected, note=note, timing=timing)
        try:
            row = measure(builder, **kw)
        except Exception as e:  # a peer that cannot run here (e.g. torch.compile without a compiler)
            warnings.append(f"SKIP {note} {provider}: {type(e).__name__}: {str(e).strip().splitlines()[0][:160]}")
            continue
        if row.max_abs_err > tol:
            warnings.append(
                f"MISMATCH {note} {row.dtype} {provider}: max abs error {row.max_abs_err:.3g} > {tol:.3g} vs reference"
            )
        rows.append(row)
    return rows


# smoke test of the suite itself
TINY = Timing(warmup=0, budget_s=0.02, min_reps=1, max_reps=2, copy_pairs=1, copy_bytes=16 * 1024 * 1024)

MODES = ("tiny", "quick", "standard", "full")


def add_common_args(parser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="fewer reps and sweep points: under 3 min on 2 cores")
    group.add_argument("--full", action="store_true", help="every sweep point, more reps: for real machines")
    group.add_argument("--tiny", action="store_true", help="tiny shapes, one or two reps: checks the suite runs")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=default_device(), help="default: cuda if available, else cpu"
    )
    parser.add_argument("--out", type=Path, default=None, help=f"results directory (default {RESULTS_DIR})")
    parser.add_argument(
        "--ops", type=lambda s: [o.strip() for o in s.split(",") if o.strip()], default=None, help="ops to run"
    )


def wants(args, op: str) -> bool:
    """Whether `op` was asked for (--ops; all ops when it is not given)."""
    return args.ops is None or op in args.ops


def configure(args) -> tuple[torch.device, str, Timing]:
    """(device, mode, timing) of parsed arguments; points results at --out if given."""
    mode = "tiny" if args.tiny else "quick" if args.quick else "full" if args.full else "standard"
    if args.out is not None:
        _results_dir[0] = Path(args.out)
    timing = {"tiny": TINY, "quick": QUICK}.get(mode, FULL)
    return torch.device(args.device), mode, timing


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs from /proc/stat, or None where there is none."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user..steal


def busy_machine_note(window_s: float = 0.5) -> str | None:
    """A warning line when other processes use the CPUs right now (timings will be noisy),
    else None: the CPU busy fraction over `window_s` seconds, before any work of ours."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(window_s)
    second = _cpu_times()
    idle, total = second[0] - first[0], second[1] - first[1]
    if total <= 0:
        return None
    busy = 1 - idle / total
    if busy > 0.1 or os.getloadavg()[0] > (os.cpu_count() or 1):  # busy CPUs, or many tasks waiting
        return (
            f"WARNING: the CPUs were {100 * busy:.0f}% busy (load average {os.getloadavg()[0]:.1f}) before the "
            "run: other processes are running, timings are noisy"
        )
    return None


def report(
    rows: list[Row],
    *,
    title: str,
    busy: str | None,
    warnings: list[str],
    results_name: str,
    targets: Callable[[list[Row]], None] | None = None,
) -> list[Row]:
    """Fill the speedup columns, print the table, warnings (SKIP / MISMATCH lines) and
    target lines, and write the rows to <results dir>/<results_name>.jsonl and the same
    text to <results_name>.md."""
    fill_speedups(rows)
    lines = [f"## {title}", ""]
    if busy:
        lines += [busy, ""]
    lines += [markdown_table(rows), ""]
    lines += warnings
    text = "\n".join(lines)
    print(text)
    if targets is not None:
        targets(rows)
    path = write_jsonl(rows, results_name)
    (results_dir() / f"{results_name}.md").write_text(text + "\n")
    print(f"rows written to {path}\n")
    return rows


def backend_providers(
    device: torch.device, call: Callable[[str, torch.Tensor | None], torch.Tensor], out_like: torch.Tensor
) -> list[tuple[str, Callable[[], torch.Tensor]]]:
    """Each timed backend of ours twice: with a fresh output ("cpu") and writing into a
    preallocated `out=` ("cpu+out"); `call(backend, out)` runs the op, `out_like` is the
    output to preallocate."""
    providers = []
    for backend in benched_backends(device):
        out = torch.empty_like(out_like)
        providers.append((backend, lambda be=backend: call(be, None)))
        providers.append((f"{backend}+out", lambda be=backend, o=out: call(be, o)))
    return providers


def cpu_allocator() -> str:
    """The malloc serving this process's CPU tensors: "tcmalloc" or "jemalloc" when one is
    loaded (LD_PRELOAD), else "glibc" (the default, which unmaps freed blocks over 32 MB:
    every fresh large output then pays its page faults again; bench/README.md)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    return next((name for name in ("tcmalloc", "jemalloc") if f"lib{name}" in maps), "glibc")


def _fresh_and_out(rows: Sequence[Row], label: str) -> tuple[Row, Row] | None:
    fresh = next((r for r in rows if r.provider == "cpu"), None)
    out = next((r for r in rows if r.provider == "cpu+out"), None)
    if fresh is None or out is None:
        print(f"targets ({label}): skipped (no CPU kernel rows)")
        return None
    return fresh, out


def print_fresh_output_target(rows: Sequence[Row], label: str) -> None:
    """PASS/FAIL: the CPU kernel with a fresh output within 1.5x of its `out=` time. That
    depends on the process's malloc (named in the line): glibc's default gives a fresh
    block over 32 MB new pages, faulted in and zeroed on first write (bench/README.md)."""
    pair = _fresh_and_out(rows, label)
    if pair is None:
        return
    fresh, out = pair
    ratio = fresh.median_ms / out.median_ms
    print(
        f"{'PASS' if ratio <= 1.5 else 'FAIL'}: CPU kernel fresh output within 1.5x of out=, {label}: {ratio:.2f}x "
        f"({fresh.median_ms:.2f} vs {out.median_ms:.2f} ms; malloc: {cpu_allocator()})"
    )


def print_copy_targets(rows: Sequence[Row], label: str) -> None:
    """The CPU targets of a memory-bound op on the rows of one case, as PASS/FAIL lines
    (not asserts): the kernel with a fresh output >= 3x faster than eager and within 1.5x
    of its `out=` time, and with `out=` at >= 50% of the copy bandwidth."""
    pair = _fresh_and_out(rows, label)
    if pair is None:
        return
    fresh, out = pair
    ok = fresh.speedup_vs_eager >= 3.0
    eager_ms = fresh.median_ms * fresh.speedup_vs_eager
    print(
        f"{'PASS' if ok else 'FAIL'}: CPU kernel (fresh output) >= 3x faster than eager, {label}: "
        f"{fresh.speedup_vs_eager:.2f}x ({fresh.median_ms:.2f} ms vs {eager_ms:.2f} ms)"
    )
    print_fresh_output_target(rows, label)
    ok = out.frac_copy_bw >= 0.5
    print(
        f"{'PASS' if ok else 'FAIL'}: CPU kernel with out= >= 50% of copy bandwidth, {label}: "
        f"{100 * out.frac_copy_bw:.0f}% ({out.gbps:.1f} of {out.copy_gbps:.1f} GB/s)"
    )


def run_cases(
    args,
    ops: Sequence[str],
    bench_case: Callable[[RowBuilder, object, str, Timing, list[str]], list[Row]],
    *,
    title: str,
    results_name: str,
    targets: Callable[[list[Row]], None] | None = None,
    targets_on: tuple[str, ...] = ("cpu",),
    extra_warnings: Sequence[str] = (),
) -> list[Row]:
    """A bench script's run: `bench_case(builder, case, mode, timing, warnings)` for every case
    of bench/cases.py of the asked-for `ops` in this mode, then report(): the table, the
    SKIP / MISMATCH lines, and `targets` (PASS/FAIL lines) on the `targets_on` devices."""
    from bench.cases import cases

    device, mode, timing = configure(args)
    busy = busy_machine_note() if device.type == "cpu" else None
    builder = RowBuilder(device, timing)
    rows: list[Row] = []
    warnings = skipped_backends(device) + list(extra_warnings)
    for op in ops:
        if wants(args, op):
            for case in cases(op, mode, device.type):
                rows += bench_case(builder, case, mode, timing, warnings)
    return report(
        rows,
        title=f"{title} ({mode} run)",
        busy=busy,
        warnings=warnings,
        results_name=f"{results_name}_{device.type}",
        targets=targets if device.type in targets_on and mode != "tiny" else None,
    )


def script_main(run: Callable, doc: str, prog: str, argv: list[str] | None = None) -> list[Row]:
    """`python -m bench.<script>`: the common flags, then the script's run()."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc.split("\n")[0])
    add_common_args(parser)
    return run(parser.parse_args(argv))


def skipped_backends(device: torch.device) -> list[str]:
    """SKIP lines for our backends that are not timed on `device`, with the reason."""
    from nvila_kernels import backends

    device = torch.device(device)
    benched = benched_backends(device)
    lines = []
    for b in OUR_BACKENDS:
        if b in benched:
            continue
        reason = backends.unavailable_reason(b, device)
        if reason is None and b == "triton":
            reason = "Triton runs on CPU tensors only through its interpreter, which is not timed"
        lines.append(f"SKIP {b}: {reason}")
    if "emu" in backends.available_backends(device):
        lines.append("SKIP emu: the CUDA emulator is a test backend (OS threads per GPU thread), never timed")
    return lines
