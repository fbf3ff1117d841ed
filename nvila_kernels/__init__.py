"""nvila_kernels: fused kernels of NVILA for PyTorch (CPU C++, CUDA, Triton).

Works with no compiled extension at all (the PyTorch reference backend), and
says what it found: `python -m nvila_kernels` or `nvila_kernels.info()`.
"""

from __future__ import annotations

import torch

from . import (  # noqa: F401  (_ops defines the op schemas first)
    _ops,
    backends,
    layers,  # noqa: E402
    reference,
)
from .functional import (
    fp8_gemm,
    fp8_quantize,
    multiscale_merge,
    multiscale_tile,
    multiscale_tile_batch,
    spatial_compress,
    temporal_pool,
)

__version__ = "0.1.0"
__all__ = [
    "spatial_compress",
    "temporal_pool",
    "multiscale_merge",
    "multiscale_tile",
    "multiscale_tile_batch",
    "fp8_quantize",
    "fp8_gemm",
    "layers",
    "info",
    "reference",
    "backends",
    "__version__",
]

try:
    from . import _C

    backends.state["ext"] = _C
except ImportError as e:  # no compiled extension: reference (and Triton) only
    backends.state["ext_error"] = f"{type(e).__name__}: {e}"

if backends.triton_installed():
    try:
        from . import triton as _triton_kernels  # noqa: F401

        backends.state["triton"] = True
    except Exception as e:  # pragma: no cover - depends on the installed triton
        backends.state["triton_error"] = f"{type(e).__name__}: {e}"
else:
    backends.state["triton_error"] = "the triton package is not installed"


def info() -> str:
    """What this installation can run: versions, backends, CUDA archs, GPU."""
    ext = backends.state["ext"]
    build = ext.build_info() if ext is not None else None
    lines = [
        f"nvila_kernels {__version__}",
        f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})",
    ]
    if build is None:
        lines.append(f"compiled extension: not available ({backends.state['ext_error']})")
    else:
        lines.append(f"compiled extension: built against torch {build['torch_version']}")
        archs = build["cuda_archs"] if build["cuda"] else "none (built without CUDA)"
        lines.append(f"compiled CUDA archs: {archs}")
    gpu = torch.cuda.is_available()
    lines.append(f"GPU: {torch.cuda.get_device_name() if gpu else 'none'}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if gpu else [])
    for b in backends.BACKENDS:
        where = [d.type for d in devices if backends.unavailable_reason(b, d) is None]
        if where:
            lines.append(f"backend {b:<9} available on {', '.join(where)}")
            continue
        native = torch.device("cuda" if b in ("cuda", "triton") else "cpu")
        reason = None if native.type == "cuda" and not gpu else backends.unavailable_reason(b, native)
        if reason is None and not gpu:  # the kernels are there, the device is not
            reason = "no CUDA GPU present"
            if b == "triton":
                reason += " (set TRITON_INTERPRET=1 before import to run it on CPU tensors)"
        lines.append(f"backend {b:<9} unavailable: {reason}")
    return "\n".join(lines)
