"""`make gpu-check` (.ci/gpu_check.sh) on a machine without a GPU, and the arithmetic of its
report (bench/gpu_report.py) on rows as `python -m bench --device cuda` writes them."""

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from bench import common, gpu_report

ROOT = Path(__file__).resolve().parents[1]


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    fake = tmp_path / "nvidia-smi"  # as on a machine with the driver tools but no GPU
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin", "GPU_CHECK_OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", ".ci/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "no NVIDIA GPU on this machine" in proc.stdout
    assert not (tmp_path / "out").exists()  # nothing built or written


def _row(provider, median_ms, nbytes=0, flops=0, op="fp8_gemm", note="GPU peak, 8192^3", math="fp8"):
    shape, dtype = ((8192,) * 3, torch.float8_e4m3fn) if op == "fp8_gemm" else ((64, 16, 16, 3584), torch.bfloat16)
    builder = common.RowBuilder.__new__(common.RowBuilder)  # no device probing: the row fields only
    builder.device, builder.device_name, builder.threads = "cuda", "NVIDIA H200", 1
    builder.copy_gbps, builder.commit, builder.machine = 4000.0, "x", "m"
    return builder.row(
        op=op,
        provider=provider,
        x=torch.empty(shape, dtype=dtype, device="meta"),
        times=[median_ms] * 3,
        nbytes=nbytes,
        note=note,
        flops=flops,
        math=math,
    )


def test_report_figures(tmp_path):
    flops = 2 * 8192**3
    rows = [
        _row("cuda", 1.1 * flops / 1979e12 * 1e3 / 0.5, flops=flops),  # 0.5 / 1.1 of the H200's FP8 peak
        _row("scaled_mm", flops / 1979e12 * 1e3 / 0.8, flops=flops),
        _row("reference", 50.0, flops=flops),
        _row("cuda", 1.0, nbytes=2_400_000_000, op="temporal_pool", note="video", math=None),
        _row("eager", 2.0, nbytes=2_400_000_000, op="temporal_pool", note="video", math=None),
    ]
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "fp8_cuda.jsonl").write_text("".join(json.dumps(dataclasses.asdict(r)) + "\n" for r in rows))
    (tmp_path / "steps.tsv").write_text("build\t0\t61\tlogs/build.log\ntests\t1\t200\tlogs/tests.log\n")
    report = gpu_report.write_report(tmp_path)
    assert report["device"] == "NVIDIA H200" and report["ok"] is False  # the tests step failed
    gemm, pool = report["kernels"]
    assert gemm["backend"] == "cuda" and gemm["peer"] == "scaled_mm"
    assert gemm["frac_math_peak"] == pytest.approx(0.5 / 1.1) and gemm["frac_hbm_peak"] is None
    assert gemm["x_peer"] == pytest.approx(0.5 / 1.1 / 0.8)
    assert pool["gbps"] == pytest.approx(2400) and pool["frac_hbm_peak"] == pytest.approx(0.5)  # H200: 4.8 TB/s
    assert pool["x_peer"] == pytest.approx(2.0)
    md = (tmp_path / "report.md").read_text()
    assert "| tests | FAILED (1) | 200 |" in md and "| temporal_pool | video |" in md
