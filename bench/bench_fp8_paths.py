"""The two CPU paths of Fp8Linear side by side, per GEMM shape: the fp8_gemm kernel and the
dequantize path (nvila_kernels.layers.fp8_gemm_dequantized), with fp32 torch.matmul
(F.linear on fp32 weights) as the yardstick; the data behind layers.KERNEL_MAX_M.

    python -m bench.bench_fp8_paths [--m 1,16,64,256,3104] [--nk 3584x3584,18944x3584] [--reps 5] [--threads N]
    NVILA_KERNELS_CPU_ISA=avx2 python -m bench.bench_fp8_paths ...   # as on a CPU without AVX512-BF16

Times are medians of --reps calls per provider, the providers' calls interleaved (a
shared machine's load drifts over all of them alike); the choice fp8_cpu_path makes is
printed beside them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import nvila_kernels as nk
from bench import common
from nvila_kernels import backends
from nvila_kernels.layers import fp8_cpu_path, fp8_gemm_dequantized

# (N, K) of NVILA-8B's Linear layers: Qwen2-7B q/o, k/v, gate/up, down; SigLIP qkv/out, fc1, fc2
MODEL_NK = "3584x3584,512x3584,18944x3584,3584x18944,1152x1152,4304x1152,1152x4304"


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def _providers(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, qw: torch.Tensor, sw: torch.Tensor) -> dict:
    """The three timed calls for activations x (M, K), weight w (N, K) and its FP8 form."""
    qx, sx = nk.fp8_quantize(x)
    return {
        "kernel": lambda: nk.fp8_gemm(qx, qw, sx, sw, bias, torch.float32, backend="cpu"),
        "dequantize": lambda: fp8_gemm_dequantized(qx, qw, sx, sw, bias),
        "fp32": lambda: F.linear(x, w, bias),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_fp8_paths", description=__doc__.split("\n")[0])
    p.add_argument("--m", default="1,16,64,256,1024,3104", help="comma-separated M values (rows of activations)")
    p.add_argument("--nk", default=MODEL_NK, help="comma-separated NxK weight shapes")
    p.add_argument("--reps", type=int, default=5, help="timed calls per provider (after one warm-up call)")
    p.add_argument("--threads", type=int, default=None, help="torch / OpenMP threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    busy = common.busy_machine_note()
    g = torch.Generator().manual_seed(0)
    print(f"fp8_gemm CPU ISA: {backends.cpu_isa()}; {torch.get_num_threads()} threads; median of {args.reps} ms")
    print("| M | N | K | kernel | dequantize | fp32 matmul | kernel / dequantize | fp8_cpu_path |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for nk_shape in args.nk.split(","):
        N, K = (int(v) for v in nk_shape.split("x"))
        w = torch.randn(N, K, generator=g) * 0.02
        bias = torch.randn(N, generator=g)
        qw, sw = nk.fp8_quantize(w)
        for M in (int(v) for v in args.m.split(",")):
            x = torch.randn(M, K, generator=g)
            fns = _providers(x, w, bias, qw, sw)
            for fn in fns.values():
                fn()
            times = {name: [] for name in fns}
            for _ in range(args.reps):
                for name, fn in fns.items():
                    times[name].append(_time(fn))
            k, d, f = (float(np.median(times[n])) for n in ("kernel", "dequantize", "fp32"))
            print(f"| {M} | {N} | {K} | {k:.2f} | {d:.2f} | {f:.2f} | {k / d:.2f} | {fp8_cpu_path(M, N, K)} |")
    if busy:
        print(busy)


if __name__ == "__main__":
    main()
