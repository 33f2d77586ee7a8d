# ssa-experiments: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export WANDB_MODE ?= offline

.PHONY: help install quickstart test test-fast lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install the package with its dev tools

quickstart: install  ## the main job: a reduced Figure-1 ablation on digits (offline, CPU), then its table
	$(PY) -m ssa_experiments.train -m experiment=quickstart method=dense sparsity=0
	$(PY) -m ssa_experiments.train -m experiment=quickstart
	$(PY) -m ssa_experiments.aggregate outputs/quickstart --csv outputs/quickstart/runs.csv

test: install  ## run the whole test suite (what CI runs)
	$(PY) -m pytest -q

test-fast: install  ## the tests without the subprocess end-to-end sweeps
	$(PY) -m pytest -q -m "not slow"

lint: install  ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install  ## benchmarks: print ratios against plain PyTorch (see README, Performance)
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_masks.py
	$(PY) benchmarks/bench_loop.py
	$(PY) benchmarks/bench_sweep.py

clean:  ## remove outputs and the parent cache (keeps .venv)
	rm -rf outputs .cache
