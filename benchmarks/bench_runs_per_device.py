"""Runs per hour of a small run (``experiment=study_cpu``, MNIST-1D, a few epochs) with ``k`` runs sharing one
GPU (``train.runs_per_device=k``, joblib with ``k`` workers), against the CPU (2 workers, one thread each:
the 2-core machine the study was sized for).

Each setting is one multirun through the real entry point, ``N`` runs of distinct seeds (each trains its own
parent: a whole small run), timed from the command's start to its end (Python, torch and CUDA start-up of
the workers included: what a sweep costs). The test accuracies per seed are compared across settings: runs
sharing a device give the numbers of the same runs one at a time (on a GPU as far as its kernels are
deterministic; reported, not judged). A line per setting is printed as soon as it is measured, so a check
cut short keeps what it measured.

    .venv/bin/python benchmarks/bench_runs_per_device.py --device cuda        # k = 1, 4, 8 and the CPU
    .venv/bin/python benchmarks/bench_runs_per_device.py --quick              # CPU only: the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# study_cpu's run, shorter: every method's machinery (parent, annealing, evaluation), a few epochs
SMALL_RUN = (
    "experiment=study_cpu", "parent.epochs=2", "train.finetune_epochs=3", "method.anneal_epochs=2",
    "sparsity=0.99", "logger.progress=none", "train.save_model=false",
)  # fmt: skip


def sweep(work: Path, label: str, device: str, jobs: int, runs: int, extra: list[str]) -> tuple[float, dict]:
    """One multirun of ``runs`` seeds; returns (wall seconds, {seed: test_acc})."""
    from ssa_experiments.config.overrides import override_key

    root = work / label
    replaced = {override_key(e) for e in extra}  # the CLI refuses a key given twice
    base = [o for o in SMALL_RUN if override_key(o) not in replaced]
    cmd = [
        sys.executable, "-m", "ssa_experiments.cli.train", "-m", *base, f"device={device}",
        f"seed={','.join(str(s) for s in range(runs))}", "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={jobs}", f"train.runs_per_device={jobs}", f"hydra.sweep.dir={root / 'sweep'}",
        f"parent.cache_dir={root / 'parents'}", f"store.root={root / 'store'}", f"data.root={work / 'data'}",
        *extra,
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
    }
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{label}: exit {done.returncode}\n{done.stderr[-3000:]}")
    from ssa_experiments.analysis.aggregate import collect

    df = collect(root / "sweep")
    done_runs = df[df["status"] == "completed"]
    return wall, {int(r.seed): float(r.test_acc) for r in done_runs.itertuples()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda: the k settings and the CPU; cpu: the CPU only")
    p.add_argument("--k", default="1,4,8", help="runs sharing the GPU, one setting each")
    p.add_argument("--runs-per-worker", type=int, default=2, help="runs per setting: this times k")
    p.add_argument("--cpu-runs", type=int, default=4, help="runs on the CPU (2 workers)")
    p.add_argument("--quick", action="store_true", help="CPU only, 2 runs on 500 samples, 1+2 epochs")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("extra", nargs="*", help="more Hydra overrides (after --)")
    args = p.parse_args()
    extra = list(args.extra)
    if args.quick:
        args.device, args.cpu_runs = "cpu", 2
        extra += [
            "parent.epochs=1",
            "train.finetune_epochs=2",
            "method.anneal_epochs=1",
            "data.num_samples=500",
        ]
    settings = [("cpu", "cpu", 2, args.cpu_runs)]
    if args.device != "cpu":
        settings = [(f"gpu_k{k}", "auto", k, k * args.runs_per_worker) for k in map(int, args.k.split(","))]
        settings.append(("cpu", "cpu", 2, args.cpu_runs))
    results: dict = {"small_run": [*SMALL_RUN, *extra], "settings": {}}
    accuracies: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_runs_per_device_") as tmp:
        for label, device, jobs, runs in settings:
            wall, accuracies[label] = sweep(Path(tmp), label, device, jobs, runs, extra)
            per_hour = len(accuracies[label]) * 3600 / wall  # completed runs only
            results["settings"][label] = {
                "device": device, "workers": jobs, "runs": runs, "completed": len(accuracies[label]),
                "wall_s": round(wall, 1), "runs_per_hour": round(per_hour),
            }  # fmt: skip
            done = len(accuracies[label])
            print(f"RESULT {label}: {done}/{runs} runs in {wall:.1f} s, {per_hour:.0f} runs/hour", flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    gpu = [label for label in accuracies if label != "cpu"]
    if gpu:
        first = accuracies[gpu[0]]
        same = all(accuracies[g][s] == first[s] for g in gpu for s in first)  # every k ran seeds 0..k_1 * n
        results["same_numbers_across_k"] = same
        print(f"RESULT the same test accuracies per seed for every k: {same}")
        best = max(gpu, key=lambda g: results["settings"][g]["runs_per_hour"])
        ratio = results["settings"][best]["runs_per_hour"] / results["settings"]["cpu"]["runs_per_hour"]
        results["ratio_best_gpu_to_cpu"] = round(ratio, 2)
        print(f"RATIO runs/hour, {best} / the 2-worker CPU: {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
