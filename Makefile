# Two entry points (see README): `make demo` runs the main job, `make test` runs every check.
# Both set up what they need on a fresh Debian 12 machine (root, Python 3.11).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo batch-demo test lint typecheck images unit bench bench-deps setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: the germline pipeline on the bundled demo data (two viruses, so two references: two runs).
demo: $(STAMP) images
	$(BIN)/genobatch run --input data/measles/samples.csv --fasta data/measles/MH356245.1.reference.fasta \
	    --outdir results/measles --work-dir work --ploidy 1
	$(BIN)/genobatch run --input data/sarscov2/samples.csv --fasta data/sarscov2/MN908947.3.fa \
	    --outdir results/sarscov2 --work-dir work --ploidy 1

batch-demo: $(STAMP) images
	$(BIN)/python examples/batch_demo.py

lint: $(STAMP)
	$(BIN)/ruff check genobatch tests bench examples
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider --durations=30  # the slowest tests, to keep CI well under 25 minutes

# The tool images (podman): built once, rebuilt by `genobatch images build` when their Containerfiles change.
images: $(STAMP)
	@if command -v podman >/dev/null; then \
	    $(BIN)/genobatch images list >/dev/null 2>&1 || $(BIN)/genobatch images build; \
	else echo "images: podman is not installed (scripts/setup-podman.sh); jobs will run the host's tools"; fi

test: lint typecheck images unit

# Debian's tools the benchmarks need: Snakemake 7 (a peer) and dwgsim (simulated reads), for bench/pipeline.py.
bench-deps:
	@command -v snakemake >/dev/null && command -v dwgsim >/dev/null || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq snakemake dwgsim; }

bench: $(STAMP) bench-deps
	$(BIN)/python -m bench.engine_overhead
	$(BIN)/python -m bench.engine_floor
	$(BIN)/python -m bench.endpoint
	$(BIN)/python -m bench.input_checks
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.containers
	$(BIN)/python -m bench.slurm

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
