# Two entry points (see README): `make demo` runs the main job, `make test` runs every check.
# Both set up what they need on a fresh Debian 12 machine (root, Python 3.11).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/batch_demo.py

lint: $(STAMP)
	$(BIN)/ruff check genobatch tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench.engine_overhead

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
