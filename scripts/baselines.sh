#!/usr/bin/env bash
# The retraining baselines (one-cycle, fine-tuning, LR rewinding, weight rewinding) × every method, with the
# mechanism controls, one table per sparsity. scripts/baselines.sh --cpu: digits -> results/baselines/.
source "$(dirname "$0")/lib.sh" "$@"
if [[ $CPU == 1 ]]; then EPOCHS=10 GMP_EVERY=2; else EPOCHS=20 GMP_EVERY=100; fi
PARENT_EPOCHS=$(( CPU == 1 ? 20 : 140 ))
# DropConnect's r0, calibrated on a measured quantity rather than set to tau0: the r0 whose first fine-tuning
# epoch costs the same training loss as temperature annealing's (scripts/calibrate_dropconnect.py), from an r0
# sweep at one-cycle next to temperature annealing; published as dropconnect_r0.csv
R0_SWEEP=${OUT}_dropconnect_r0  # beside OUT, not in it: its r0 values are not rows of the table
train method=dropconnect_target method.initial_drop_rate=0.02,0.05,0.1,0.25,0.5 hydra.sweep.dir=$R0_SWEEP
train method=temperature_annealing hydra.sweep.dir=$R0_SWEEP
mkdir -p "$RESULTS"
R0=$("$PY" scripts/calibrate_dropconnect.py "$R0_SWEEP" --csv "$RESULTS/dropconnect_r0.csv" | tail -1)
COMMANDS+=("python scripts/calibrate_dropconnect.py $R0_SWEEP --csv $RESULTS/dropconnect_r0.csv  # -> r0 = $R0")
echo "dropconnect_target: calibrated r0 = $R0"
METHODS=one_shot,random_annealing,temperature_annealing,stochastic_constant,soft_annealing
train method=dense sparsity=0
for retraining in "schedule=one_cycle" "schedule=finetune" "schedule=lr_rewind" \
                  "schedule=lr_rewind parent.rewind_epoch=$(( PARENT_EPOCHS - EPOCHS ))"; do
    # shellcheck disable=SC2086  # $retraining is one or two overrides
    train method=$METHODS $retraining
    train method=dropconnect_target method.initial_drop_rate="$R0" $retraining
    train method=iterative method.schedule=polynomial $retraining          # the cubic schedule, per epoch
    train method=iterative method.schedule=linear $retraining                                 # the paper's
    train method=iterative method.schedule=polynomial method.prune_every_steps=$GMP_EVERY $retraining  # GMP
done
FIGURE_ARGS[baselines]="--paired one_shot"
publish baselines
