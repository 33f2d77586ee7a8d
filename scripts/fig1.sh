#!/usr/bin/env bash
# Figure 1: temperature annealing over initial temperature x annealing epochs, per sparsity, vs one-shot
# (constant fine-tuning LR). scripts/fig1.sh --cpu: digits, ~10 min on 2 cores -> results/fig1/.
source "$(dirname "$0")/lib.sh" "$@"
if [[ $CPU == 1 ]]; then EPOCHS=2,5,8; else EPOCHS=2,5,10,15; fi
train method=one_shot
train method=temperature_annealing method.initial_temperature=0.1,0.25,0.5,1.0 method.anneal_epochs=$EPOCHS
FIGURE_ARGS[curves]="--where method.anneal_epochs=5 method.initial_temperature=0.5"
publish fig1 curves
