#!/usr/bin/env bash
# Your own method: one-shot pruning by unit-normalised magnitude (my_method.py) against the built-in one-shot
# magnitude pruning, both to 95% sparsity within every layer (pruning.scope=layerwise: the two differ only in
# how they rank a layer's weights), from the same dense parent (a small CNN on scikit-learn's digits), two
# seeds. One command, from the repository root:  bash examples/custom_method/run.sh
# Everything goes under $OUT (default outputs/examples/custom_method): the sweeps, their store, the parent
# cache. PARENT_EPOCHS and EPOCHS set the dense parent's and fine-tuning's epochs; EXTRA="key=value ..."
# appends other Hydra overrides; PYTHON picks the interpreter (default: python).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-outputs/examples/custom_method}"
py="${PYTHON:-python}"
common=(data=digits model=small_cnn model.width=16 sparsity=0.95 pruning.scope=layerwise seed=0,1
        parent.epochs="${PARENT_EPOCHS:-6}" train.finetune_epochs="${EPOCHS:-4}"
        store.root="$out/store" parent.cache_dir="$out/parents")
# shellcheck disable=SC2086  # EXTRA is a list of overrides, split on purpose
"$py" -m ssa_experiments.cli.train -m method=one_shot "${common[@]}" hydra.sweep.dir="$out/sweep/one_shot" ${EXTRA:-}
# shellcheck disable=SC2086
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$py" -m ssa_experiments.cli.train -m \
  method=custom method._target_=my_method.UnitNormalisedMagnitude "${common[@]}" \
  hydra.sweep.dir="$out/sweep/mine" ${EXTRA:-}
# both sweeps in one table; --paired: each seed's difference from one-shot (the two share that seed's parent)
"$py" -m ssa_experiments.cli.aggregate "$out/sweep" --paired one_shot
