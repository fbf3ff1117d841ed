"""The CUDA kernels without nvcc: NVRTC at first use, the driver API to launch.

When nvila_kernels._C was built without CUDA kernels (no nvcc, or NVILA_KERNELS_CUDA=0)
but a GPU and cuda-python are present, the "cuda" backend is served from here: the
torch-free csrc/cuda/<op>.cu sources are compiled with NVRTC for the device's arch
(host launchers are left out under __CUDACC_RTC__), the cubin is cached on disk
($NVILA_KERNELS_CACHE, default ~/.cache/nvila_kernels) under a hash of the sources,
options and NVRTC version, loaded with cuModuleLoadData and launched with
cuLaunchKernel on torch's current stream.

Everything else comes from _C's C++ code (csrc/torch/launch.cpp), the same code the
C++ launchers use: its nvila::<op>_cuda ops build the args struct from the tensors
(with their memory-safety checks), plan the launch with the op's <op>_launch_config
for this device's LaunchTarget, pick the kernel instances from the op's table in its
.cu file, and call Launcher.launch below with the struct's bytes, the plan and the
kernel name expressions. The instances NVRTC compiles are the same tables
(_C.kernels()). Without _C (a pure-Python install) there is no NVRTC path.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import os
import threading
from pathlib import Path

import torch

PACKAGE = Path(__file__).resolve().parent


def source_dir() -> Path:
    """csrc as installed beside the package (nvila_kernels/_csrc, see setup.py), else the checkout's."""
    installed = PACKAGE / "_csrc"
    return installed if installed.is_dir() else PACKAGE.parent / "csrc"


def cache_dir() -> Path:
    env = os.environ.get("NVILA_KERNELS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "nvila_kernels"


def kernel_names(ext=None) -> dict[str, tuple[str, ...]]:
    """{source (csrc/cuda/<source>): every kernel name expression of its ops' tables}, from _C."""
    if ext is None:
        from . import _C as ext
    out: dict[str, tuple[str, ...]] = {}
    for source, names in ext.kernels().values():
        out[source] = tuple(dict.fromkeys(out.get(source, ()) + tuple(names)))
    return out


# ---- NVRTC -------------------------------------------------------------------------

_lock = threading.RLock()
stats = {"compiles": 0}  # NVRTC compilations done by this process (the tests count them)


def _nvrtc():
    from cuda.bindings import nvrtc

    return nvrtc


def _driver():
    from cuda.bindings import driver

    return driver


def nvrtc_version() -> tuple[int, int]:
    nvrtc = _nvrtc()
    err, major, minor = nvrtc.nvrtcVersion()
    _nvrtc_check(err, "nvrtcVersion")
    return major, minor


def _nvrtc_check(err, what: str, log: str = "") -> None:
    if int(err) != 0:
        raise RuntimeError(f"NVRTC {what} failed: {err!r}" + (f"\n{log}" if log else ""))


def _sources(src_dir: Path) -> dict[str, bytes]:
    """Every file a kernel may include, by path relative to src_dir (hashed into the cache key)."""
    files = sorted([*src_dir.glob("cuda/*.cu"), *src_dir.glob("cuda/*.cuh"), *src_dir.glob("cuda/*.h")])
    files += sorted(src_dir.glob("include/nvila/*.h"))
    return {str(f.relative_to(src_dir)): f.read_bytes() for f in files}


def _options(arch: str, src_dir: Path) -> list[str]:
    # -default-device: the headers' unannotated inline helpers (launch planners, launcher
    # declarations) are taken as device functions, which NVRTC allows, and never called
    return [
        "--std=c++20",
        f"--gpu-architecture=sm_{arch}",
        "-default-device",
        f"-I{src_dir / 'include'}",
        f"-I{src_dir / 'cuda'}",
    ]


def _key(source: str, arch: str, src_dir: Path, names: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for part in (source, arch, *_options(arch, Path()), *names, repr(nvrtc_version())):
        h.update(part.encode() + b"\0")
    for rel, text in _sources(src_dir).items():
        h.update(rel.encode() + b"\0" + text + b"\0")
    return h.hexdigest()[:20]


def _compile(source: str, arch: str, src_dir: Path, names: tuple[str, ...]) -> tuple[bytes, dict[str, str]]:
    """NVRTC-compiles csrc/cuda/<source> for sm_<arch>: (cubin, {name expression: lowered name})."""
    nvrtc = _nvrtc()
    path = src_dir / "cuda" / source
    err, prog = nvrtc.nvrtcCreateProgram(path.read_bytes(), str(path).encode(), 0, [], [])
    _nvrtc_check(err, "nvrtcCreateProgram")
    try:
        for n in names:
            _nvrtc_check(nvrtc.nvrtcAddNameExpression(prog, n.encode())[0], f"nvrtcAddNameExpression({n})")
        opts = [o.encode() for o in _options(arch, src_dir)]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        _nvrtc_check(err, f"compiling {path} for sm_{arch}", log.decode(errors="replace").rstrip("\0 "))
        _, size = nvrtc.nvrtcGetCUBINSize(prog)
        cubin = b" " * size
        _nvrtc_check(nvrtc.nvrtcGetCUBIN(prog, cubin)[0], "nvrtcGetCUBIN")
        lowered = {}
        for n in names:
            err, low = nvrtc.nvrtcGetLoweredName(prog, n.encode())
            _nvrtc_check(err, f"nvrtcGetLoweredName({n})")
            lowered[n] = low.decode()
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    stats["compiles"] += 1
    return cubin, lowered


def cubin(source: str, arch: str, src_dir: Path | None = None) -> tuple[Path, dict[str, str]]:
    """The cached cubin of csrc/cuda/<source> for sm_<arch> (compiled on a miss), and its
    kernels' lowered names: <cache>/<stem>-<hash>-sm<arch>.cubin (+ .json)."""
    src_dir = src_dir or source_dir()
    names = kernel_names()[source]
    key = _key(source, arch, src_dir, names)
    path = cache_dir() / f"{Path(source).stem}-{key}-sm{arch}.cubin"
    meta = path.with_suffix(".json")
    with _lock:
        if path.exists() and meta.exists():
            return path, json.loads(meta.read_text())
        data, lowered = _compile(source, arch, src_dir, names)
        path.parent.mkdir(parents=True, exist_ok=True)
        for dst, blob in ((path, data), (meta, json.dumps(lowered, indent=1).encode())):
            tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, dst)  # atomic: concurrent processes never read half a file
        return path, lowered


# ---- driver API: load and launch ---------------------------------------------------


def _cu_check(err, what: str) -> None:
    if int(err) != 0:
        raise RuntimeError(f"CUDA driver {what} failed: {err!r}")


def arch_for(cc: tuple[int, int]) -> str:
    """The NVRTC target for a device: its own arch ('90a' on Hopper, for wgmma), else the newest
    arch NVRTC supports of the same major version (cubins run on later minors)."""
    nvrtc = _nvrtc()
    err, supported = nvrtc.nvrtcGetSupportedArchs()
    _nvrtc_check(err, "nvrtcGetSupportedArchs")
    want = 10 * cc[0] + cc[1]
    ok = [a for a in supported if a // 10 == cc[0] and a <= want]
    if not ok:
        raise RuntimeError(f"NVRTC {nvrtc_version()} cannot compile for compute capability {cc[0]}.{cc[1]}")
    arch = max(ok)
    return f"{arch}a" if arch == 90 else str(arch)


_devices: dict[int, tuple] = {}  # device index -> (context, arch, (cc, max dynamic smem, sm90a))
_functions: dict[tuple[int, str], object] = {}  # (device, name expression) -> CUfunction
_modules: dict[tuple[int, str], tuple] = {}  # (device, source) -> (CUmodule, lowered names)


def _device(index: int) -> tuple:
    with _lock:
        if index not in _devices:
            driver = _driver()
            _cu_check(driver.cuInit(0)[0], "cuInit")
            err, dev = driver.cuDeviceGet(index)
            _cu_check(err, "cuDeviceGet")
            err, ctx = driver.cuDevicePrimaryCtxRetain(dev)  # the context torch's runtime uses
            _cu_check(err, "cuDevicePrimaryCtxRetain")
            cc = torch.cuda.get_device_capability(index)
            arch = arch_for(cc)
            smem = torch.cuda.get_device_properties(index).shared_memory_per_block_optin
            _devices[index] = (ctx, arch, (10 * cc[0] + cc[1], smem, int(arch == "90a")))
        return _devices[index]


def _function(index: int, source: str, name: str):
    with _lock:
        fn = _functions.get((index, name))
        if fn is not None:
            return fn
        driver = _driver()
        ctx, arch, _ = _device(index)
        _cu_check(driver.cuCtxSetCurrent(ctx)[0], "cuCtxSetCurrent")
        if (index, source) not in _modules:
            path, lowered = cubin(source, arch)
            err, module = driver.cuModuleLoadData(path.read_bytes())
            _cu_check(err, f"cuModuleLoadData({path})")
            _modules[index, source] = (module, lowered)
        module, lowered = _modules[index, source]
        err, fn = driver.cuModuleGetFunction(module, lowered[name].encode())
        _cu_check(err, f"cuModuleGetFunction({name})")
        _functions[index, name] = fn
        return fn


def _cuda_index(device: str) -> int:
    d = torch.device(device)
    if d.type != "cuda":
        raise RuntimeError(f"x: expected a CUDA tensor, got {d}")
    return d.index if d.index is not None else torch.cuda.current_device()


class Launcher:
    """What _C's nvila::<op>_cuda ops call (csrc/torch/launch.cpp) to run a planned launch."""

    def target(self, device: str) -> tuple[int, int, int]:
        """The LaunchTarget (nvila/common.h) of `device`: (cc, max dynamic smem per block, sm90a)."""
        return _device(_cuda_index(device))[2]

    def launch(self, source, names, grid_x, grid_y, block, smem, args: bytes, device: str) -> None:
        """Launches the kernels `names` of csrc/cuda/<source>, in order, each with the args struct
        `args` (its bytes) as its one parameter, on torch's current stream of `device`."""
        index = _cuda_index(device)
        ctx, _, _ = _device(index)
        driver = _driver()
        stream = driver.CUstream(torch.cuda.current_stream(index).cuda_stream)
        struct = ctypes.create_string_buffer(args, len(args))
        params = (ctypes.c_void_p * 1)(ctypes.addressof(struct))  # one kernel parameter: the struct, by value
        for name in names:
            fn = _function(index, source, name)
            _cu_check(driver.cuCtxSetCurrent(ctx)[0], "cuCtxSetCurrent")
            if smem > 48 * 1024:
                attr = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
                _cu_check(driver.cuFuncSetAttribute(fn, attr, smem)[0], "cuFuncSetAttribute")
            err = driver.cuLaunchKernel(
                fn, grid_x, grid_y, 1, block, 1, 1, smem, stream, ctypes.addressof(params), 0
            )[0]  # fmt: skip
            _cu_check(err, f"cuLaunchKernel({name})")


# ---- availability and registration -------------------------------------------------


def unavailable_reason() -> str | None:
    """None if the NVRTC path can serve CUDA tensors here (GPU aside), else why not. Cheap: NVRTC
    itself is loaded at the first launch (a missing libnvrtc is reported then)."""
    if torch.version.cuda is None:
        return "this torch is a CPU-only build"
    if importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None:
        return "cuda-python is not installed (pip install cuda-python, or nvila-kernels[nvrtc])"
    if not (source_dir() / "cuda").is_dir():
        return f"the CUDA sources are not installed (looked in {source_dir()})"
    return None


def register(ext) -> None:
    """Serves _C's nvila::<op>_cuda ops through NVRTC (Launcher)."""
    ext.set_nvrtc_launcher(Launcher())
