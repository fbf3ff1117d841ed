"""Every benchmark case of the kernel ops, in one table: which shapes each op is timed on,
in which run modes (tiny / quick / standard / full), and which cases also time the
torch.compile peer. The bench scripts read their cases from here (`cases(op, mode)`)."""

from __future__ import annotations

import dataclasses

import torch

TINY = ("tiny",)
MODEL = ("quick", "standard", "full")  # the model shapes
NOT_QUICK = ("standard", "full")
ALL = (*TINY, *MODEL)


@dataclasses.dataclass(frozen=True)
class Case:
    """One case of an op. `note` names it in the tables; `modes` are the run modes that
    time it; `compile`: the modes that also time torch.compile of the eager composition
    (10-20 s to compile per shape on a CPU); `sweep`: the sweep the case is a point of
    ("" = a model shape); `args`: what the op's script builds its inputs from; `devices`:
    where it is timed (a GPU's peak shape would take minutes a call on a CPU)."""

    op: str
    note: str
    modes: tuple[str, ...]
    args: dict
    compile: tuple[str, ...] = ALL
    sweep: str = ""
    devices: tuple[str, ...] = ("cpu", "cuda")  # the device types it is timed on


def _spatial_compress() -> list[Case]:
    # shape (B, H, W, C), k, dtype; --quick compiles the first shape only
    f32, bf16 = torch.float32, torch.bfloat16
    return [
        Case("spatial_compress", "NVILA-8B, k=2", MODEL, dict(shape=(1, 96, 128, 3456), k=2, dtype=f32)),
        Case("spatial_compress", "NVILA-8B, k=2", MODEL, dict(shape=(1, 96, 128, 3456), k=2, dtype=bf16), NOT_QUICK),
        Case("spatial_compress", "NVILA-Lite, k=3", MODEL, dict(shape=(1, 32, 32, 1152), k=3, dtype=f32), NOT_QUICK),
        Case("spatial_compress", "NVILA-Lite, k=3", MODEL, dict(shape=(1, 32, 32, 1152), k=3, dtype=bf16), NOT_QUICK),
        Case("spatial_compress", "tiny, k=2", TINY, dict(shape=(1, 8, 12, 48), k=2, dtype=f32)),
        Case("spatial_compress", "tiny, k=3", TINY, dict(shape=(1, 7, 7, 16), k=3, dtype=bf16), ()),
    ]


def _temporal_pool() -> list[Case]:
    # NVILA-8B-Video: 16x16 tokens per frame after the 2x2 projector, Qwen2-7B width, groups of 8
    out = []
    for dtype in (torch.bfloat16, torch.float32):
        first = dtype == torch.bfloat16
        for frames, modes in ((256, NOT_QUICK), (64, ("quick",))):
            out.append(
                Case(
                    "temporal_pool",
                    f"NVILA-8B-Video, {frames} frames, group 8",
                    modes,
                    dict(frames=frames, tokens=(16, 16), hidden=3584, group=8, dtype=dtype),
                    ALL if first else NOT_QUICK,
                )
            )
        tiny = dict(frames=16, tokens=(4, 4), hidden=64, group=8, dtype=dtype)
        out.append(Case("temporal_pool", "tiny, 16 frames", TINY, tiny, ALL if first else ()))
    return out


def _merge_compress() -> list[Case]:
    # image (W, H), tile tokens h = w, C, k, dtype
    return [
        Case(
            "merge_compress", "NVILA-8B 1920x1080, k=2", MODEL, dict(image=(1920, 1080), h=32, C=1152, k=2, dtype=d), c
        )
        for d, c in ((torch.float32, ALL), (torch.bfloat16, NOT_QUICK))
    ] + [
        Case(
            "merge_compress", "tiny 1920x1080, k=2", TINY, dict(image=(1920, 1080), h=2, C=16, k=2, dtype=torch.float32)
        ),
        Case(
            "merge_compress",
            "tiny 1024x1024, k=3",
            TINY,
            dict(image=(1024, 1024), h=4, C=8, k=3, dtype=torch.bfloat16),
            (),
        ),
    ]


def _multiscale_tile() -> list[Case]:
    # NVILA-8B's plan (scales 448/896/1344); tiny: scales 28/56/84 of 28-pixel tiles.
    # Both model images in --quick too: the targets are per image.
    nvila_8b, tiny = dict(scales=None, tile=None), dict(scales=(28, 56, 84), tile=28)
    sweep = "multiscale_tile GB/s vs megapixels"
    out = [
        Case("multiscale_tile", "NVILA-8B", MODEL, dict(image=image, **nvila_8b), ())
        for image in ((1920, 1080), (4032, 3024))
    ]
    out.append(Case("multiscale_tile", "tiny", TINY, dict(image=(64, 48), **tiny), ()))
    points = {  # the sweep's image sizes, by mode
        "tiny": ((64, 48), (128, 96)),
        "quick": ((640, 480), (1280, 720), (2560, 1440)),
        "standard": ((640, 480), (1280, 720), (1920, 1080), (2560, 1440), (4032, 3024)),
        "full": ((320, 240), (640, 480), (1280, 720), (1920, 1080), (2560, 1440), (4032, 3024), (8000, 6000)),
    }
    for image in sorted({size for sizes in points.values() for size in sizes}, key=lambda s: s[0] * s[1]):
        modes = tuple(m for m, sizes in points.items() if image in sizes)
        plan = tiny if modes == TINY else nvila_8b
        out.append(
            Case(
                "multiscale_tile",
                "tiny" if modes == TINY else "NVILA-8B",
                modes,
                dict(image=image, **plan),
                sweep=sweep,
            )
        )
    return out


def _fp8() -> list[Case]:
    # fp8_gemm (M, N, K) on Qwen2-7B (NVILA-8B's LLM) linears; --quick compiles the first shape only
    gemm = [
        ("decode, 4096x4096 proj", 1, 4096, 4096),
        ("decode, Qwen2-7B MLP up", 1, 18944, 3584),
        ("decode, Qwen2-7B MLP down", 1, 3584, 18944),
        ("prefill 1024, 4096x4096", 1024, 4096, 4096),
    ]
    out = [
        Case("fp8_gemm", note, MODEL, dict(M=M, N=N, K=K), ALL if i == 0 else NOT_QUICK)
        for i, (note, M, N, K) in enumerate(gemm)
    ]
    # FP8 tensor-core peak (TFLOP/s and % of the GPU's dense FP8 peak beside torch._scaled_mm)
    out.append(Case("fp8_gemm", "GPU peak, 8192^3", MODEL, dict(M=8192, N=8192, K=8192), (), devices=("cuda",)))
    out += [
        Case("fp8_gemm", "tiny decode", TINY, dict(M=1, N=64, K=96)),
        Case("fp8_gemm", "tiny prefill", TINY, dict(M=40, N=48, K=80), ()),
    ]
    # the M sweep (roofline plot): how the cost grows from decode to prefill
    sweep_m = {
        "tiny": (1, 8),
        "quick": (1, 16, 128),
        "standard": (1, 4, 16, 64, 256),
        "full": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
    }
    for M in sorted({M for ms in sweep_m.values() for M in ms}):
        modes = tuple(m for m, ms in sweep_m.items() if M in ms)
        for n, in_modes in ((128, ("tiny",)), (4096, MODEL)):
            if in_modes := tuple(m for m in modes if m in in_modes):
                sweep = f"fp8_gemm M at {n}x{n}"
                out.append(Case("fp8_gemm", f"M sweep, {n}x{n}", in_modes, dict(M=M, N=n, K=n), NOT_QUICK, sweep))
    # fp8_quantize: dynamic per-tensor E4M3 of an activation
    out.append(Case("fp8_quantize", "activation, dynamic", MODEL, dict(shape=(1024, 4096), dtype=torch.bfloat16)))
    out.append(Case("fp8_quantize", "tiny activation", TINY, dict(shape=(16, 64), dtype=torch.bfloat16)))
    return out


CASES: tuple[Case, ...] = (*_spatial_compress(), *_temporal_pool(), *_merge_compress(), *_multiscale_tile(), *_fp8())
OPS = tuple(dict.fromkeys(c.op for c in CASES))


def cases(op: str, mode: str, device: str = "cpu") -> list[Case]:
    """The cases of `op` timed in `mode` on `device` (a device type), in table order."""
    return [c for c in CASES if c.op == op and mode in c.modes and device in c.devices]
