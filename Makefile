# Two commands: `make demo` runs the main job, `make test` runs the tests.
# Each installs what it needs first (a .venv with the CPU build of torch).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
STAMP   := $(VENV)/.installed

.PHONY: install test test-all demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(BIN)/python -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.endswith('+cpu') else 'torch is not the CPU build: ' + v)"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: install
	$(BIN)/python -m pytest -q -m '' $(PYTEST_ARGS)

demo: install
	$(BIN)/ssamba demo $(DEMO_ARGS)

bench: install
	$(BIN)/ssamba bench --mode inference train --out bench/results

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
