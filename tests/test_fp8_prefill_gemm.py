"""The CPU FP8 GEMM at prefill-like shapes (M well above the decode path's 16, the LLM's
K = 3584 in 14 K slices, tails in M, N and K) and at a decode-path M (9 rows: two row
groups) against the reference, a NaN code in a included: the AVX512-BF16 paths where the
CPU has them, and the fp32 blocked / AVX2 decode paths (NVILA_KERNELS_CPU_ISA=avx2, in a
fresh process)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import KERNEL_BACKENDS, assert_fp8_gemm_close

import nvila_kernels as nk
from nvila_kernels import reference

pytestmark = pytest.mark.skipif("cpu" not in KERNEL_BACKENDS, reason="no CPU kernels in this build")

SHAPES = [(259, 101, 3584), (300, 72, 1151), (9, 101, 1151)]  # (M, N, K)


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16], ids=str)
def test_prefill_shaped_gemm_matches_reference(out_dtype):
    g = torch.Generator().manual_seed(0)
    for M, N, K in SHAPES:
        a, b = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g) * 0.05
        a[5, 7] = float("nan")  # a NaN code poisons its row only
        qa, sa = reference.fp8_quantize(a)
        qb, sb = reference.fp8_quantize(b)
        bias = torch.randn(N, generator=g)
        got = nk.fp8_gemm(qa, qb, sa, sb, bias, out_dtype, backend="cpu")
        expected = reference.fp8_gemm(qa, qb, sa, sb, bias, out_dtype)
        assert got[5].isnan().all() and not got[torch.arange(M) != 5].isnan().any()
        assert_fp8_gemm_close(got, expected, K, out_dtype)


def test_fp32_blocked_path():
    """The same shapes through the fp32 blocked path (as on a CPU without AVX512-BF16)."""
    env = {**os.environ, "NVILA_KERNELS_CPU_ISA": "avx2"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "matches_reference"]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "2 passed," in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]
