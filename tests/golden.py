"""The golden runs: a few tiny runs whose exact numbers, weight digests and store keys are pinned in
``tests/golden.json`` (``test_golden.py`` compares, ``scripts/renew_golden.py`` rewrites).

They guard ``provenance.COMPUTE_VERSION``: a change that alters any number fails the test until the version
is bumped and the values renewed in the same commit, so the run store never serves an old result as new;
a refactor proves that it changed no number and no store key by passing it untouched. Portable CPU
numerics (the default), one thread.

The values are pinned per CPU vendor: portable numerics were measured to give the same bits on AVX2 and on
AVX-512 machines of one vendor, but not between an AMD EPYC and an Intel Xeon (MKL follows another code path
on each; docs/numbers.md). The store keys are one set for every vendor, and the test checks it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

GOLDEN_FILE = Path(__file__).with_name("golden.json")
# Every kind of computation once, sharing one parent: synthetic data, a width-8 CNN, 3 + 3 epochs.
COMMON = [
    "data=synthetic", "model=small_cnn", "model.width=8", "parent.epochs=3", "train.finetune_epochs=3",
    "train.batch_size=64", "device=cpu", "seed=0",
]  # fmt: skip
RUNS = {
    "dense": ["method=dense"],
    "one_shot": ["method=one_shot", "sparsity=0.9"],
    "iterative_gmp": [
        "method=iterative", "sparsity=0.9", "method.anneal_epochs=2", "method.prune_every_steps=2",
    ],
    "temperature_annealing": [
        "method=temperature_annealing", "sparsity=0.9", "method.anneal_epochs=2", "method.granularity=step",
        "method.rescore=true",
    ],
    "lr_rewind_layerwise": [
        "method=one_shot", "sparsity=0.8", "lr=lr_rewind", "pruning.scope=layerwise",
    ],
}  # fmt: skip
METRICS = (
    "test_acc",
    "test_loss",
    "val_acc",
    "val_loss",
    "best_val_acc",
    "sparsity",
    "steps",
    "lr_trace_sha256",
)


def weights_sha256(path: Path) -> str:
    """A digest of a state_dict's tensors (names, dtypes, shapes, bytes), independent of pickling."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def compute(work: Path) -> dict[str, Any]:
    """Run every golden run under ``work`` and return what is pinned: per run its metrics (floats as
    ``repr``: every bit), the digest of its final weights, of its parent's weights, and its store key."""
    from hydra import compose, initialize_config_dir

    from ssa_experiments.config.identity import run_identity
    from ssa_experiments.config.paths import conf_dir
    from ssa_experiments.config.schema import register_configs
    from ssa_experiments.repro.provenance import COMPUTE_VERSION
    from ssa_experiments.store import runs as store
    from ssa_experiments.training.run import run

    register_configs()
    conf = str(conf_dir())
    out: dict[str, Any] = {"compute_version": COMPUTE_VERSION, "runs": {}}
    for name, overrides in RUNS.items():
        with initialize_config_dir(config_dir=conf, version_base="1.3"):
            cfg = compose(
                config_name="config",
                overrides=[
                    *COMMON,
                    *overrides,
                    f"output_dir={work / name}",
                    f"parent.cache_dir={work / 'cache'}",
                ],
            )
        summary = run(cfg)
        assert summary["status"] == "completed", (name, summary.get("status"))
        entry = {k: repr(summary[k]) for k in METRICS}
        entry["weights_sha256"] = weights_sha256(work / name / "model.pt")
        parent = summary["parent"]
        entry["parent_test_acc"] = repr(parent["test_acc"])
        entry["parent_weights_sha256"] = weights_sha256(work / "cache" / parent["hash"] / "parent.pt")
        entry["store_key"] = store.run_dir("", run_identity(cfg)).name
        out["runs"][name] = entry
    return out


def read() -> dict[str, Any]:
    return json.loads(GOLDEN_FILE.read_text())
