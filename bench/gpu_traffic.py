"""Memory traffic of the CUDA kernels, measured in the SIMT emulator (no GPU needed).

    python -m bench.gpu_traffic [--json PATH]

Each CUDA kernel runs on the emu backend at an NVILA shape (real channel counts and
alignment, fewer tokens/frames/rows where the emulator is too slow) with the emulator's
traffic counters on (csrc/emu/traffic.cpp). Per op, summed over its launches:

- bytes requested: 32-byte sectors touched per warp-level global request, x 32. No cache is
  modelled, so this is an upper bound of the DRAM traffic (a sector two requests touch counts
  twice);
- minimum: each input byte read once, each output byte written once (the op's tensors);
- sector efficiency: the bytes the lanes access / the bytes of the sectors they touch;
- shared ways: shared-memory wavefronts / the minimum for those requests (1.00 = no bank
  conflicts; 32 banks of 4 bytes, 8-byte accesses in 2 phases, 16-byte in 4);
- H100 / H200: bytes requested / HBM bandwidth (3.35 / 4.8 TB/s): a MODEL, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch

import nvila_kernels as nk
from bench.common import HBM_PEAK_GBPS
from nvila_kernels import _C
from nvila_kernels.tiling import plan_tiles

REPO = Path(__file__).resolve().parent.parent
H100_GBPS = HBM_PEAK_GBPS["H100 SXM"]
H200_GBPS = HBM_PEAK_GBPS["H200"]


def nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _features(plan, h, w, C, dtype):
    return torch.randn(plan.n_tiles, h * w, C).to(dtype)


def case_spatial_compress():
    # NVILA-8B projector input: SigLIP's 1152 channels, k = 2 (token grid reduced to 8 x 8)
    x = torch.randn(1, 8, 8, 1152).to(torch.bfloat16)
    w, b = torch.randn(4 * 1152).to(torch.bfloat16), torch.randn(4 * 1152).to(torch.bfloat16)
    out = nk.spatial_compress(x, 2, w, b, backend="emu")
    return "(1, 8, 8, 1152) bf16, k=2, LN", nbytes(x, w, b), nbytes(out)


def case_temporal_pool():
    # NVILA-8B-Video: groups of 8 frames, Qwen2 hidden 3584 (16 x 16 tokens reduced to 4 x 4)
    x = torch.randn(8, 4, 4, 3584).to(torch.bfloat16)
    out = nk.temporal_pool(x, 8, backend="emu")
    return "(8, 4, 4, 3584) bf16, group 8", nbytes(x), nbytes(out)


def _tiny_plan():
    # Dynamic-S2 with 8 x 8 feature tiles (NVILA: 32 x 32): scales 1x, 2x and a 2 x 3 grid
    return plan_tiles(300, 200, scales=(8, 16, 24), tile=8, max_tiles=12)


def case_multiscale_merge():
    plan = _tiny_plan()
    x = _features(plan, 8, 8, 1152, torch.bfloat16)
    out = nk.multiscale_merge(x, plan, 8, 8, backend="emu")
    return f"{plan.n_tiles} tiles of 8x8x1152 bf16", nbytes(x), nbytes(out)


def case_merge_compress():
    plan = _tiny_plan()
    x = _features(plan, 8, 8, 1152, torch.bfloat16)
    D = 4 * len(plan.scales) * 1152
    w, b = torch.randn(D).to(torch.bfloat16), torch.randn(D).to(torch.bfloat16)
    out = nk.merge_compress(x, plan, 2, w, b, h=8, w=8, backend="emu")
    return f"{plan.n_tiles} tiles of 8x8x1152 bf16, k=2, LN", nbytes(x, w, b), nbytes(out)


def case_merge_compress_cached():
    # two scales: a row of 4 x 2 x 1152 = 9216 fp32 values fits the emulated device's 48 KiB,
    # so the staged-row (cached) variant runs, as NVILA-8B's 13824-value rows do on an H100
    plan = plan_tiles(300, 200, scales=(8, 16), tile=8, max_tiles=12)
    x = _features(plan, 8, 8, 1152, torch.bfloat16)
    D = 4 * len(plan.scales) * 1152
    w, b = torch.randn(D), torch.randn(D)
    out = nk.merge_compress(x, plan, 2, w, b, h=8, w=8, backend="emu")
    return f"{plan.n_tiles} tiles of 8x8x1152 bf16, 2 scales, k=2, LN (fp32)", nbytes(x, w, b), nbytes(out)


def case_fp8_quantize():
    # activations of a Qwen2-7B linear (hidden 3584), 64 tokens, dynamic scale
    x = torch.randn(64, 3584).to(torch.bfloat16)
    q, scale = nk.fp8_quantize(x, backend="emu")
    return "(64, 3584) bf16, dynamic scale", nbytes(x), nbytes(q, scale)


def case_multiscale_tile():
    # Dynamic-S2 preprocessing, tiles of 28 (NVILA: 448), scales 28/56/84, a 200 x 150 image
    plan = plan_tiles(200, 150, scales=(28, 56, 84), tile=28)
    image = torch.randint(0, 256, (150, 200, 3), dtype=torch.uint8)
    out = nk.multiscale_tile(image, plan, backend="emu")
    return f"200x150 uint8 -> {plan.n_tiles} tiles of 28", nbytes(image), nbytes(out)


def case_fp8_gemm():
    # a Qwen2-7B projection's K = 3584, 64 tokens x 256 output features (sm_89 path: mma.sync)
    a = torch.randn(64, 3584).to(torch.float8_e4m3fn)
    b = torch.randn(256, 3584).to(torch.float8_e4m3fn)
    sa, sb = torch.tensor(0.5), torch.tensor(0.25)
    out = nk.fp8_gemm(a, b, sa, sb, backend="emu")
    return "64x256x3584 e4m3 -> bf16 (mma.sync)", nbytes(a, b, sa, sb), nbytes(out)


CASES = {
    "spatial_compress": case_spatial_compress,
    "temporal_pool": case_temporal_pool,
    "multiscale_merge": case_multiscale_merge,
    "merge_compress": case_merge_compress,
    "merge_compress_cached": case_merge_compress_cached,
    "fp8_quantize": case_fp8_quantize,
    "multiscale_tile": case_multiscale_tile,
    "fp8_gemm": case_fp8_gemm,
}


SOURCES = {  # the .cu file of each op's kernels
    "spatial_compress": "spatial_compress.cu",
    "temporal_pool": "temporal_pool.cu",
    "multiscale_merge": "multiscale_merge.cu",
    "merge_compress": "merge_compress.cu",
    "merge_compress_cached": "merge_compress.cu",
    "fp8_quantize": "fp8_quantize.cu",
    "multiscale_tile": "multiscale_tile.cu",
    "fp8_gemm": "fp8_gemm.cu",
}


def ptxas_resources(source: str) -> dict[str, tuple[int, int]] | None:
    """{demangled kernel: (registers, static shared bytes)} of csrc/cuda/<source> for sm_90a
    (nvcc -Xptxas -v, no GPU needed), or None without nvcc."""
    nvcc = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")
    if not os.path.exists(nvcc) or not shutil.which("c++filt"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [nvcc, "-arch=sm_90a", "-O3", "-std=c++20", "--expt-relaxed-constexpr", "-Xptxas", "-v"]
        cmd += [f"-I{REPO / 'csrc' / 'include'}", "-c", str(REPO / "csrc" / "cuda" / source), "-o", f"{tmp}/k.o"]
        run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        return None
    found, current = {}, None
    for line in run.stderr.splitlines():
        if m := re.search(r"Compiling entry function '(\S+)'", line):
            current = m.group(1)
        elif current and (m := re.search(r"Used (\d+) registers", line)):
            smem = re.search(r"(\d+) bytes smem", line)
            found[current] = (int(m.group(1)), int(smem.group(1)) if smem else 0)
    names = subprocess.run(["c++filt"], input="\n".join(found), capture_output=True, text=True).stdout.split("\n")
    return {demangled: found[mangled] for mangled, demangled in zip(found, names, strict=False)}


def occupancy_h100(regs: int, smem: int, block: int) -> float:
    """Resident threads / 2048 on an SM of sm_90 (65536 registers allocated per warp in units of
    256, 2048 threads, 32 blocks, 228 KiB shared memory with 1 KiB reserved per block)."""
    warps = -(-block // 32)
    per_warp = -(-regs * 32 // 256) * 256
    blocks = min(32, 2048 // (32 * warps), 65536 // (per_warp * warps) if regs else 32)
    blocks = min(blocks, (228 * 1024) // (smem + 1024))
    return blocks * block / 2048


def resources(name: str, launches: list) -> list[dict]:
    """Registers, shared memory and sm_90 occupancy of each kernel the op launched (block size and
    dynamic shared memory as planned for the emulated device)."""
    table = ptxas_resources(SOURCES[name])
    out = []
    for kernel, config, _args in launches:
        block, dyn = config[3], config[4]
        key = re.sub(r"\s", "", kernel)
        hit = None
        for demangled, rs in (table or {}).items():
            if re.sub(r"\s", "", demangled).split("::")[-1].startswith(key + "(") or ("::" + key + "(") in re.sub(
                r"\s", "", demangled
            ):
                hit = rs
        row = {"kernel": kernel, "block": block, "dynamic_smem": dyn}
        if hit:
            row.update(registers=hit[0], static_smem=hit[1], occupancy=occupancy_h100(hit[0], hit[1] + dyn, block))
        out.append(row)
    return out


def measure(name: str, with_resources: bool = True) -> dict:
    _C.emulated_launches()
    _C.emu_traffic_take()
    previous = _C.emu_traffic(True)
    t0 = time.perf_counter()
    try:
        shape, min_in, min_out = CASES[name]()
    finally:
        _C.emu_traffic(previous)
    seconds = time.perf_counter() - t0
    launches = _C.emulated_launches()
    per_kernel = _C.emu_traffic_take()
    tot = {k: sum(d[k] for d in per_kernel.values()) for k in next(iter(per_kernel.values()))}
    requested = tot["bytes_requested"]
    minimum = min_in + min_out
    return {
        "op": name,
        "shape": shape,
        "kernels": {k: d["launches"] for k, d in per_kernel.items()},
        "bytes_requested": requested,
        "load_bytes_requested": 32 * tot["load_sectors"],
        "store_bytes_requested": 32 * tot["store_sectors"],
        "min_bytes": minimum,
        "min_in": min_in,
        "min_out": min_out,
        "ratio": requested / minimum,
        "store_ratio": 32 * tot["store_sectors"] / min_out,
        "sector_efficiency": tot["bytes_used"] / requested if requested else float("nan"),
        "shared_requests": tot["shared_requests"],
        "shared_ways": tot["wavefronts"] / tot["ideal_wavefronts"] if tot["ideal_wavefronts"] else None,
        "h100_us": requested / (H100_GBPS * 1e3),
        "h200_us": requested / (H200_GBPS * 1e3),
        "emu_seconds": seconds,
        "totals": tot,
        "resources": resources(name, launches) if with_resources else [],
    }


def table(rows: list[dict]) -> str:
    out = [
        "| op | shape | bytes requested | minimum | ratio | stores / output | sector eff. | shared ways "
        "(requests) | H100 model | H200 model |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ways = "no shared" if r["shared_ways"] is None else f"{r['shared_ways']:.2f} ({r['shared_requests']})"
        out.append(
            f"| {r['op']} | {r['shape']} | {r['bytes_requested']:,} | {r['min_bytes']:,} | {r['ratio']:.2f}x | "
            f"{r['store_ratio']:.2f}x | {100 * r['sector_efficiency']:.1f}% | {ways} | "
            f"{r['h100_us']:.2f} us | {r['h200_us']:.2f} us |"
        )
    return "\n".join(out)


def resource_table(rows: list[dict]) -> str:
    out = [
        "| kernel | block | registers | static smem | dynamic smem | sm_90 occupancy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for k in r["resources"]:
            if "registers" in k:
                out.append(
                    f"| {k['kernel']} | {k['block']} | {k['registers']} | {k['static_smem']} | {k['dynamic_smem']} | "
                    f"{100 * k['occupancy']:.0f}% |"
                )
            else:
                out.append(f"| {k['kernel']} | {k['block']} | missing | missing | {k['dynamic_smem']} | missing |")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the rows as JSON to this path")
    parser.add_argument("--no-ptxas", action="store_true", help="skip the nvcc -Xptxas -v resource table")
    parser.add_argument("ops", nargs="*", help=f"a subset of {', '.join(CASES)}")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    for name in args.ops or list(CASES):
        rows.append(measure(name, with_resources=not args.no_ptxas))
        r = rows[-1]
        print(f"# {name}: {r['kernels']} ({r['emu_seconds']:.1f} s in the emulator)", flush=True)
    print()
    print(table(rows))
    print()
    print(
        "bytes requested: global 32-byte sectors per warp-level request (no cache modelled: an upper bound of DRAM "
        "traffic); H100/H200: bytes requested / 3.35 / 4.8 TB/s, a model, not a measurement."
    )
    if not args.no_ptxas:
        print()
        print(
            "Resources (nvcc -arch=sm_90a -Xptxas -v; block and dynamic shared memory as planned for the emulated "
            "device: cc 8.9, 48 KiB; occupancy: resident threads / 2048 per SM, a model):"
        )
        print()
        print(resource_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
