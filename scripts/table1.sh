#!/usr/bin/env bash
# Table 1: the target chosen by random or by magnitude scores x one-shot, iterative, SSA (temperature
# annealing), with the dense row. scripts/table1.sh --cpu: digits, ~5 min on 2 cores -> results/table1/.
source "$(dirname "$0")/lib.sh" "$@"
train method=dense sparsity=0
train method=one_shot,iterative,temperature_annealing pruning.criterion=random,magnitude
FIGURE_ARGS[table1]="--paired one_shot"
publish table1
