#!/usr/bin/env bash
# Your own model: a small ResNet (tiny_resnet.py) pruned one-shot and by temperature annealing to 90% sparsity
# on scikit-learn's digits. One command, from the repository root:  bash examples/custom_model/run.sh
# Everything goes under $OUT (default outputs/examples/custom_model): the sweep, its store, the parent cache.
# PARENT_EPOCHS, EPOCHS, ANNEAL_EPOCHS set the dense parent's, fine-tuning's and annealing's epochs;
# EXTRA="key=value ..." appends other Hydra overrides; PYTHON picks the interpreter (default: python).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-outputs/examples/custom_model}"
py="${PYTHON:-python}"
# shellcheck disable=SC2086  # EXTRA is a list of overrides, split on purpose
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$py" -m ssa_experiments.cli.train -m \
  model=custom model._target_=tiny_resnet.TinyResNet +model.width=16 +model.blocks=2 \
  data=digits method=one_shot,temperature_annealing sparsity=0.9 \
  parent.epochs="${PARENT_EPOCHS:-4}" train.finetune_epochs="${EPOCHS:-4}" method.anneal_epochs="${ANNEAL_EPOCHS:-2}" \
  hydra.sweep.dir="$out/sweep" store.root="$out/store" parent.cache_dir="$out/parents" ${EXTRA:-}
"$py" -m ssa_experiments.cli.aggregate "$out/sweep"
