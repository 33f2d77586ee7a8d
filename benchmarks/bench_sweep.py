"""Sweep cost: K methods x S sparsities x 2 seeds on CPU, on ``digits``, through the real Hydra entry point.

One process, Hydra's default (sequential) multirun launcher, exactly as a user types it:

    python -m ssa_experiments.cli.train -m method=A,B sparsity=x,y seed=0,1 \
        hydra.sweep.dir=<tmp>/sweep parent.cache_dir=<tmp>/cache device=cpu

with a fresh, empty parent cache and run store. Afterwards every run is read back through the one reader
(``analysis.aggregate.collect``, which follows the sweep's links into the store): ``parent.source`` is
``trained`` (this run trained the dense parent) or ``cache`` (it reused one). The parent's weights depend
only on model/data/pre-training config and seed, so the whole sweep must train exactly one parent per seed;
everything else is fine-tuning. Reported: runs, parent trainings per seed, wall time of the whole command
(including Python/Hydra start-up) and of the runs themselves.

    .venv/bin/python benchmarks/bench_sweep.py                 # 3 methods x 2 sparsities x 2 seeds = 12 runs
    .venv/bin/python benchmarks/bench_sweep.py --quick         # a smoke check: 2 methods x 1 sparsity x 2
                                                               # seeds, fewer epochs (~30 s on 2 cores)
    .venv/bin/python benchmarks/bench_sweep.py --methods one_shot,temperature_annealing --sparsities 0.9 \
        -- train.finetune_epochs=5                             # anything after -- goes to Hydra as is
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine  # benchmarks/machine.py (scripts run from benchmarks/)

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", help="default: one_shot,temperature_annealing,random_annealing")
    p.add_argument("--sparsities", help="default: 0.5,0.9")
    p.add_argument("--seeds", default="0,1")
    p.add_argument(
        "--quick",
        action="store_true",
        help="parent.epochs=4 train.finetune_epochs=3; by default one_shot,temperature_annealing at 0.9",
    )
    p.add_argument("--keep", action="store_true", help="keep the sweep directory (printed)")
    p.add_argument("extra", nargs="*", help="more Hydra overrides (after --)")
    args = p.parse_args()
    quick_grid = ("one_shot,temperature_annealing", "0.9")
    full_grid = ("one_shot,temperature_annealing,random_annealing", "0.5,0.9")
    default_methods, default_sparsities = quick_grid if args.quick else full_grid
    args.methods, args.sparsities = args.methods or default_methods, args.sparsities or default_sparsities

    methods, sparsities = args.methods.split(","), args.sparsities.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = ["data=digits", "device=cpu"]
    if args.quick:
        overrides += ["parent.epochs=4", "train.finetune_epochs=3"]
        if any(m.endswith("annealing") or m == "iterative" for m in methods):
            overrides.append("method.anneal_epochs=2")
    overrides += args.extra

    tmp = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    sweep_dir, cache_dir, store_dir = tmp / "sweep", tmp / "cache", tmp / "store"
    cmd = [
        sys.executable,
        "-m",
        "ssa_experiments.cli.train",
        "-m",
        f"method={args.methods}",
        f"sparsity={args.sparsities}",
        f"seed={args.seeds}",
        f"hydra.sweep.dir={sweep_dir}",
        f"parent.cache_dir={cache_dir}",
        f"store.root={store_dir}",
        *overrides,
    ]
    print(machine())
    print(f"K={len(methods)} methods x S={len(sparsities)} sparsities x {len(seeds)} seeds, one process:")
    print("  " + " ".join(c if c != sys.executable else "python" for c in cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        print(f"RESULT sweep command failed with exit code {proc.returncode}")
        return 1

    from ssa_experiments.analysis.aggregate import collect

    summaries = [json.loads((Path(d) / "summary.json").read_text()) for d in collect(sweep_dir)["run_dir"]]
    header = (
        f"{'method':<24}{'sparsity':>9}{'seed':>6}{'parent':>9}{'status':>11}{'test_acc':>10}{'wall s':>9}"
    )
    print(header)
    print("-" * len(header))
    trained: collections.Counter[int] = collections.Counter()
    for s in sorted(summaries, key=lambda s: (s["seed"], s["method"], s["target_sparsity"])):
        source = s.get("parent", {}).get("source", "-")
        trained[s["seed"]] += source == "trained"
        acc = s.get("test_acc")
        print(
            f"{s['method']:<24}{s['target_sparsity']:>9}{s['seed']:>6}{source:>9}{s['status']:>11}"
            f"{'-' if acc is None else f'{acc:.2f}':>10}{s['wall_time_s']:>9.2f}"
        )
    expected_runs = len(methods) * len(sparsities) * len(seeds)
    completed = sum(s["status"] == "completed" for s in summaries)
    run_time = sum(s["wall_time_s"] for s in summaries)
    first = [s["wall_time_s"] for s in summaries if s.get("parent", {}).get("source") == "trained"]
    cached = [s["wall_time_s"] for s in summaries if s.get("parent", {}).get("source") == "cache"]
    per_seed = {seed: trained[seed] for seed in seeds}
    ok = per_seed == dict.fromkeys(seeds, 1) and completed == expected_runs == len(summaries)
    print(
        f"\nruns {len(summaries)}/{expected_runs} ({completed} completed); runs' own time {run_time:.1f} s "
        f"(runs that trained the parent: mean {sum(first) / max(len(first), 1):.2f} s, "
        f"cache hits: mean {sum(cached) / max(len(cached), 1):.2f} s); "
        f"process/Hydra overhead {wall - run_time:.1f} s"
    )
    if args.keep:
        print(f"sweep kept in {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"RESULT parent trainings per seed: {per_seed} (goal: 1 each; {'met' if ok else 'MISSED'}), "
        f"runs {len(summaries)}, wall {wall:.1f} s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
