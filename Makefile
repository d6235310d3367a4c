# `make reproduce` and `make test` set up the virtual environment themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SCALE  ?= cpu
COCO   ?=
PYTEST_ARGS ?=

.PHONY: setup test test-slow lint bench reproduce clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@rm -f $(VENV)/.stamp-*
	@touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check huberkl tests benchmarks
	$(BIN)/ruff format --check huberkl tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks

reproduce: $(STAMP)
	$(BIN)/python -m huberkl.reproduce --scale $(SCALE) $(if $(COCO),--coco $(COCO))

clean:
	rm -rf $(VENV) .pytest_cache
