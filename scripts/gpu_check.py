"""``make gpu-check``: one unattended check of every CUDA path and of the GPU performance goals, on one GPU,
in at most 8 minutes of wall time, recorded into one small directory to copy back (issue 27).

Why one prepared script: GPU time comes to this project minutes at a time, on machines without internet, so
what runs there must be decided, tested and budgeted beforehand (``--dry-run`` checks it on any CPU, in CI).

The machine needs Python >= 3.10 and this repository with its dependencies installed from wheels carried in
(it has no internet, and no data set: the data are synthetic, the CIFAR files are written here). Beforehand,
on a machine with the registry: ``pip download -d wheels '.[dev]'`` (torch's CUDA build is the default Linux
wheel); there: ``python -m venv .venv && .venv/bin/pip install --no-index --find-links wheels -e '.[dev]'``,
then ``make gpu-check`` (or ``.venv/bin/python scripts/gpu_check.py``).

Items, each a subprocess killed at its time budget (``items``; 470 s in all, plus writing the data; the
check stops at 480 s):

    cuda-tests            pytest -m cuda tests/gpu: rerun equality, resume mid-annealing, bf16 autocast and
                          channels-last applied and recorded, the device pipeline's batches equal the CPU's,
                          device=auto claims a GPU, a CPU checkpoint refused, masks effective under autocast
    masks-resnet18        benchmarks/bench_masks.py, ResNet-18 and WRN-28-10 at batch 128 on CIFAR-shaped
    masks-wrn28_10        synthetic data: SSA step / dense (goal <= 1.03), fixed mask / dense (<= 1.02),
                          images/s and peak GPU memory per method
    pipeline              benchmarks/bench_pipeline.py: device pipeline / DataLoader (goal >= 3x), one epoch
    loop                  benchmarks/bench_loop.py: our loop / a minimal loop (goal >= 0.97), ResNet-18
    compile               benchmarks/bench_compile.py: fine-tuning epoch time with train.compile=true / eager,
                          ResNet-18 at batch 128 through run() (annealing masks), compile time
    runs-per-device       benchmarks/bench_runs_per_device.py: runs per hour of a small study_cpu run with
                          k = 1, 4, 8 runs sharing the GPU (train.runs_per_device) vs the CPU, 2 workers
    preset-<name>         one run of each paper-scale preset (fig1, fig2, table1, table2, baselines) for a
                          few steps, on random data in the real CIFAR-10/100 files (tests/fixtures_data.py)

Written to ``--out`` (default ``$OUT``, else ``outputs/gpu_check``): ``summary.json`` (the machine: GPU,
driver, torch, CUDA and cuDNN versions; per item: command, budget, wall time, exit status, the result lines
and the benchmarks' JSON), ``gpu_check.log`` (each item's output, its last 200 kB) and the per-item files
(``pytest_cuda.xml``, ``bench_*.json``). The runs, parents and CIFAR files go to a temporary directory.

    python scripts/gpu_check.py                 # on the GPU machine; exit 1 if an item failed
    python scripts/gpu_check.py --dry-run       # anywhere: lists the items, checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOTAL_BUDGET_S = 480  # the bound on the whole check
LOG_TAIL_BYTES = 200_000  # per item, so the log stays a few MB at most
PRESETS = ("fig1", "fig2", "table1", "table2", "baselines")
# a few steps of each preset: its model, data, schedule and method as the paper sweep has them, shorter
PRESET_OVERRIDES = (
    "device=cuda",
    "parent.epochs=2",
    "parent.save_epochs=[]",
    "train.finetune_epochs=2",
    "train.max_steps_per_epoch=3",
    "method.anneal_epochs=1",
    "logger.progress=none",
)
RESULT_LINE = re.compile(r"^(RATIO|ESTIMATE|RESULT|ORDER|images/s)\b.*$", re.MULTILINE)


@dataclass(frozen=True)
class Item:
    """One thing the check runs: a command in a subprocess from the repository root, killed at its budget."""

    name: str
    budget_s: int
    argv: tuple[str, ...]
    json_file: str | None = None  # written by the command under --out: its results, copied into the summary
    what: str = ""


@dataclass
class Outcome:
    status: str  # passed | failed | timeout | skipped
    wall_s: float = 0.0
    returncode: int | None = None
    results: list[str] = field(default_factory=list)
    data: dict | None = None


def bench(script: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, f"benchmarks/{script}", "--device", "cuda", *args)


def preset_argv(name: str, work: Path) -> tuple[str, ...]:
    return (
        sys.executable, "-m", "ssa_experiments.cli.train", f"experiment={name}", *PRESET_OVERRIDES,
        f"data.root={work / 'data'}", f"output_dir={work / 'runs' / name}",
        f"parent.cache_dir={work / 'parents'}",
    )  # fmt: skip


def items(out: Path, work: Path) -> list[Item]:
    """Everything the check runs, in order, with its time budget (seconds)."""
    masks = ("--batch-size", "128", "--rounds", "10", "--steps-per-turn", "10", "--small-rounds", "20")
    return [
        Item(
            "cuda-tests", 80,
            (sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "tests/gpu",
             f"--junitxml={out / 'pytest_cuda.xml'}"),
            what="the CUDA tests (tests/gpu/test_cuda.py)",
        ),
        Item(
            "masks-resnet18", 45, bench("bench_masks.py", "--model", "resnet18", *masks, "--json",
                                        str(out / "bench_masks_resnet18.json")),
            "bench_masks_resnet18.json", "SSA step / dense, fixed mask / dense: ResNet-18, batch 128",
        ),
        Item(
            "masks-wrn28_10", 60, bench("bench_masks.py", "--model", "wide_resnet", *masks, "--json",
                                        str(out / "bench_masks_wrn28_10.json")),
            "bench_masks_wrn28_10.json", "SSA step / dense, fixed mask / dense: WRN-28-10, batch 128",
        ),
        Item(
            "pipeline", 20, bench("bench_pipeline.py", "--json", str(out / "bench_pipeline.json")),
            "bench_pipeline.json", "on-device pipeline / DataLoader, one CIFAR-sized epoch",
        ),
        Item("loop", 45, bench("bench_loop.py", "--repeats", "2"), what="our loop / minimal loop, ResNet-18"),
        *(Item(f"preset-{p}", 18, preset_argv(p, work), what=f"experiment={p}, 2+2 epochs") for p in PRESETS),
        Item(
            "compile", 60, bench("bench_compile.py", "--json", str(out / "bench_compile.json")),
            "bench_compile.json", "train.compile=true / eager fine-tuning epoch time, ResNet-18, batch 128",
        ),
        Item(
            "runs-per-device", 70, bench("bench_runs_per_device.py", "--json", str(out / "bench_runs.json")),
            "bench_runs.json", "runs/hour of a small study_cpu run, k = 1, 4, 8 per GPU vs the CPU",
        ),
    ]  # fmt: skip


def machine() -> dict:
    """What the numbers were measured on: the card, the driver, the versions."""
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "gpu_count": torch.cuda.device_count(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        smi = subprocess.run(query, capture_output=True, text=True, check=False)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    info["commit"] = git.stdout.strip() or None
    return info


def write_cifar(root: Path) -> None:
    """CIFAR-10 and CIFAR-100 in their real on-disk formats, random content: 1,280 / 1,200 training and
    256 test images, enough for a few steps at batch 128 with a validation split."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures_data import make_cifar10, make_cifar100

    make_cifar10(root, n_train_per_batch=256, n_test=256)
    make_cifar100(root, n_train=1200, n_test=256)


def env() -> dict[str, str]:
    """The children import this checkout's package even where it is not installed (editable or at all)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline"}


def run_item(item: Item, out: Path, log, budget_s: float) -> Outcome:
    log.write(f"\n===== {item.name} (budget {budget_s:.0f} s): {' '.join(item.argv)}\n")
    log.flush()
    started = time.perf_counter()
    try:
        done = subprocess.run(
            item.argv, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=budget_s, check=False
        )
        output, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as err:
        output = "".join(s.decode(errors="replace") if isinstance(s, bytes) else (s or "") for s in (
            err.stdout, err.stderr))  # fmt: skip
        rc = None
    wall = time.perf_counter() - started
    log.write(output[-LOG_TAIL_BYTES:])
    log.write(f"\n===== {item.name}: exit {rc}, {wall:.1f} s\n")
    log.flush()
    status = "timeout" if rc is None else ("passed" if rc == 0 else "failed")
    outcome = Outcome(status, round(wall, 1), rc, [m.group(0) for m in RESULT_LINE.finditer(output)])
    if item.json_file and (out / item.json_file).is_file():
        outcome.data = json.loads((out / item.json_file).read_text())
    if item.name == "cuda-tests" and (out / "pytest_cuda.xml").is_file():
        suite = ET.parse(out / "pytest_cuda.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        outcome.data = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return outcome


def check(out: Path) -> int:
    """The whole check on this machine's GPU; returns the exit status (0: every item passed)."""
    import torch

    if not torch.cuda.is_available():
        print("error: torch sees no GPU on this machine (use --dry-run to check the script without one)")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + TOTAL_BUDGET_S
    summary: dict = {"machine": machine(), "budget_s": TOTAL_BUDGET_S, "items": {}}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp, open(out / "gpu_check.log", "w") as log:
        work = Path(tmp)
        write_cifar(work / "data")
        for item in items(out, work):
            left = deadline - time.perf_counter()
            outcome = Outcome("skipped") if left < 5 else run_item(item, out, log, min(item.budget_s, left))
            summary["items"][item.name] = {"what": item.what, "budget_s": item.budget_s, **vars(outcome)}
            # after every item: a check cut short still leaves what it measured
            (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
            print(
                f"{item.name:<18}{outcome.status:>8}{outcome.wall_s:>8.1f} s  " + " | ".join(outcome.results)
            )
    failed = [n for n, r in summary["items"].items() if r["status"] != "passed"]
    print(f"gpu-check: {len(summary['items']) - len(failed)}/{len(summary['items'])} items passed; {out}")
    return 1 if failed else 0


def dry_run(out: Path) -> int:
    """Lists the items with their budgets and checks the script itself, without a GPU: the benchmarks and
    the CIFAR writer import, every preset composes and validates with the check's overrides, the CUDA tests
    are collected. Returns the exit status (0: sound)."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        plan = list_items(out, Path(tmp), problems)
        check_imports(plan, problems)
        check_presets(Path(tmp), problems)
    check_collection(problems)
    for problem in problems:
        print(f"error: {problem}")
    print("dry run: " + ("the script is sound" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def list_items(out: Path, work: Path, problems: list[str]) -> list[Item]:
    plan = items(out, work)
    for item in plan:
        print(f"{item.name:<18}{item.budget_s:>5} s  {item.what}\n{'':<25}{' '.join(item.argv[1:])}")
    total = sum(i.budget_s for i in plan)
    print(f"total {total} s of {TOTAL_BUDGET_S} s (plus writing the CIFAR files); results -> {out}")
    if total > TOTAL_BUDGET_S:
        problems.append(f"the items' budgets add up to {total} s, over {TOTAL_BUDGET_S} s")
    return plan


def check_imports(plan: list[Item], problems: list[str]) -> None:
    """The benchmark scripts the items run import (their modules' top level; ``main`` is not called)."""
    import importlib.util

    sys.path.insert(0, str(ROOT / "benchmarks"))
    for script in sorted({a for i in plan for a in i.argv if a.startswith("benchmarks/")}):
        spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there while it is executed
        try:  # its imports and definitions; main() is not called
            spec.loader.exec_module(module)
        except Exception as err:
            problems.append(f"{script} does not import: {type(err).__name__}: {err}")


def check_presets(work: Path, problems: list[str]) -> None:
    """The CIFAR files are written and every preset composes and validates with the check's overrides."""
    from hydra import compose, initialize_config_dir

    from ssa_experiments.config.paths import conf_dir
    from ssa_experiments.config.schema import register_configs
    from ssa_experiments.config.validate import validate

    write_cifar(work / "data")
    register_configs()
    for name in PRESETS:
        overrides = [a for a in preset_argv(name, work)[3:] if "=" in a]
        overrides = [o.replace("device=cuda", "device=cpu") for o in overrides]  # validate reads no GPU here
        try:
            with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
                validate(compose(config_name="config", overrides=overrides))
        except Exception as err:
            problems.append(f"preset {name} does not compose: {type(err).__name__}: {err}")


def check_collection(problems: list[str]) -> None:
    """``pytest -m cuda`` collects the CUDA tests (here they would be skipped: no GPU)."""
    collect = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "cuda", "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/gpu"],
        cwd=ROOT, env=env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    collected = [line for line in collect.stdout.splitlines() if "::" in line]
    print(f"pytest -m cuda collects {len(collected)} tests")
    if collect.returncode != 0 or not collected:
        problems.append(f"pytest -m cuda collects no test: {collect.stdout[-2000:]}{collect.stderr[-2000:]}")


def default_out() -> Path:
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "outputs" / "gpu_check"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="results directory (default: $OUT, else "
                   "outputs/gpu_check)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="list the items and check the script; no GPU")
    args = p.parse_args()
    out = (args.out or default_out()).resolve()
    return dry_run(out) if args.dry_run else check(out)


if __name__ == "__main__":
    sys.exit(main())
