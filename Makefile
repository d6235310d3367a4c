# `make reproduce` and `make test` set up the virtual environment themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SCALE  ?= cpu
COCO   ?=
PART   ?=
PYTEST_ARGS ?=
# The numerics-heavy tests (losses, toy solvers/grid/data/theory, noise fits, stats,
# params/interpret, input checks): `make test-paths` reruns them on two other math code
# paths of this CPU, as another CPU would take them: MKL's conditional numerical
# reproducibility mode (MKL_CBWR=COMPATIBLE) and ATen's non-vectorised kernels
# (ATEN_CPU_CAPABILITY=default). Both are read when torch loads: one pytest process each.
PATH_TESTS ?= tests/test_losses.py tests/test_stats.py tests/toy/test_solvers.py \
	tests/toy/test_grid.py tests/toy/test_data.py tests/toy/test_theory.py \
	tests/toy/test_analysis.py tests/test_distributions.py tests/noise/test_families.py tests/noise/test_matching.py \
	tests/noise/test_truncated_ci.py tests/noise/test_validation.py tests/test_params.py \
	tests/test_interpret.py tests/test_figure1.py \
	tests/test_cli.py::test_input_checks_raise_input_error

.PHONY: setup test test-integration test-paths test-slow lint bench reproduce clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@rm -f $(VENV)/.stamp-*
	@touch $@

# Two workers, a test file each (module fixtures build once): 3.3 min on 2 cores, 4.9 serial.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

# Subprocesses, two-process training, whole commands end to end: one process, no workers.
test-integration: $(STAMP)
	$(BIN)/python -m pytest -q -m integration $(PYTEST_ARGS)

test-paths: $(STAMP)
	MKL_CBWR=COMPATIBLE $(BIN)/python -m pytest -q $(PATH_TESTS) $(PYTEST_ARGS)
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -q $(PATH_TESTS) $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check huberkl tests benchmarks
	$(BIN)/ruff format --check huberkl tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks

reproduce: $(STAMP)
	$(BIN)/python -m huberkl.reproduce --scale $(SCALE) $(if $(COCO),--coco $(COCO)) $(if $(PART),--part $(PART))

clean:
	rm -rf $(VENV) .pytest_cache
