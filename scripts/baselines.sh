#!/usr/bin/env bash
# The retraining baselines (one-cycle, fine-tuning, LR rewinding, weight rewinding) × every method, with the
# mechanism controls, one table per sparsity. scripts/baselines.sh --cpu: digits -> results/baselines/.
source "$(dirname "$0")/lib.sh" "$@"
if [[ $CPU == 1 ]]; then EPOCHS=10 GMP_EVERY=2; else EPOCHS=20 GMP_EVERY=100; fi
PARENT_EPOCHS=$(( CPU == 1 ? 20 : 140 ))
# DropConnect's r0, calibrated on a measured quantity rather than set to tau0: per sparsity, the r0 whose noise
# adds as much training loss in the first fine-tuning epoch (against one-shot) as temperature annealing's noise
# (against soft annealing, its noise-free twin): scripts/calibrate_dropconnect.py, from an r0 sweep at one-cycle
# next to the three; published as dropconnect_r0.csv
R0_SWEEP=${OUT}_dropconnect_r0  # beside OUT, not in it: its r0 values are not rows of the table
train method=dropconnect_target method.initial_drop_rate=0.02,0.05,0.1,0.25,0.5 hydra.sweep.dir=$R0_SWEEP
train method=temperature_annealing,soft_annealing,one_shot hydra.sweep.dir=$R0_SWEEP
mkdir -p "$RESULTS"
declare -A R0=()
while read -r sparsity r0; do R0[$sparsity]=$r0; done < <(
    "$PY" scripts/calibrate_dropconnect.py "$R0_SWEEP" --csv "$RESULTS/dropconnect_r0.csv" | tail -n 2)
[[ ${#R0[@]} -gt 0 ]] || { echo "scripts/calibrate_dropconnect.py chose no r0 (see $R0_SWEEP)" >&2; exit 1; }
COMMANDS+=("python scripts/calibrate_dropconnect.py $R0_SWEEP --csv $RESULTS/dropconnect_r0.csv  # r0: $(for k in "${!R0[@]}"; do printf '%s at %s ' "${R0[$k]}" "$k"; done)")
echo "dropconnect_target: calibrated r0 per sparsity: $(declare -p R0)"
METHODS=one_shot,random_annealing,temperature_annealing,stochastic_constant,soft_annealing
train method=dense sparsity=0
for retraining in "lr=one_cycle" "lr=finetune" "lr=lr_rewind" \
                  "lr=lr_rewind parent.rewind_epoch=$(( PARENT_EPOCHS - EPOCHS ))"; do
    # shellcheck disable=SC2086  # $retraining is one or two overrides
    train method=$METHODS $retraining
    for sparsity in "${!R0[@]}"; do
        train method=dropconnect_target method.initial_drop_rate="${R0[$sparsity]}" sparsity="$sparsity" $retraining
    done
    train method=iterative method.schedule=polynomial $retraining          # the cubic schedule, per epoch
    train method=iterative method.schedule=linear $retraining                                 # the paper's
    train method=iterative method.schedule=polynomial method.prune_every_steps=$GMP_EVERY $retraining  # GMP
done
FIGURE_ARGS[baselines]="--paired one_shot"
publish baselines
