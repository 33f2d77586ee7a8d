"""Run by ``test_disk_full.py`` inside a user and mount namespace (``unshare``), with a small tmpfs mounted at
argv[1]: a run on that tmpfs whose disk fills in fine-tuning epoch 3 fails with ``DiskFull`` naming the file,
leaves its metrics and checkpoint intact and no temporary behind, and once the space is freed resumes to the
numbers of the same run on an ordinary disk. Exits 0 when all of that held (asserts otherwise), printing what
it saw as one JSON line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers
from helpers import FAST, Callback, RunContext, compose_config

from ssa_experiments.config.schema import register_configs
from ssa_experiments.store.files import CHECKPOINT, DiskFull, read_metrics_checked
from ssa_experiments.training.run import run

SETTING = ["method=temperature_annealing", "method.anneal_epochs=2", "train.finetune_epochs=4"]


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system has no byte left (chunks down to one byte)."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                continue


class FillDiskAt(Callback):
    def __init__(self, epoch: int, filler: Path) -> None:
        self.epoch, self.filler = epoch, filler

    def on_epoch_start(self, epoch: int, ctx: RunContext) -> None:
        if epoch == self.epoch:
            fill(self.filler)


def rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in read_metrics_checked(run_dir)[0]]


def main(tmpfs: Path, work: Path) -> None:
    register_configs()  # the schema the configs extend (tests/conftest.py does it for the tests)

    def cfg(run_dir: Path):
        cache = f"parent.cache_dir={work / 'cache'}"
        return compose_config([*FAST, *SETTING, f"output_dir={run_dir}", cache])

    reference = run(cfg(work / "reference"))  # an ordinary disk; the dense parent is cached there too
    out, filler = tmpfs / "run", tmpfs / "filler"
    try:
        run(cfg(out), callbacks=[FillDiskAt(2, filler)])
        raise AssertionError("the run completed on a full disk")
    except DiskFull as err:
        error = str(err)
    assert "No space left on device (errno 28)" in error and str(out) in error, error
    intact, problem = read_metrics_checked(out)
    assert problem is None, problem  # no torn line: a row the disk had no room for was undone
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    assert ckpt["epoch"] == 1 and len(intact) >= 2, (ckpt["epoch"], len(intact))  # epochs 1-2 kept
    assert not list(out.glob(".*.tmp")), list(out.glob(".*.tmp"))
    filler.unlink()
    resumed = run(cfg(out))
    assert resumed["status"] == "completed" and resumed["test_acc"] == reference["test_acc"]
    assert rows(out) == rows(work / "reference")
    a, b = torch.load(out / "model.pt"), torch.load(work / "reference" / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    print(json.dumps({"error": error, "rows_kept": len(intact), "test_acc": resumed["test_acc"]}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
