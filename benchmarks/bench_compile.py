"""``train.compile``: fine-tuning epoch time compiled / eager, through the real ``run()`` (masks, annealing).

Two runs of one config, eager then ``train.compile=true``, on CIFAR-shaped synthetic data. The compiled run
starts from the eager run's parent (``parent.path``), so it compiles the fine-tuning only (the parent's
compilation would be the same cost again, and the same ratio). Reported per run: the first fine-tuning
epoch (for the compiled run: it includes compiling), the median of the later epochs (steady state: the
speed-up; the median, as a later epoch may compile once more, e.g. for the target mask), and the test loss
(equal within rounding: ``tests/training/test_compile.py``). An epoch's time includes its evaluation, which
runs eagerly (BatchNorm recalibration evaluates a copy of the model, and a copy is not compiled), so the
speed-up of the training steps alone is larger than the ratio shown.

    .venv/bin/python benchmarks/bench_compile.py --device cuda           # ResNet-18, batch 128, 32 x 32
    .venv/bin/python benchmarks/bench_compile.py --quick                 # CPU, a tiny CNN: the script runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def overrides(args: argparse.Namespace, work: Path) -> list[str]:
    model = ["model=small_cnn", "model.width=8"] if args.quick else [f"model={args.model}"]
    size = 8 if args.quick else 32
    train = args.batch_size * (args.steps + 1)  # + the validation split
    return [
        "data=synthetic", f"data.image_size={size}", "data.num_classes=10", f"data.num_train={train}",
        f"data.num_test={args.batch_size}", *model, f"device={args.device}", "parent.epochs=1",
        f"train.finetune_epochs={args.epochs}", f"train.batch_size={args.batch_size}",
        f"train.max_steps_per_epoch={args.steps}", "method=temperature_annealing", "method.anneal_epochs=1",
        "method.granularity=step", "sparsity=0.9", "eval.bn_recalibration_batches=2",
        "logger.progress=none", "train.save_model=false", f"parent.cache_dir={work / 'parents'}",
    ]  # fmt: skip


def one_run(base: list[str], name: str, work: Path, *extra: str) -> dict:
    from hydra import compose, initialize_config_dir

    from ssa_experiments.config.paths import conf_dir
    from ssa_experiments.store.files import read_metrics
    from ssa_experiments.training.run import run

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*base, f"output_dir={work / name}", *extra])
    started = time.perf_counter()
    summary = run(cfg)
    epochs = [r["epoch_time_s"] for r in read_metrics(work / name)]
    return {
        "wall_s": round(time.perf_counter() - started, 2),
        "first_epoch_s": round(epochs[0], 3),
        "steady_epoch_s": round(statistics.median(epochs[1:]), 4),
        "test_loss": summary["test_loss"],
        "test_acc": summary["test_acc"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="resnet18", help="a conf/model preset")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="training steps per epoch")
    p.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs (the first one compiles)")
    p.add_argument("--quick", action="store_true", help="a tiny CNN on 8 x 8 images, 3 epochs of 2 steps")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    if args.quick:
        args.batch_size, args.steps, args.epochs = 32, 2, 3

    from ssa_experiments.repro import numerics

    numerics.enter("portable")
    import torch
    from machine import machine  # benchmarks/machine.py (scripts run from benchmarks/)

    from ssa_experiments.config.schema import register_configs

    register_configs()
    print(machine(torch.device(args.device)))
    with tempfile.TemporaryDirectory(prefix="bench_compile_") as tmp:
        work = Path(tmp)
        base = overrides(args, work)
        eager = one_run(base, "eager", work)
        print(f"eager     {eager}", flush=True)
        parent = next((work / "parents").glob("*/parent.pt"))
        compiled = one_run(base, "compiled", work, "train.compile=true", f"parent.path={parent}")
        print(f"compiled  {compiled}", flush=True)
    ratio = compiled["steady_epoch_s"] / eager["steady_epoch_s"]
    results = {
        "model": "small_cnn" if args.quick else args.model, "device": args.device,
        "batch_size": args.batch_size, "steps_per_epoch": args.steps, "eager": eager, "compiled": compiled,
        "ratio_compiled_to_eager_epoch": round(ratio, 4),
        "compile_overhead_s": round(compiled["first_epoch_s"] - eager["first_epoch_s"], 2),
    }  # fmt: skip
    print(
        f"RATIO compiled/eager epoch time: {ratio:.3f} (speed-up {1 / ratio:.2f}x; compiling took "
        f"{results['compile_overhead_s']:.1f} s in the first epoch)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
