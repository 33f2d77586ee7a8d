# ssa-experiments: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export WANDB_MODE ?= offline
# pip installs with --no-compile (torch alone is thousands of files: ~1 min of byte-compiling on 2 cores), and
# Python then writes the bytecode of what is imported on first use, even where the shell disables it.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help install quickstart figures study field test test-fast lint docs bench gpu-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --no-compile -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install the package with its dev tools

quickstart: install  ## the main job: 5 methods + a tau0 sweep on digits, figures; then MNIST-1D's second table (offline, CPU)
	$(PY) -m ssa_experiments.cli.train -m experiment=quickstart
	$(PY) -m ssa_experiments.cli.train -m experiment=quickstart method=temperature_annealing \
		method.initial_temperature=0.25,1.0
	$(PY) -m ssa_experiments.cli.aggregate outputs/quickstart --csv outputs/quickstart/runs.csv --paired one_shot
	$(PY) -m ssa_experiments.cli.figures curves --runs outputs/quickstart/runs.csv --out outputs/quickstart/figures
	$(PY) -m ssa_experiments.cli.figures fig1 --runs outputs/quickstart/runs.csv --out outputs/quickstart/figures
	@echo "== second table: where annealing beats one-shot (MNIST-1D, results/study_cpu), 2 joblib workers =="
	$(PY) -m ssa_experiments.cli.train -m experiment=quickstart_mnist1d method=one_shot,iterative \
		method.schedule=cubic hydra/launcher=joblib hydra.launcher.n_jobs=2
	$(PY) -m ssa_experiments.cli.train -m experiment=quickstart_mnist1d method=temperature_annealing \
		method.rescore=false,true hydra/launcher=joblib hydra.launcher.n_jobs=2
	$(PY) -m ssa_experiments.cli.aggregate outputs/quickstart_mnist1d --paired one_shot

figures: install  ## Figures 1-2, Tables 1-2 and the baselines at CPU scale, end to end (~1 h): writes results/
	PY=$(PY) scripts/table1.sh --cpu
	PY=$(PY) scripts/fig1.sh --cpu
	PY=$(PY) scripts/fig2.sh --cpu
	PY=$(PY) scripts/table2.sh --cpu
	PY=$(PY) scripts/baselines.sh --cpu

study: install  ## where annealing helps: the MNIST-1D study (~30 min on 2 free cores): writes results/study_cpu
	PY=$(PY) scripts/study_cpu.sh --cpu

field: install  ## the field's baselines side by side (MNIST-1D, 515 runs, ~75 min on 2 free cores): writes results/field_cpu
	SWEEP_ARGS="hydra/launcher=joblib hydra.launcher.n_jobs=2" PY=$(PY) scripts/field_cpu.sh --cpu

test: install  ## run the whole test suite (what CI runs)
	$(PY) -m pytest -q

test-fast: install  ## unit + in-process integration tests (no subprocess, no SLURM): under 2 min on 2 cores
	$(PY) -m pytest -q -n 2 -m "unit or integration"

lint: install  ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# NO_MKDOCS_2_WARNING: mkdocs-material's banner about its successor, printed on every build
docs: install  ## the docs site (mkdocs.yml, docs/*.md) into site/; strict: a broken link or a page not in the nav fails
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: install  ## benchmarks: print ratios against plain PyTorch (docs/performance.md)
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_masks.py
	$(PY) benchmarks/bench_loop.py
	$(PY) benchmarks/bench_sweep.py

# ARGS (or GPU_CHECK_ARGS) go to the script: make gpu-check ARGS=--dry-run | ARGS="--out results/gpu/<card>"
gpu-check: install  ## on one CUDA GPU, <= 8 min: CUDA tests, GPU benchmark ratios, compile, runs per GPU, each paper preset (scripts/gpu_check.py)
	$(PY) scripts/gpu_check.py $(ARGS) $(GPU_CHECK_ARGS)

clean:  ## remove outputs and the parent cache (keeps .venv)
	rm -rf outputs .cache
