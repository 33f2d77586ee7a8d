#!/usr/bin/env bash
# Figure 2: random vs temperature annealing over the annealing epochs n, and temperature annealing vs iterative
# pruning (linear: the paper's; cubic: Zhu & Gupta) over the same n, vs one-shot (one-cycle fine-tuning LR).
# scripts/fig2.sh --cpu: digits, ~10 min on 2 cores -> results/fig2/.
source "$(dirname "$0")/lib.sh" "$@"
if [[ $CPU == 1 ]]; then EPOCHS=2,5,8; else EPOCHS=2,5,10,15; fi
train method=one_shot
train method=random_annealing,temperature_annealing method.anneal_epochs=$EPOCHS
train method=iterative method.schedule=linear,polynomial method.anneal_epochs=$EPOCHS
FIGURE_ARGS[curves]="--where method.anneal_epochs=5"
publish fig2 curves
