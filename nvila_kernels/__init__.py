"""nvila_kernels: fused kernels of NVILA for PyTorch (CPU C++, CUDA, Triton).

Works with no compiled extension at all (the PyTorch reference backend), and
says what it found: `python -m nvila_kernels` or `nvila_kernels.info()`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

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
    merge_compress,
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
    "merge_compress",
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


def _load_extension() -> None:
    """Load nvila_kernels._C if it exists and was built for the running torch.

    The build writes _build_info.json beside _C (setup.py); a _C built against another
    torch is not even imported (its C++ symbols may not match: an undefined-symbol error
    at best, a crash at worst). Any failure leaves the reference and Triton backends and
    one warning line that says how to fix it.
    """
    here = Path(__file__).resolve().parent
    has_binary = any(here.glob("_C.*"))
    build_info = here / "_build_info.json"
    fix = (
        "rebuild it for this torch: `pip install --no-build-isolation --force-reinstall --no-deps nvila-kernels` "
        "(from a checkout: `make build`)"
    )
    if not has_binary:
        backends.state["ext_error"] = (
            "this install has no compiled extension (built with NVILA_KERNELS_NO_BUILD=1, or its compile failed); "
            "reinstall with a C++ compiler (and nvcc for CUDA): pip install --no-build-isolation nvila-kernels"
        )
        return
    if build_info.exists():
        built = json.loads(build_info.read_text()).get("torch_version")
        if built != torch.__version__:
            backends.state["ext_error"] = (
                f"nvila_kernels._C was built against torch {built} but torch {torch.__version__} is running; {fix}"
            )
            warnings.warn(f"nvila_kernels: compiled kernels not loaded: {backends.state['ext_error']}", stacklevel=3)
            return
    try:
        from . import _C
    except ImportError as e:  # no compiled extension: reference (and Triton) only
        msg = f"{type(e).__name__}: {e}"
        if "undefined symbol" in str(e):
            msg = f"nvila_kernels._C does not match torch {torch.__version__} ({e}); {fix}"
        backends.state["ext_error"] = msg
        if has_binary:  # a binary that does not load is a problem; no binary is a pure-Python install
            warnings.warn(f"nvila_kernels: compiled kernels not loaded: {msg}", stacklevel=3)
        return
    backends.state["ext"] = _C


_load_extension()


def _setup_nvrtc() -> None:
    """Without CUDA kernels in _C, serve the cuda backend with NVRTC where it can run."""
    if backends.ext_has_cuda():
        return
    from . import _nvrtc

    reason = _nvrtc.unavailable_reason()
    if reason is None:
        _nvrtc.register(_ops._lib)
        backends.state["nvrtc"] = True
    backends.state["nvrtc_error"] = reason


_setup_nvrtc()

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
    if backends.state["nvrtc"]:
        from . import _nvrtc

        lines.append(
            f"CUDA kernels: compiled at first use with NVRTC (cuda-python) for the GPU's arch, "
            f"cached in {_nvrtc.cache_dir()}"
        )
    elif not backends.ext_has_cuda():
        lines.append(f"CUDA kernels through NVRTC: unavailable ({backends.state['nvrtc_error']})")
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
