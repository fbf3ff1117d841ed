"""Benchmark of the FP8 ops: fp8_gemm (LLM decode and prefill shapes) and fp8_quantize.

    python -m bench.bench_fp8 [--quick|--full|--tiny] [--device cpu|cuda] [--out DIR]

fp8_gemm, out = (a @ b^T) * scale_a * scale_b in bf16, with a (M, K) and b (N, K) in
float8_e4m3fn. Shapes are Qwen2-7B (NVILA-8B's LLM) linears: decode M=1 at (N, K) =
(4096, 4096), (18944, 3584) (MLP gate/up), (3584, 18944) (MLP down); prefill M=1024
at 4096 x 4096. Providers: each compiled backend of ours, "reference"
(nvila_kernels.reference), "eager" = torch.matmul with fp32 weights (what a model
without FP8 runs; the "x eager" column is the speedup over it), "matmul-bf16" with
bf16 weights, "scaled_mm" = torch._scaled_mm per-tensor and "compile" = torch.compile
of the reference (dequantize + matmul) (each skipped where one call takes over 2 s).
An M sweep at 4096 x 4096 shows the move from weight streaming (decode) to compute.
Every provider rotates over enough copies of its weights to exceed
the last-level cache, so each call reads its weights from memory, as in a model
whose layers evict each other. Bytes moved = weights + activations + output in the
provider's dtypes; the decode targets count the FP8 weight traffic N*K / time.

fp8_quantize, dynamic per-tensor E4M3 of a (1024, 4096) bf16 activation, against the
eager composition amax + clamp + cast. Bytes moved = x + q.
"""

from __future__ import annotations

import torch

import nvila_kernels
from bench import common
from bench.cases import Case, cases
from nvila_kernels import reference

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max
COLD_BYTES = 128 * 1024 * 1024  # weight copies per provider: at least this much (4x a 32 MB L3)
MAX_COPIES = 64  # tiny weights stay cache-resident anyway
SLOW_CALL_S = 2.0  # a provider whose one call takes longer is skipped on that shape

DECODE_MIN_X_FP32 = 2.5  # targets (CPU): decode speedup over fp32 matmul
DECODE_MIN_FRAC_COPY = 0.70  # FP8 weight bytes / time over the copy bandwidth
PREFILL_MAX_X_FP32 = 1.2  # prefill time over fp32 matmul time

SLOW = common.Timing(warmup=0, budget_s=2.0, min_reps=2, max_reps=5)  # for calls of a second or so


def _rotating(fns: list) -> object:
    """One callable that calls fns[0], fns[1], ... in turn (each on its own weight copy)."""
    state = {"i": 0}

    def call():
        fn = fns[state["i"] % len(fns)]
        state["i"] += 1
        return fn()

    return call


def _cold_copies(w: torch.Tensor) -> list[torch.Tensor]:
    """w and enough clones of it to hold COLD_BYTES together."""
    n = min(MAX_COPIES, max(1, -(-COLD_BYTES // common.tensor_bytes(w))))
    return [w] + [w.clone() for _ in range(n - 1)]


def bench_gemm(
    builder: common.RowBuilder, case: Case, mode: str, timing: common.Timing, warnings: list[str]
) -> list[common.Row]:
    device, note, sweep = builder.device, case.note, case.sweep
    M, N, K = case.args["M"], case.args["N"], case.args["K"]
    gen = torch.Generator(device="cpu").manual_seed(0)
    a32 = torch.randn(M, K, generator=gen).to(device)
    w32 = (torch.randn(N, K, generator=gen) * K**-0.5).to(device)
    sa, sb = (torch.tensor(0.5, device=device), torch.tensor(0.02, device=device))
    a8, w8 = (a32 / sa).clamp(-FP8_MAX, FP8_MAX).to(FP8), (w32 / sb).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    expected = reference.fp8_gemm(a8, w8, sa, sb, None, torch.bfloat16)
    tol = 2**-7 * expected.float().abs().max().item() * 4  # bf16 output: a few ulps of the largest value
    mnk = torch.empty((M, N, K), dtype=FP8, device="meta")  # the row's shape "MxNxK"
    out_bytes = M * N * 2
    builder.measure_copy_bandwidth()

    w8s = _cold_copies(w8)
    # (provider, fn on weight copy 0, rotating fn, bytes moved, timing)
    providers = []
    for backend in common.benched_backends(device):
        fns = [lambda w=w, be=backend: nvila_kernels.fp8_gemm(a8, w, sa, sb, backend=be) for w in w8s]
        providers.append((backend, fns[0], _rotating(fns), N * K + M * K + out_bytes, timing))
    fns = [lambda w=w: reference.fp8_gemm(a8, w, sa, sb, None, torch.bfloat16) for w in w8s]
    providers.append(("reference", fns[0], _rotating(fns), N * K + M * K + out_bytes, timing))
    w32s = _cold_copies(w32)
    fns = [lambda w=w: a32 @ w.t() for w in w32s]
    providers.append(("eager", fns[0], _rotating(fns), 4 * (N * K + M * K + M * N), timing))
    wb = w32.bfloat16()
    ab = a32.bfloat16()
    wbs = _cold_copies(wb)
    fns = [lambda w=w: ab @ w.t() for w in wbs]
    providers.append(("matmul-bf16", fns[0], _rotating(fns), 2 * (N * K + M * K) + out_bytes, timing))
    fns = [lambda w=w: torch._scaled_mm(a8, w.t(), sa, sb, out_dtype=torch.bfloat16) for w in w8s]
    providers.append(("scaled_mm", fns[0], _rotating(fns), N * K + M * K + out_bytes, None))
    if mode in case.compile:
        compiled = common.compiled(reference.fp8_gemm)
        fns = [lambda w=w: compiled(a8, w, sa, sb, None, torch.bfloat16) for w in w8s]
        providers.append(("compile", fns[0], _rotating(fns), N * K + M * K + out_bytes, None))

    rows = []
    for provider, fn, timed_fn, nbytes, prov_timing in providers:
        try:
            y = fn()
        except Exception as e:  # e.g. no FP8 matmul on this device, torch.compile without a compiler
            warnings.append(f"SKIP {note} {provider}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            continue
        err = common.max_abs_err(y, expected)
        if prov_timing is None:  # slow providers: one timed call decides
            once_ms = common.time_fn(fn, warmup=0, reps=1, device=device)[0]
            if once_ms > SLOW_CALL_S * 1e3:
                warnings.append(f"SKIP {note} {provider}: one call takes {once_ms / 1e3:.1f} s (> {SLOW_CALL_S} s)")
                continue
            prov_timing = SLOW if once_ms > 100 else timing
        times = common.time_budgeted(timed_fn, prov_timing, device, warmed=True)
        math = {"eager": "fp32", "matmul-bf16": "bf16"}.get(provider, "fp8")
        row = builder.row(
            op="fp8_gemm",
            provider=provider,
            x=mnk,
            times=times,
            nbytes=nbytes,
            note=note,
            max_abs_err=err,
            flops=2 * M * N * K,
            math=math,
            sweep=sweep,
            sweep_x=M if sweep else None,
        )
        if provider not in ("eager", "matmul-bf16") and err > tol:
            warnings.append(f"MISMATCH {note} {provider}: max abs error {err:.3g} > {tol:.3g} vs reference")
        rows.append(row)
    return rows


def eager_quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The usual eager dynamic per-tensor quantization: amax, scale, clamp, cast."""
    amax = x.abs().amax().float().clamp(min=1e-12)
    scale = amax / FP8_MAX
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def bench_quantize(
    builder: common.RowBuilder, case: Case, mode: str, timing: common.Timing, warnings: list[str]
) -> list[common.Row]:
    device, note = builder.device, case.note
    shape, dtype = case.args["shape"], case.args["dtype"]
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    expected, _ = reference.fp8_quantize(x)
    nbytes = common.tensor_bytes(x, expected)
    builder.measure_copy_bandwidth()
    providers = [
        (be, lambda be=be: nvila_kernels.fp8_quantize(x, backend=be)) for be in common.benched_backends(device)
    ]
    providers.append(("reference", lambda: reference.fp8_quantize(x)))
    providers.append(("eager", lambda: eager_quantize(x)))
    if mode in case.compile:
        compiled = common.compiled(eager_quantize)
        providers.append(("compile", lambda: compiled(x)))
    rows = []
    for provider, fn in providers:
        try:
            q = fn()[0]
        except Exception as e:  # torch.compile without a compiler
            warnings.append(f"SKIP {note} {provider}: {type(e).__name__}: {str(e).strip().splitlines()[0][:160]}")
            continue
        mismatches = (q.view(torch.uint8) != expected.view(torch.uint8)).sum().item()
        times = common.time_budgeted(fn, timing, device, warmed=True)
        row = builder.row(op="fp8_quantize", provider=provider, x=x, times=times, nbytes=nbytes, note=note)
        row.max_abs_err = (q.float() - expected.float()).abs().max().item()
        if provider not in ("eager", "compile") and mismatches:
            warnings.append(f"MISMATCH {note} {provider}: {mismatches} codes differ from the reference")
        rows.append(row)
    return rows


def _find(rows: list[common.Row], note: str, provider: str) -> common.Row | None:
    return next((r for r in rows if r.note == note and r.provider == provider), None)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_targets(rows: list[common.Row]) -> None:
    """The CPU targets, as PASS/FAIL lines (not asserts), plus the ratio summary."""
    for case in cases("fp8_gemm", "standard"):
        note, M, N, K = case.note, case.args["M"], case.args["N"], case.args["K"]
        if case.sweep:
            continue
        ours = _find(rows, note, "cpu")
        fp32, bf16, smm = (_find(rows, note, p) for p in ("eager", "matmul-bf16", "scaled_mm"))
        if ours is None or fp32 is None:
            print(f"targets {note}: skipped (no CPU kernel rows)")
            continue
        x_fp32 = fp32.median_ms / ours.median_ms
        x_bf16 = None if bf16 is None else bf16.median_ms / ours.median_ms
        x_smm = None if smm is None else smm.median_ms / ours.median_ms
        bf16_txt = "-" if x_bf16 is None else f"{x_bf16:.2f}"
        smm_txt = "-" if x_smm is None else f"{x_smm:.1f}"
        weight_gbps = N * K / (ours.median_ms * 1e-3) / 1e9
        frac = weight_gbps / ours.copy_gbps
        print(
            f"{note} ({M}x{N}x{K}): cpu {ours.median_ms:.3f} ms, FP8 weights {weight_gbps:.1f} GB/s = "
            f"{100 * frac:.0f}% of copy {ours.copy_gbps:.1f} GB/s; x fp32 {x_fp32:.2f}, x bf16 "
            f"{bf16_txt}, x _scaled_mm {smm_txt}"
        )
        if M == 1:
            print(f"{_verdict(x_fp32 >= DECODE_MIN_X_FP32)}: {note} >= {DECODE_MIN_X_FP32}x fp32 matmul: {x_fp32:.2f}x")
            if x_bf16 is not None:
                print(f"{_verdict(x_bf16 > 1.0)}: {note} faster than bf16 matmul: {x_bf16:.2f}x")
            print(
                f"{_verdict(frac >= DECODE_MIN_FRAC_COPY)}: {note} FP8 weight traffic >= "
                f"{100 * DECODE_MIN_FRAC_COPY:.0f}% of copy bandwidth: {100 * frac:.0f}%"
            )
        else:
            ratio = ours.median_ms / fp32.median_ms
            print(
                f"{_verdict(ratio <= PREFILL_MAX_X_FP32)}: {note} time <= {PREFILL_MAX_X_FP32}x fp32 matmul: "
                f"{ratio:.2f}x ({ours.median_ms:.1f} ms vs {fp32.median_ms:.1f} ms)"
            )
    for note in (c.note for c in cases("fp8_quantize", "standard")):
        ours, eager = _find(rows, note, "cpu"), _find(rows, note, "eager")
        if ours is not None and eager is not None:
            print(
                f"fp8_quantize {note}: cpu {ours.median_ms:.3f} ms ({ours.gbps:.1f} GB/s, "
                f"{100 * ours.frac_copy_bw:.0f}% of copy), {eager.median_ms / ours.median_ms:.1f}x eager"
            )


def bench_case(
    builder: common.RowBuilder, case: Case, mode: str, timing: common.Timing, warnings: list[str]
) -> list[common.Row]:
    bench = bench_gemm if case.op == "fp8_gemm" else bench_quantize
    return bench(builder, case, mode, timing, warnings)


def run(args) -> list[common.Row]:
    return common.run_cases(
        args, ["fp8_gemm", "fp8_quantize"], bench_case, title="FP8 ops", results_name="fp8", targets=print_targets
    )


def main(argv: list[str] | None = None) -> list[common.Row]:
    return common.script_main(run, __doc__, "bench.bench_fp8", argv)


if __name__ == "__main__":
    main()
