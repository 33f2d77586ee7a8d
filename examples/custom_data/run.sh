#!/usr/bin/env bash
# Your own data: generate an image folder of synthetic shapes (make_folder.py), then prune a small CNN trained
# on it, one-shot and by temperature annealing, to 90% sparsity. One command, from the repository root:
#   bash examples/custom_data/run.sh
# Everything goes under $OUT (default outputs/examples/custom_data): the images, the sweep, its store, the
# parent cache. PER_CLASS sets the train images per class; PARENT_EPOCHS, EPOCHS, ANNEAL_EPOCHS set the
# dense parent's, fine-tuning's and annealing's epochs; EXTRA="key=value ..." appends other Hydra overrides;
# PYTHON picks the interpreter (default: python).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-outputs/examples/custom_data}"
py="${PYTHON:-python}"
"$py" "$here/make_folder.py" "$out/shapes" --per-class "${PER_CLASS:-200}" --test-per-class 50
# shellcheck disable=SC2086  # EXTRA is a list of overrides, split on purpose
"$py" -m ssa_experiments.cli.train -m \
  data=image_folder data.root="$out/shapes" data.val_fraction=0.1 \
  model=small_cnn model.width=16 method=one_shot,temperature_annealing sparsity=0.9 \
  parent.epochs="${PARENT_EPOCHS:-6}" train.finetune_epochs="${EPOCHS:-4}" method.anneal_epochs="${ANNEAL_EPOCHS:-2}" \
  hydra.sweep.dir="$out/sweep" store.root="$out/store" parent.cache_dir="$out/parents" ${EXTRA:-}
"$py" -m ssa_experiments.cli.aggregate "$out/sweep"
