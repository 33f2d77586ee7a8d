# Shared by scripts/fig1.sh, fig2.sh, table1.sh: sweep -> aggregate -> draw -> publish. Sourced, not run.
#   --cpu   the CPU-scale preset (<name>_cpu, offline digits), published to results/<name>/
#   (none)  the paper-scale preset (<name>, CIFAR; a GPU job), published to results/<name>_paper/
#   --publish-only   aggregate and draw what outputs/<preset> already holds, without launching the sweeps
# SWEEP_ARGS: overrides added to every sweep, e.g. a launcher (same numbers: train.cpu_threads is fixed):
#   SWEEP_ARGS="hydra/launcher=joblib hydra.launcher.n_jobs=2" scripts/fig2.sh --cpu
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
NAME=$(basename "$0" .sh)
CPU=0
PUBLISH_ONLY=0
for arg in "$@"; do
    case $arg in
        --cpu) CPU=1 ;;
        --publish-only) PUBLISH_ONLY=1 ;;
        *) echo "usage: $0 [--cpu] [--publish-only]" >&2; exit 2 ;;
    esac
done
if [[ $CPU == 1 ]]; then PRESET=${NAME}_cpu; RESULTS=results/$NAME; else PRESET=$NAME; RESULTS=results/${NAME}_paper; fi
PY=${PY:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
export WANDB_MODE=${WANDB_MODE:-offline}
OUT=outputs/$PRESET
COMMANDS=()
START=$(date +%s)

train() {  # one multirun of the preset (a re-run recomputes no completed run: each returns its summary)
    local extra=()
    read -r -a extra <<< "${SWEEP_ARGS:-}"
    COMMANDS+=("python -m ssa_experiments.cli.train -m experiment=$PRESET $*${SWEEP_ARGS:+ $SWEEP_ARGS}")
    [[ $PUBLISH_ONLY == 1 ]] || "$PY" -m ssa_experiments.cli.train -m "experiment=$PRESET" "$@" "${extra[@]}"
}

publish() {  # publish FIGURE...: the tidy CSVs, the figures, the table and a README saying how they were made
    local minutes=$(( ($(date +%s) - START + 59) / 60 ))
    mkdir -p "$RESULTS"
    "$PY" -m ssa_experiments.cli.aggregate "$OUT" --csv "$RESULTS/runs.csv" --paired "$PAIRED" \
        ${PAIR_ON:+--pair-on "$PAIR_ON"} | grep -v '^wrote ' > "$RESULTS/table.txt"
    for figure in "$@"; do
        "$PY" -m ssa_experiments.cli.figures "$figure" --runs "$RESULTS/runs.csv" --out "$RESULTS" ${FIGURE_ARGS[$figure]:-}
    done
    if [[ -n ${PAIRED_FIGURE:-} ]]; then  # the paired table as a forest plot (paired.png/.pdf/.csv)
        "$PY" -m ssa_experiments.cli.figures paired --runs "$RESULTS/runs.csv" --out "$RESULTS" --paired "$PAIRED" \
            ${PAIR_ON:+--pair-on "$PAIR_ON"}
    fi
    {
        echo "# $NAME ($PRESET)"
        echo
        echo "Made by \`scripts/$NAME.sh$([[ $CPU == 1 ]] && echo ' --cpu')\` (\`${MAKE_TARGET:-make figures}\` runs the CPU versions), which ran:"
        echo
        echo '```'
        printf '%s\n' "${COMMANDS[@]}"
        echo "python -m ssa_experiments.cli.aggregate $OUT --csv $RESULTS/runs.csv --paired '$PAIRED'${PAIR_ON:+ --pair-on $PAIR_ON}   # also writes epochs.csv, runs_paired.csv"
        for figure in "$@"; do
            echo "python -m ssa_experiments.cli.figures $figure --runs $RESULTS/runs.csv --out $RESULTS${FIGURE_ARGS[$figure]:+ ${FIGURE_ARGS[$figure]}}"
        done
        [[ -z ${PAIRED_FIGURE:-} ]] || echo "python -m ssa_experiments.cli.figures paired --runs $RESULTS/runs.csv --out $RESULTS --paired '$PAIRED'${PAIR_ON:+ --pair-on $PAIR_ON}"
        echo '```'
        echo
        if [[ $PUBLISH_ONLY == 1 ]]; then
            echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); drawn from runs already computed (\`--publish-only\`)"
        else
            echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); sweep to figures: $minutes min"
        fi
        echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1) ($(grep -q avx512f /proc/cpuinfo && echo with || echo without) AVX-512), $(nproc --all) logical cores, no GPU;" \
             "$("$PY" -c 'import torch, torchvision; print(f"torch {torch.__version__}, torchvision {torchvision.__version__}")')"
        echo "- numerics and code: $("$PY" -c "$PROVENANCE" "$RESULTS/runs.csv")"
        echo "- Runs: \`runs.csv\` (one row per run, full config), curves: \`epochs.csv\`."
        echo
        [[ -f "$RESULTS/notes.md" ]] && { cat "$RESULTS/notes.md"; echo; }
        echo "## Table (\`python -m ssa_experiments.cli.aggregate\`)"
        echo
        echo '```'
        cat "$RESULTS/table.txt"
        echo '```'
    } > "$RESULTS/README.md"
    echo "published $RESULTS/ ($minutes min)"
}
declare -A FIGURE_ARGS=()
PAIRED=${PAIRED:-one_shot}  # every table also compares each setting with this method, per seed (paired CIs)
PAIR_ON=${PAIR_ON:-}  # the keys a pair shares besides seed and sparsity (aggregate --pair-on; default: all)
# The published runs' numerics mode, CPU kernels, compute version and code commit(s), read from their summaries.
PROVENANCE='
import json, sys
from pathlib import Path
import pandas as pd
runs = pd.read_csv(sys.argv[1])
seen = {}
for d in runs.loc[runs["status"] == "completed", "run_dir"]:
    p = json.loads((Path(d) / "summary.json").read_text()).get("provenance") or {}
    code = p.get("code", {})
    commit = (code.get("git_commit") or "")[:10] + ("+dirty" if code.get("git_dirty") else "")
    key = (p.get("cpu_numerics"), p.get("cpu_capability"), p.get("compute_version"), commit or code.get("package"))
    seen[key] = seen.get(key, 0) + 1
print("; ".join(f"{n} runs: cpu_numerics={m} ({c} kernels), compute version {v}, code {k}" for (m, c, v, k), n in sorted(seen.items(), key=str)))
'

