"""How nvila_kernels behaves as installed: without a compiled extension (a pure-Python
install), and with an extension built against another torch (detected from
_build_info.json before _C is imported, reported in one line with the fix)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "nvila_kernels"
pytestmark = pytest.mark.toolchain

# The checkout's editable install adds a meta-path finder that maps nvila_kernels (and
# nvila_kernels._C) to the checkout; the probe drops it to see only the installed copy.
_PROBE = r"""
import sys
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
import warnings, torch
warnings.simplefilter("always")
import nvila_kernels as nk
from nvila_kernels import backends
print("FILE", nk.__file__)
print("EXT", backends.state["ext"] is not None)
print(nk.info())
x = torch.randn(1, 4, 4, 8)
y = nk.spatial_compress(x, 2)  # automatic: cpu if loaded, else the reference (with a warning)
torch.testing.assert_close(y, nk.reference.spatial_compress(x, 2))
print("OK")
"""


def _installed_copy(tmp_path: Path, *, with_binary: bool, build_torch: str | None = None) -> Path:
    dst = tmp_path / "site" / "nvila_kernels"
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("__pycache__", "*.so", "_build_info.json"))
    if with_binary:
        for so in PKG.glob("_C.*"):
            shutil.copy2(so, dst / so.name)
        info = json.loads((PKG / "_build_info.json").read_text())
        if build_torch is not None:
            info["torch_version"] = build_torch
        (dst / "_build_info.json").write_text(json.dumps(info))
    return dst.parent


def _probe(site: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "NVILA_KERNELS_BACKEND")}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=site, env=env, capture_output=True, text=True, timeout=300
    )
    assert f"FILE {site / 'nvila_kernels' / '__init__.py'}" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module", autouse=True)
def _needs_a_build():
    if not any(PKG.glob("_C.*")) or not (PKG / "_build_info.json").exists():
        pytest.fail("nvila_kernels/_C and _build_info.json are missing: build the extension first (make build)")


def test_installed_copy_loads_the_extension(tmp_path):
    proc = _probe(_installed_copy(tmp_path, with_binary=True))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EXT True" in proc.stdout and "OK" in proc.stdout
    assert "compiled kernels not loaded" not in proc.stderr


def test_torch_mismatch_is_one_clear_line(tmp_path):
    proc = _probe(_installed_copy(tmp_path, with_binary=True, build_torch="2.0.0"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EXT False" in proc.stdout and "OK" in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if "compiled kernels not loaded" in ln]
    assert len(lines) == 1, proc.stderr
    assert "built against torch 2.0.0 but torch" in lines[0] and "--no-build-isolation" in lines[0]
    assert "undefined symbol" not in proc.stderr and "Traceback" not in proc.stderr
    assert "built against torch 2.0.0" in proc.stdout  # info() says it too


def test_pure_python_install_works_and_says_so(tmp_path):
    proc = _probe(_installed_copy(tmp_path, with_binary=False))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "EXT False" in proc.stdout and "OK" in proc.stdout
    assert "compiled extension: not available (this install has no compiled extension" in proc.stdout
    assert "compiled kernels not loaded" not in proc.stderr  # no binary is not an error
    assert "running the slow PyTorch reference" in proc.stderr  # but the fallback is not silent
