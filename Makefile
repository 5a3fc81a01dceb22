# The two quickstart targets need only python3 and make on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# `make demo` installs modelreg with the scikit-learn converters only (the `sklearn` extra),
# not the dev extras (torch, test and lint tools): the examples need no more.
DEMO_STAMP := $(VENV)/.installed-demo
# pytest workers (pytest-xdist): `auto` is one per CPU; `make unit PYTEST_WORKERS=0` runs serially.
PYTEST_WORKERS ?= auto
# loadgroup: the tests of a module that shares an expensive set-up run on one worker (see
# tests/conftest.py); all other tests are handed out one by one to whichever worker is free.
PYTEST_ARGS ?= -n $(PYTEST_WORKERS) --dist loadgroup

.PHONY: demo test lint typecheck unit bench bench-peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[sklearn]'
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python examples/quickstart.py
	$(BIN)/python examples/handshake.py

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-peers: $(STAMP)
	$(BIN)/python -m bench.run --peers

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
