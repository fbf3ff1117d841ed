"""The docs stay true: docs/API.md is what docs/gen_api.py generates from the current
docstrings, and every python block of docs/INTEGRATION.md runs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))

import gen_api  # noqa: E402


def test_api_reference_is_up_to_date():
    assert (ROOT / "docs" / "API.md").read_text() == gen_api.render(), "stale docs/API.md: run python docs/gen_api.py"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.slow  # each example in a fresh interpreter
@pytest.mark.parametrize("index", range(len(_python_blocks(ROOT / "docs" / "INTEGRATION.md"))))
def test_integration_example_runs(index):
    code = _python_blocks(ROOT / "docs" / "INTEGRATION.md")[index]
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"example {index} failed:\n{code}\n{proc.stderr[-3000:]}"
