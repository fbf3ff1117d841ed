"""Fp8Linear's two CPU paths (nvila_kernels.layers.fp8_cpu_path): the dequantize path
against the reference FP8 GEMM, and the choice per shape on a CPU without AVX512-BF16
(NVILA_KERNELS_CPU_ISA=avx2, in a fresh process): the kernel at M = 1, the dequantize
path at a prefill-sized M, said in the log and in nvila_kernels.info()."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import KERNEL_BACKENDS, assert_fp8_gemm_close

from nvila_kernels import layers, reference

pytestmark = pytest.mark.skipif("cpu" not in KERNEL_BACKENDS, reason="no CPU kernels in this build")


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16], ids=str)
def test_dequantize_path_matches_reference(monkeypatch, out_dtype):
    # blocks of 64 rows (the least): several blocks of a and of b, with tails in both
    monkeypatch.setattr(layers, "_BLOCK_BYTES", 40 * 4 * 1151)
    assert layers._block_rows(259, 1151) == 64 and layers._block_rows(101, 1151) == 64
    g = torch.Generator().manual_seed(0)
    M, N, K = 259, 101, 1151
    a, b = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g) * 0.05
    a[5, 7] = float("nan")  # a NaN code poisons its row only
    qa, sa = reference.fp8_quantize(a)
    qb, sb = reference.fp8_quantize(b)
    bias = torch.randn(N, generator=g)
    got = layers.fp8_gemm_dequantized(qa, qb, sa, sb, bias, out_dtype)
    expected = reference.fp8_gemm(qa, qb, sa, sb, bias, out_dtype)
    assert got.dtype == out_dtype and got.shape == (M, N)
    assert got[5].isnan().all() and not got[torch.arange(M) != 5].isnan().any()
    assert_fp8_gemm_close(got, expected, K, out_dtype)


def test_path_refuses_bad_sizes():
    with pytest.raises(ValueError, match="m: expected an int >= 1"):
        layers.fp8_cpu_path(0, 8, 8)


_AVX2_SCRIPT = textwrap.dedent(
    """
    import json, logging
    import torch
    import nvila_kernels
    from nvila_kernels import backends, layers

    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logging.getLogger("nvila_kernels").addHandler(handler)
    logging.getLogger("nvila_kernels").setLevel(logging.INFO)
    calls = {"kernel": 0, "dequantize": 0}
    def count(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped
    layers.fp8_gemm = count("kernel", layers.fp8_gemm)
    layers.fp8_gemm_dequantized = count("dequantize", layers.fp8_gemm_dequantized)

    torch.manual_seed(0)
    lin = layers.Fp8Linear.from_linear(torch.nn.Linear(64, 48))
    big = layers.KERNEL_MAX_M[backends.cpu_isa()] + 1
    out = {"isa": backends.cpu_isa(), "info": nvila_kernels.info(), "big": big,
           "paths": [layers.fp8_cpu_path(1, 48, 64), layers.fp8_cpu_path(big, 48, 64)]}
    with torch.inference_mode():
        lin(torch.randn(1, 64))
        out["after_m1"] = dict(calls), list(records)
        x = torch.randn(big, 64)
        y, y2 = lin(x), lin(x)
    out["after_big"] = dict(calls), list(records)
    # the dequantize path computes the kernel's product
    q, s = nvila_kernels.fp8_quantize(x)
    y_kernel = nvila_kernels.fp8_gemm(q, lin.weight, s, lin.weight_scale, lin.bias, torch.float32)
    out["max_diff"] = (y - y_kernel).abs().max().item()
    print(json.dumps(out))
    """
)


def test_avx2_cpu_takes_dequantize_path_at_large_m():
    env = {**os.environ, "NVILA_KERNELS_CPU_ISA": "avx2"}
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", _AVX2_SCRIPT], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["isa"] == "avx2" and "fp8_gemm ISA avx2" in out["info"]
    assert out["paths"] == ["kernel", "dequantize"]
    calls, log = out["after_m1"]
    assert calls == {"kernel": 1, "dequantize": 0} and log == []
    calls, log = out["after_big"]
    assert calls == {"kernel": 1, "dequantize": 2}
    assert len(log) == 1 and "64 -> 48" in log[0] and f"M = {out['big']}" in log[0] and "dequantize" in log[0], log
    assert out["max_diff"] < 1e-4
