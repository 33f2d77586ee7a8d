"""Training-batch throughput of the two pipelines in ``ssa_experiments/loaders.py`` on CIFAR-sized data.

Why: ``device`` (batched augmentation on the training device) is the default because it should be faster
than ``torch`` (a DataLoader with per-sample torchvision transforms in workers). This measures it, on the
same device, with the same augmentation (crop padding 4, horizontal flip), batch size and data.

The data set is 50,000 random 3x32x32 uint8 images (CIFAR-10's training-set size; no download needed:
throughput does not depend on pixel values). The torch pipeline's timing includes starting its workers,
since ``TorchBatches`` builds a fresh (non-persistent) DataLoader every epoch, as training does.

    .venv/bin/python benchmarks/bench_pipeline.py                  # one full epoch (390 batches) each
    .venv/bin/python benchmarks/bench_pipeline.py --max-batches 60 # under a minute on 2 CPU cores
    .venv/bin/python benchmarks/bench_pipeline.py --quick          # a smoke check in seconds
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from machine import machine  # benchmarks/machine.py (scripts run from benchmarks/)

from ssa_experiments.data.base import CIFAR10_STATS, ImageData
from ssa_experiments.data.loaders import make_batches
from ssa_experiments.runtime.devices import pick_device


def cifar_sized(n: int, seed: int) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    mean, std = CIFAR10_STATS
    return ImageData("cifar_sized", x, y, x[:1000], y[:1000], 10, mean, std, crop_padding=4, flip=True)


def take(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], limit: int, device: torch.device) -> int:
    """Consume up to ``limit`` batches (all if 0); return the number of images. Each batch is reduced to a
    scalar so lazily-queued device work is really done, and the device is synchronised at the end."""
    images, acc = 0, None
    for i, (xb, _) in enumerate(batches):
        s = xb[:, :, 0, 0].sum()
        acc = s if acc is None else acc + s
        images += xb.shape[0]
        if limit and i + 1 >= limit:
            break
    if acc is not None:
        acc.item()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=50_000, help="training images (CIFAR: 50,000)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-batches", type=int, default=0, help="timed batches per pipeline; 0: a full epoch")
    p.add_argument("--warmup-batches", type=int, default=10)
    p.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1), help="torch pipeline")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--repeats", type=int, default=1, help="timed passes per pipeline; the best is reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a smoke check in seconds: 2,048 images, 4 batches")
    p.add_argument("--json", type=Path, help="also write the results here (scripts/gpu_check.py reads them)")
    args = p.parse_args()
    if args.quick:
        args.n, args.max_batches, args.warmup_batches, args.repeats = 2048, 4, 1, 1

    device = pick_device(args.device)
    data = cifar_sized(args.n, args.seed)
    print(machine(device))
    print(
        f"device={device} n={args.n} batch={args.batch_size} crop_padding=4 flip=True "
        f"max_batches={args.max_batches or 'epoch'} torch num_workers={args.num_workers}"
    )

    rates: dict[str, float] = {}
    rows = []
    for pipeline in ("device", "torch"):
        train = make_batches(data, pipeline, args.batch_size, device, args.seed, args.num_workers).train
        take(train.epoch(0), args.warmup_batches, device)  # first-use costs: allocator, kernels, imports
        best = None
        for r in range(args.repeats):
            t0 = time.perf_counter()
            images = take(train.epoch(1 + r), args.max_batches, device)
            seconds = time.perf_counter() - t0
            if best is None or seconds / images < best[1] / best[0]:
                best = (images, seconds)
        images, seconds = best
        rates[pipeline] = images / seconds
        rows.append((pipeline, images // args.batch_size, images, seconds, rates[pipeline]))

    print(f"{'pipeline':<10}{'batches':>9}{'images':>9}{'seconds':>10}{'images/s':>12}")
    for name, batches, images, seconds, rate in rows:
        print(f"{name:<10}{batches:>9}{images:>9}{seconds:>10.2f}{rate:>12,.0f}")
    ratio = rates["device"] / rates["torch"]
    print(f"RATIO device/torch images/s: {ratio:.2f}")
    if args.json:
        results = {"device": str(device), "batch_size": args.batch_size, "images_per_s": rates}
        args.json.write_text(json.dumps({**results, "ratio_device_to_torch": ratio, "goal": 3.0}, indent=1))


if __name__ == "__main__":
    main()
