"""Smoke test of the bench suite itself: `python -m bench --tiny` produces rows, tables,
a summary and plots; every op has a row for each of our backends present on the CPU,
for the reference and for its peers; backends that cannot be timed are listed as
SKIP with a reason."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nvila_kernels import backends

pytestmark = pytest.mark.slow  # runs `python -m bench --tiny`: every op, peers and the model

ROOT = Path(__file__).resolve().parents[1]
OPS = ("spatial_compress", "temporal_pool", "merge_compress", "multiscale_tile", "fp8_gemm", "fp8_quantize", "model")
PEERS = {  # peers every op must show on the CPU (the reference too)
    "spatial_compress": {"eager", "compile"},
    "temporal_pool": {"eager", "compile"},
    "merge_compress": {"eager", "compile"},
    "multiscale_tile": {"eager", "torch-interp"},
    "fp8_gemm": {"eager", "matmul-bf16", "scaled_mm", "compile"},
    "fp8_quantize": {"eager", "compile"},
    "model": set(),  # the end-to-end model: our backends against the reference, fp32 and fp8
}

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # as a user runs it
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "bench", "--tiny", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for p in sorted(out.glob("*.jsonl")) for line in p.read_text().splitlines()]
    return out, proc.stdout, rows


def test_rows_tables_and_plots(suite):
    out, stdout, rows = suite
    assert rows and {r["op"] for r in rows} == set(OPS)
    for r in rows:
        assert r["median_ms"] > 0 and r["p20_ms"] <= r["median_ms"] <= r["p80_ms"]
        assert r["copy_gbps"] > 0 and r["device"] and r["torch"] and r["commit"]
        assert r["max_abs_err"] is not None or r["op"] == "model"  # kernel rows are checked against the reference
    gemm = [r for r in rows if r["op"] == "fp8_gemm"]
    assert all(r["tflops"] > 0 and r["flops"] > 0 for r in gemm)
    assert any(r["sweep"] for r in gemm), "the M sweep is missing"
    summary = (out / "summary_cpu.md").read_text()
    for op in OPS:
        assert f"| {op} |" in summary
        assert (out / f"{op}_cpu_speedup.png").stat().st_size > 1000
    assert list(out.glob("*_roofline.png")), "no roofline plot of the GEMM sweep"
    assert "| median ms | p20 ms | p80 ms |" in (out / "spatial_compress_cpu.md").read_text()
    model = [r for r in rows if r["op"] == "model"]
    stages = {r["note"] for r in model}
    assert stages == {"tile", "vision", "project", "prefill", "decode (per token)"}, stages
    assert {r["dtype"] for r in model} == {"fp32", "fp8"}
    assert all(r["rate"] > 0 and r["memory_mb"] > 0 for r in model)
    fp8_mb = {r["memory_mb"] for r in model if r["dtype"] == "fp8"}
    fp32_mb = {r["memory_mb"] for r in model if r["dtype"] == "fp32"}
    assert max(fp8_mb) < min(fp32_mb), "FP8 weights should take less memory"


def test_every_backend_and_peer_appears(suite):
    _, stdout, rows = suite
    present = [b for b in ("cpu",) if b in backends.available_backends(torch.device("cpu"))]
    for op in OPS:
        providers = {r["provider"] for r in rows if r["op"] == op}
        missing = ({*present, "reference"} | PEERS[op]) - providers
        assert not missing, f"{op}: no rows for {missing}"


def test_untimed_backends_are_listed_with_a_reason(suite):
    _, stdout, _ = suite
    for b in ("cuda", "triton"):
        line = next((ln for ln in stdout.splitlines() if ln.startswith(f"SKIP {b}:")), None)
        assert line is not None and len(line) > len(f"SKIP {b}: ") + 10, f"no SKIP line with a reason for {b}"


def _row(provider: str, median_ms: float, **kw):
    from bench.common import Row

    fields = dict(shape="1x2", dtype="float32", device="cpu", threads=2, p20_ms=median_ms, p80_ms=median_ms)
    fields |= dict(bytes=1, gbps=1.0, copy_gbps=2.0, frac_copy_bw=0.5, speedup_vs_eager=4.0, speedup_vs_reference=1.0)
    fields |= dict(max_abs_err=0.0, note="case", torch="t", commit="c", machine="m") | kw
    return Row(op="op", provider=provider, median_ms=median_ms, **fields)


def test_copy_target_lines(capsys):
    """The PASS/FAIL lines of a memory-bound op's CPU targets, from the rows' numbers; the
    fresh-output line names the process's malloc."""
    from bench import common

    common.print_copy_targets([_row("cpu", 15.0), _row("cpu+out", 10.0)], "case")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("PASS: CPU kernel (fresh output) >= 3x faster than eager, case: 4.00x")
    assert lines[1] == (
        f"PASS: CPU kernel fresh output within 1.5x of out=, case: 1.50x (15.00 vs 10.00 ms; malloc: "
        f"{common.cpu_allocator()})"
    )
    assert lines[2] == "PASS: CPU kernel with out= >= 50% of copy bandwidth, case: 50% (1.0 of 2.0 GB/s)"
    common.print_fresh_output_target([_row("cpu", 60.0), _row("cpu+out", 10.0)], "case")
    assert capsys.readouterr().out.startswith("FAIL: CPU kernel fresh output within 1.5x of out=, case: 6.00x")
