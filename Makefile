# Two entry points do everything on a fresh machine (Python 3.11, no GPU):
#   make demo    set up .venv, build the extension, run `slt-hw demo`
#   make test    set up .venv, build the extension, ruff, then the test suite (which also
#                builds a test-only copy with the AVX-512 kernels on SIMDe: tests/avx512_emulation.py)
# Set-up is incremental: the venv is reused, packages reinstall when constraints change,
# the extension rebuilds when its sources change.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DEPS   := $(VENV)/.deps-installed
BUILT  := $(VENV)/.ext-built
NATIVE_SOURCES := $(shell find csrc -type f -not -path "*/__pycache__/*") CMakeLists.txt setup.py pyproject.toml
PYTEST_ARGS ?=

.PHONY: demo test lint build info bench clean

demo: $(BUILT)
	$(VENV)/bin/slt-hw demo

test: $(BUILT) lint
	SLT_HW_REQUIRE_CPP=1 SLT_HW_REQUIRE_AVX512_EMULATION=1 $(PY) -P -m pytest $(PYTEST_ARGS)

lint: $(DEPS)
	$(VENV)/bin/ruff check .

info: $(BUILT)
	$(VENV)/bin/slt-hw info

build: $(BUILT)

# Benchmarks are not tests: they print tables, write bench/results/*.csv, and never gate CI.
bench: $(BUILT)
	$(PY) bench/bench_regenerate.py
	$(PY) bench/bench_cpu_bounds.py
	$(PY) bench/bench_cpu_linear.py
	$(PY) bench/bench_cpu_conv.py
	$(PY) bench/conv_int8_error.py
	$(PY) bench/bench_mha.py
	$(PY) -P -m pytest bench/test_bench_linear.py --benchmark-enable --benchmark-group-by=param:case -q

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch comes first, pinned, so nothing later can pull a CUDA build of it.
$(DEPS): constraints.txt requirements-dev.txt | $(VENV)/bin/python
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet -c constraints.txt torch
	$(PIP) install --quiet -c constraints.txt -r requirements-dev.txt
	touch $@

# --no-build-isolation: build with the pinned tools above, never a fresh (CUDA) torch.
$(BUILT): $(DEPS) $(NATIVE_SOURCES)
	SLT_HW_REQUIRE_CPP=1 $(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

clean:
	rm -rf build dist *.egg-info slt_hw/_C*.so $(VENV)
