"""Builds nvila_kernels._C: the CPU kernels and the CUDA-emulator build of the
CUDA kernels always; the real CUDA kernels when torch has CUDA and nvcc exists.

Environment switches:
  NVILA_KERNELS_CUDA=1|0     force / skip the CUDA kernels (default: auto)
  TORCH_CUDA_ARCH_LIST       CUDA archs (default: 8.0;8.6;8.9;9.0a, + 10.0a on nvcc >= 12.8)
  NVILA_KERNELS_NATIVE=1     compile the CPU kernels with -march=native (default: portable)
  MAX_JOBS                   parallel compile jobs (torch's ninja build)
"""

import glob
import os
import re
import shutil
import subprocess

from setuptools import setup

# The nvcc on PATH may be a wrapper outside the toolkit, which makes torch guess
# CUDA_HOME wrong; prefer the standard location when it exists.
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(ROOT, "csrc")


def rel(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(CSRC, pattern)))


def nvcc_version():
    home = cpp_extension.CUDA_HOME
    nvcc = os.path.join(home, "bin", "nvcc") if home else shutil.which("nvcc")
    if not nvcc or not os.path.exists(nvcc):
        return None
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def want_cuda():
    switch = os.environ.get("NVILA_KERNELS_CUDA", "").strip()
    version = nvcc_version()
    if switch == "0":
        return False, "skipped (NVILA_KERNELS_CUDA=0)"
    if torch.version.cuda is None:
        if switch == "1":
            raise RuntimeError("NVILA_KERNELS_CUDA=1 but this torch has no CUDA (torch.version.cuda is None)")
        return False, "skipped: this torch is a CPU-only build"
    if version is None:
        if switch == "1":
            raise RuntimeError("NVILA_KERNELS_CUDA=1 but nvcc was not found (set CUDA_HOME)")
        return False, "skipped: nvcc not found (set CUDA_HOME)"
    return True, f"nvcc {version[0]}.{version[1]} for torch CUDA {torch.version.cuda}"


def default_arch_list():
    archs = ["8.0", "8.6", "8.9", "9.0a"]
    version = nvcc_version()
    if version and version >= (12, 8):
        archs.append("10.0a")
    return ";".join(archs)


def build_extension():
    with_cuda, why = want_cuda()
    print(f"nvila_kernels: CUDA kernels {'built with ' + why if with_cuda else why}")
    cxx = ["-O3", "-std=c++20", "-fopenmp", "-Wno-unknown-pragmas", "-fvisibility=hidden"]
    if os.environ.get("NVILA_KERNELS_NATIVE") == "1":
        cxx.append("-march=native")
    include_dirs = [os.path.join(CSRC, "include")]
    sources = rel("cpu/*.cpp") + rel("emu/*_emu.cpp") + ["csrc/torch/ops_cpu.cpp", "csrc/torch/module.cpp"]
    defines = [("NVILA_TORCH_VERSION", f'"{torch.__version__}"')]
    if not with_cuda:
        return cpp_extension.CppExtension(
            "nvila_kernels._C",
            sources,
            include_dirs=include_dirs,
            define_macros=defines,
            extra_compile_args={"cxx": cxx},
            extra_link_args=["-fopenmp"],
        )
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", default_arch_list())
    archs = os.environ["TORCH_CUDA_ARCH_LIST"]
    defines += [
        ("NVILA_WITH_CUDA", "1"),
        ("NVILA_CUDA_ARCHS", f'"{archs}"'),
        ("NVILA_CUDA_VERSION", f'"{torch.version.cuda}"'),
    ]
    nvcc = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-Xptxas=-warn-spills"]
    return cpp_extension.CUDAExtension(
        "nvila_kernels._C",
        sources + rel("cuda/*.cu") + ["csrc/torch/ops_cuda.cpp"],
        include_dirs=include_dirs,
        define_macros=defines,
        extra_compile_args={"cxx": cxx, "nvcc": nvcc},
        extra_link_args=["-fopenmp"],
    )


setup(
    ext_modules=[build_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
