# The two quickstart targets need only python3 and make on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# `make demo` installs modelreg with the scikit-learn converters only (the `sklearn` extra),
# not the dev extras (torch, test and lint tools): the examples need no more.
DEMO_STAMP := $(VENV)/.installed-demo
# Real MLflow for the MLflow-format tests, in an environment of its own (it pins much of what
# modelreg's own environment would otherwise have to agree with); tests find it here.
MLFLOW_VENV := .venv-mlflow
MLFLOW_STAMP := $(MLFLOW_VENV)/.installed
# pytest workers (pytest-xdist): `auto` is one per CPU; `make unit PYTEST_WORKERS=0` runs serially.
PYTEST_WORKERS ?= auto
# loadgroup: the tests of a module that shares an expensive set-up run on one worker (see
# tests/conftest.py); all other tests are handed out one by one to whichever worker is free.
PYTEST_ARGS ?= -n $(PYTEST_WORKERS) --dist loadgroup

.PHONY: demo test lint typecheck unit system-deps bench bench-peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[sklearn]'
	touch $(DEMO_STAMP)

# modelreg goes in too (editable, with the mlflow extra): `import --from-mlflow` runs where
# MLflow is, as it would for a user moving off MLflow.
$(MLFLOW_STAMP): pyproject.toml
	test -x $(MLFLOW_VENV)/bin/python || $(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MLFLOW_VENV)/bin/python -m pip install --quiet 'mlflow>=2.9' onnx onnxruntime pandas \
	  scikit-learn -e '.[mlflow]'
	touch $(MLFLOW_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python examples/quickstart.py
	$(BIN)/python examples/handshake.py

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench

typecheck: $(STAMP)
	$(BIN)/mypy

# System pieces the tests set up for real: an SSH server and sshfs for the shared-mount tests
# (tests/test_shared_mount.py), Chromium for the browser tests of `modelreg ui`
# (tests/packaging/test_ui.py), from Debian's packages: installed here when missing and when
# this runs as root with apt-get (as CI does on a fresh machine). Where they cannot be, those
# tests are skipped, saying why.
SYSTEM_PACKAGES := openssh-server sshfs chromium
system-deps:
	@if ! command -v sshfs >/dev/null 2>&1 || [ ! -x /usr/sbin/sshd ] || \
	    ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $(SYSTEM_PACKAGES) for the shared-mount and browser tests"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null; } || \
	      echo "note: could not install $(SYSTEM_PACKAGES); the tests that need them will be skipped"; \
	  else \
	    echo "note: sshfs, sshd or chromium is missing; the tests that need them will be skipped"; \
	  fi; \
	fi

unit: $(STAMP) $(MLFLOW_STAMP) system-deps
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-peers: $(STAMP)
	$(BIN)/python -m bench.run --peers

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
