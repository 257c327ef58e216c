# Two commands: `make demo` runs the main job, `make test` runs the tests.
# Each installs what it needs first (a .venv with the CPU build of torch).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
STAMP   := $(VENV)/.installed

.PHONY: install test test-portable test-all demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(BIN)/python -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.endswith('+cpu') else 'torch is not the CPU build: ' + v)"
	touch $(STAMP)

# The numeric tests once more with other CPUs' code paths: torch's AVX2 kernels (not AVX-512),
# numba compiled for a generic x86-64 into an empty cache. A suite green only on the
# developer's CPU is not green.
NUMERIC_TESTS := tests/test_fbank.py tests/test_scan.py tests/test_models_fused.py tests/test_models.py \
	tests/test_official_parity.py tests/test_layer_outputs.py tests/test_inference.py \
	tests/test_bimamba_train.py tests/test_scan_export.py tests/test_band_pooling.py tests/test_lengths.py \
	tests/test_transformers_adapter.py tests/test_native_embed.py tests/test_dynamic_padding.py \
	tests/test_mixer_groups.py tests/test_kernel_math.py tests/test_workspace.py

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-portable

test-portable: install
	cache=$$(mktemp -d) && trap 'rm -rf "$$cache"' EXIT && \
	ATEN_CPU_CAPABILITY=avx2 NUMBA_CPU_NAME=generic NUMBA_CACHE_DIR=$$cache \
	$(BIN)/python -m pytest -q -p no:cacheprovider $(NUMERIC_TESTS)

test-all: install
	$(BIN)/python -m pytest -q -m '' $(PYTEST_ARGS)

demo: install
	$(BIN)/ssamba demo $(DEMO_ARGS)

bench: install
	$(BIN)/ssamba bench --mode inference train --import-order --out bench/results
	$(BIN)/ssamba bench --batch 16 --tokens 512 --attention sdpa --out bench/results/batch16
	$(BIN)/ssamba bench --mode inference train --batch 16 --frames 200 --depth 6 --attention sdpa \
		--out bench/results/pretraining_shape

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
