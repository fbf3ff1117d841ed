"""The vLLM plugin's tests: run in the vLLM venv by `make vllm-check` (vllm-cpu on CPU). The
main venv has no vllm: there these files are not collected (the rest of `make test` never
needs vllm)."""

import importlib.util
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

if importlib.util.find_spec("vllm") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    sys.path.insert(0, HERE)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on CPU (default: 4)


@pytest.fixture(scope="session")
def checkpoint() -> str:
    """The shipped tiny model (its LLM has heads of 32, which vLLM's CPU attention needs)."""
    import nvila

    return nvila.TINY_MODEL
