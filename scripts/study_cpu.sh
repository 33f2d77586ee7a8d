#!/usr/bin/env bash
# Where does annealing help? MNIST-1D, an over-parameterised 1-D CNN (conf/experiment/study_cpu.yaml), staged:
# stage 1 crosses the annealing schedule's shape and granularity with re-scoring at fixed tau0 = 0.5 and n = 5,
# against one-shot and iterative pruning (linear, cubic, geometric); stage 2 follows up its winner.
# -> results/study_cpu/
# Run with --cpu (the only scale it has); SWEEP_ARGS="hydra/launcher=joblib hydra.launcher.n_jobs=2" spreads it.
source "$(dirname "$0")/lib.sh" "$@"
CPU=1 PRESET=study_cpu OUT=outputs/study_cpu RESULTS=results/study_cpu MAKE_TARGET="make study"  # CPU only
train method=dense sparsity=0
train method=one_shot
train method=iterative method.schedule=linear,polynomial,geometric
# stage 1 at 99 % only (2 cores): shape x granularity of temperature annealing, then re-scoring, random
# annealing and the deterministic control at the paper's schedule and at the geometric one
AT=sparsity=0.99
train method=temperature_annealing method.schedule=linear,geometric method.granularity=epoch,step $AT
train method=temperature_annealing method.schedule=exponential,cubic method.granularity=step $AT
train method=temperature_annealing method.rescore=true method.schedule=linear method.granularity=epoch $AT
train method=temperature_annealing method.rescore=true method.schedule=geometric method.granularity=step $AT
train method=random_annealing,soft_annealing method.schedule=geometric method.granularity=step $AT
# stage 2, chosen after stage 1 (re-scoring was the only change that beat one-shot beyond the seed spread):
# its deterministic counterpart (is it the noise?) and the winner at 99.5 %
train method=soft_annealing method.rescore=true method.schedule=linear method.granularity=epoch $AT
# the cell that separates the two effects (issue 21): the deterministic control at the paper's setting without
# re-scoring, next to temperature annealing there, so noise and re-scoring are each compared with the other fixed
train method=soft_annealing method.schedule=linear method.granularity=epoch $AT
train method=temperature_annealing method.rescore=true method.schedule=linear method.granularity=epoch \
    sparsity=0.995
FIGURE_ARGS[curves]="--sparsity 0.99"
FIGURE_ARGS[table]="--paired one_shot"
publish table curves
"$PY" -m ssa_experiments.cli.figures schedules --sparsity 0.99 --out "$RESULTS"
