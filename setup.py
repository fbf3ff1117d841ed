"""Builds nvila_kernels._C: the CPU kernels and the CUDA-emulator build of the
CUDA kernels always; the real CUDA kernels when torch has CUDA and nvcc exists.

Environment switches:
  NVILA_KERNELS_NO_BUILD=1   build nothing: a pure-Python install (reference and Triton backends)
  NVILA_KERNELS_REQUIRE_BUILD=1  a failed compile fails the install (default: it warns and
                             installs pure Python; `make` sets this, so CI never hides a break)
  NVILA_KERNELS_CUDA=1|0     force / skip the CUDA kernels (default: auto)
  TORCH_CUDA_ARCH_LIST       CUDA archs (default: csrc/cuda_archs.txt, + 10.0a on nvcc >= 12.8)
  NVILA_KERNELS_NATIVE=1     compile the CPU kernels with -march=native (default: portable)
  MAX_JOBS                   parallel compile jobs (torch's ninja build)
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

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
    with open(os.path.join(CSRC, "cuda_archs.txt")) as f:
        archs = [line.strip() for line in f if line.strip() and not line.startswith("#")][0].split(";")
    version = nvcc_version()
    if version and version >= (12, 8):
        archs.append("10.0a")
    return ";".join(archs)


def build_extension(with_cuda, why):
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


class BuildExt(cpp_extension.BuildExtension):
    """torch's ninja build, plus: the time it took, nvila_kernels/_build_info.json beside
    the extension (the torch it was built against: nvila_kernels checks it before
    loading _C), and a pure-Python install when the compile fails (unless
    NVILA_KERNELS_REQUIRE_BUILD=1)."""

    def build_extensions(self):
        t0 = time.perf_counter()
        try:
            super().build_extensions()
        except Exception as e:
            if os.environ.get("NVILA_KERNELS_REQUIRE_BUILD") == "1":
                raise
            print(
                f"nvila_kernels: WARNING: building the compiled kernels failed ({type(e).__name__}: {e}); "
                "installing pure Python (reference and Triton backends only). Set NVILA_KERNELS_REQUIRE_BUILD=1 "
                "to make this an error.",
                file=sys.stderr,
            )
            self.extensions = []
            return
        seconds = time.perf_counter() - t0
        ext = self.extensions[0]
        info = {
            "torch_version": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cuda": any(str(src).endswith(".cu") for src in ext.sources),
            "cuda_archs": os.environ.get("TORCH_CUDA_ARCH_LIST", "") if WITH_CUDA else "",
            "build_seconds": round(seconds, 1),
            "max_jobs": os.environ.get("MAX_JOBS") or str(os.cpu_count()),
        }
        path = os.path.join(os.path.dirname(self.get_ext_fullpath(ext.name)), "_build_info.json")
        with open(path, "w") as f:
            json.dump(info, f, indent=1)
        print(f"nvila_kernels: extension built in {seconds:.0f} s ({info['max_jobs']} jobs); wrote {path}")

    def copy_extensions_to_source(self):
        super().copy_extensions_to_source()  # in-place / editable builds: _C next to the sources
        if self.extensions:
            build_py = self.get_finalized_command("build_py")
            inplace_file, regular_file = self._get_inplace_equivalent(build_py, self.extensions[0])
            src = os.path.join(os.path.dirname(regular_file), "_build_info.json")
            self.copy_file(src, os.path.join(os.path.dirname(inplace_file), "_build_info.json"), level=self.verbose)

    def get_outputs(self):
        outputs = super().get_outputs()
        if self.extensions:
            outputs.append(os.path.join(os.path.dirname(self.get_ext_fullpath("nvila_kernels._C")), "_build_info.json"))
        return outputs


class BuildPy(_build_py):
    """Also installs the torch-free CUDA sources as nvila_kernels/_csrc (cuda/, include/nvila/):
    without a compiled extension they are compiled at first use with NVRTC (nvila_kernels/_nvrtc.py)."""

    def run(self):
        super().run()
        for pattern in ("cuda/*.cu", "cuda/*.cuh", "cuda/*.h", "include/nvila/*.h"):
            for src in rel(pattern):
                dst = os.path.join(self.build_lib, "nvila_kernels", "_csrc", os.path.relpath(src, "csrc"))
                self.mkpath(os.path.dirname(dst))
                self.copy_file(src, dst)


NO_BUILD = os.environ.get("NVILA_KERNELS_NO_BUILD") == "1"
if NO_BUILD:
    print("nvila_kernels: NVILA_KERNELS_NO_BUILD=1: pure-Python install, no compiled kernels")
    WITH_CUDA = False
    EXTENSIONS = []
else:
    WITH_CUDA, _why = want_cuda()
    EXTENSIONS = [build_extension(WITH_CUDA, _why)]

setup(
    ext_modules=EXTENSIONS,
    cmdclass={"build_ext": BuildExt.with_options(use_ninja=True), "build_py": BuildPy},
)
