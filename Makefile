# The README's commands. `make demo` and `make test` do their own set-up.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.14.1
export CUDA_HOME ?= /usr/local/cuda
# Tests that use the Triton interpreter on CPU tensors need it set before import.
TEST_ENV := TRITON_INTERPRET=1

.PHONY: demo test build lint format bench install-check clean eval-tiny

$(VENV)/.deps:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q $(TORCH) numpy ninja pytest pytest-xdist hypothesis ruff clang-format pillow matplotlib pytest-benchmark safetensors tokenizers av build transformers cuda-python
	touch $@

# The extension is rebuilt whenever a C++/CUDA source or setup.py changes.
$(VENV)/.built: $(VENV)/.deps setup.py $(shell find csrc -type f 2>/dev/null)
	NVILA_KERNELS_REQUIRE_BUILD=1 $(PY) -m pip install -q --no-build-isolation -e .
	$(PY) -m nvila_kernels
	touch $@

build: $(VENV)/.built

demo: build
	$(PY) -m nvila.demo

# held-out accuracy of the shipped tiny model, per backend and in FP8 mode
eval-tiny: build
	$(PY) -m nvila.eval_tiny --fp8

test: build
	$(TEST_ENV) $(PY) -m pytest -q -n 2 --dist loadgroup tests

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

# every install path (wheel + sdist, pure Python, CPU-only torch), from scratch dirs
install-check: build
	bash .ci/install_paths.sh

clean:
	rm -rf build dist *.egg-info nvila_kernels/_C*.so
