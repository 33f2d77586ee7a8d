#!/usr/bin/env bash
# The retraining baselines (one-cycle, fine-tuning, LR rewinding, weight rewinding) × every method, with the
# mechanism controls, one table per sparsity. scripts/baselines.sh --cpu: digits -> results/baselines/.
source "$(dirname "$0")/lib.sh" "$@"
if [[ $CPU == 1 ]]; then EPOCHS=10 GMP_EVERY=2; else EPOCHS=20 GMP_EVERY=100; fi
PARENT_EPOCHS=$(( CPU == 1 ? 20 : 140 ))
METHODS=one_shot,random_annealing,temperature_annealing,stochastic_constant,dropconnect_target,soft_annealing
train method=dense sparsity=0
for retraining in "schedule=one_cycle" "schedule=finetune" "schedule=lr_rewind" \
                  "schedule=lr_rewind parent.rewind_epoch=$(( PARENT_EPOCHS - EPOCHS ))"; do
    # shellcheck disable=SC2086  # $retraining is one or two overrides
    train method=$METHODS $retraining
    train method=iterative method.schedule=linear $retraining                                 # the paper's
    train method=iterative method.schedule=polynomial method.prune_every_steps=$GMP_EVERY $retraining  # GMP
done
publish baselines
