#!/usr/bin/env bash
# Table 2: Prune-and-Tune ensembles (6 children of one dense parent, 50% sparsity, anti-random masks, 10
# one-cycle tuning epochs) with one-shot, temperature-annealed and random-annealed children, against a dense
# ensemble (6 networks, each from its own parent: ensemble.independent_parents=true); 3 seeds = 3 ensembles
# per method; FreeTickets (RigL members trained from scratch, each from its own initialisation) and MIMO
# (3 heads, from scratch). Then the
# members are combined (python -m ssa_experiments.cli.ensemble) into the table (accuracy, NLL, ECE,
# corrupted data, diversity, training FLOPs) and the ensemble-size figure.
#   scripts/table2.sh --cpu   digits, the small CNN; 72 runs, 21 parents; two joblib workers (SWEEP_ARGS=""
#                             for one process): 7 min 17 s on 2 idle cores -> results/table2/
#   scripts/table2.sh         CIFAR-10 and CIFAR-100, WRN-28-10 (a GPU job; SWEEP_ARGS="model=resnet18" for
#                             ResNet-18) -> results/table2_paper/
source "$(dirname "$0")/lib.sh" "$@"
if [[ $CPU == 1 ]]; then
    SWEEP_ARGS=${SWEEP_ARGS-"hydra/launcher=joblib hydra.launcher.n_jobs=2"}  # same numbers, half the time
    DATA=()
    # FreeTickets members train from scratch for the epochs a child's lineage sees (parent 20 + 10); ΔT in
    # steps (~12 per epoch on digits)
    FT=(train.finetune_epochs=30 method.update_every=10)
else
    DATA=(data=cifar10,cifar100)
    FT=(train.finetune_epochs=150 method.update_every=100)  # parent 140 + 10; ΔT of the rigl paper
fi
train ${DATA[@]+"${DATA[@]}"} method=dense ensemble.independent_parents=true
train ${DATA[@]+"${DATA[@]}"} method=one_shot,temperature_annealing,random_annealing
# FreeTickets (Liu et al. 2022), the "DST ensemble": RigL members from their own initialisations and their
# own random sparse masks, trained from scratch (docs/methods-dst.md)
train ${DATA[@]+"${DATA[@]}"} method=rigl parent.epochs=0 ensemble.independent_parents=true \
    ensemble.masks=random "${FT[@]}"
# MIMO (Havasi et al. 2021): one network with 3 input/output heads, batch repetition 4 (the paper's CIFAR
# setting), trained from scratch for the same epochs: one run, combined as a one-member ensemble
train ${DATA[@]+"${DATA[@]}"} method=dense model.mimo_heads=3 model.mimo_batch_repetitions=4 parent.epochs=0 \
    ensemble.size=1 ensemble.member=0 ensemble.masks=random "${FT[0]}"

COMBINED=$OUT/combined
ENSEMBLE_COMMANDS=(
    "python -m ssa_experiments.cli.ensemble $OUT --size --out $COMBINED"
    "python -m ssa_experiments.cli.figures table2 --runs $COMBINED/ensemble.json --out $RESULTS"
    "python -m ssa_experiments.cli.figures ensemble_size --runs $RESULTS/ensembles.csv --out $RESULTS"
)
"$PY" -m ssa_experiments.cli.ensemble "$OUT" --size --out "$COMBINED" > "$OUT/ensemble.txt"
mkdir -p "$RESULTS"
cp "$COMBINED/ensemble.json" "$COMBINED/ensemble.csv" "$RESULTS/"
"$PY" -m ssa_experiments.cli.figures table2 --runs "$COMBINED/ensemble.json" --out "$RESULTS"
"$PY" -m ssa_experiments.cli.figures ensemble_size --runs "$RESULTS/ensembles.csv" --out "$RESULTS"
publish  # the runs (aggregate: one row per member) and the README

{
    echo
    echo "## Ensembles (\`python -m ssa_experiments.cli.ensemble\`, then the table and the figure)"
    echo
    echo '```'
    printf '%s\n' "${ENSEMBLE_COMMANDS[@]}"
    echo '```'
    echo
    echo "\`ensemble.json\`/\`ensemble.csv\`: the combiner's report (every ensemble, member and split," \
         "the size curve); \`ensembles.csv\`, \`ensemble_curve.csv\`: what the table and" \
         "\`ensemble_size.png\` are drawn from. FreeTickets (RigL members from scratch) and MIMO (3" \
         "heads) are rerun at this scale (docs/methods-dst.md)."
    for table in "$RESULTS"/table2*.md; do
        echo
        cat "$table"
    done
} >> "$RESULTS/README.md"
echo "table2: $(ls "$RESULTS"/table2*.md | tr '\n' ' ')"
