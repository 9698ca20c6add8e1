# make demo: fine-tune on the emotion dataset, evaluate, predict.   make test: the whole test suite.
# make test-fast: the suite without the tests marked slow (real model on real data, Ray, torchrun, and the files in
# conftest.SLOW_FILES: kill and rerun, servers, engines, tune), for the inner loop.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bertfit-installed
# torch is installed on its own, first, so that pip never pulls a second (CUDA) build as a dependency.
TORCH ?= torch==2.13.0

.PHONY: install demo test test-fast lint clean

# two workers; a test file is one unit of work (tests/conftest.py: the tests that start processes are one unit)
PYTEST := $(PY) -m pytest -n 2 --dist loadfile

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock -r requirements-dev.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

demo: install
	@PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

test: install
	$(PYTEST)

test-fast: install
	$(PYTEST) -m 'not slow'

lint: install
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts

clean:
	rm -rf demo_out .pytest_cache
