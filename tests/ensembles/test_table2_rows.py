"""The paper's Table 2 competitors run for real at tiny scale (digits): FreeTickets (a DST ensemble: RigL
members from their own initialisations) through the same combiner, FLOPs accounting and table as the
Prune-and-Tune rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ssa_experiments.ensembles.combine import combine
from ssa_experiments.ensembles.report import label
from ssa_experiments.training.run import run

DIGITS = (
    "data=digits", "model.width=8", "train.finetune_epochs=3", "train.batch_size=64",
    "ensemble.size=2", "ensemble.corruptions=[gaussian_noise]", "ensemble.severities=[1]",
    "eval.bn_recalibration_batches=2",
)  # fmt: skip
FREETICKETS = (
    "method=rigl", "sparsity=0.8", "parent.epochs=0", "ensemble.independent_parents=true",
    "ensemble.masks=random", "method.update_every=4", "method.end_fraction=0.75", "pruning.scope=layerwise",
)  # fmt: skip


def test_labels_of_the_rerun_rows() -> None:
    assert label("rigl", True, "random", from_scratch=True) == "FreeTickets (DST ensemble, rigl)"
    assert label("set", False, "random", from_scratch=True).endswith("(one initialisation)")
    assert label("rigl", False, "anti_random") == "Prune and Tune + rigl"  # sparse fine-tuning of one parent
    assert label("dense", True, None, from_scratch=True, mimo_heads=3) == "MIMO (3 heads)"


def test_freetickets_members_through_the_combiner_and_table2(make_cfg, tmp_path: Path) -> None:
    from ssa_experiments.cli.figures import main as figures

    for member in (0, 1):
        s = run(make_cfg(*DIGITS, *FREETICKETS, f"ensemble.member={member}", run_dir=f"runs/ft{member}"))
        assert s["status"] == "completed" and s["parent"]["source"] == "initialisation"
        assert s["flops"]["parent"] == 0.0  # trained from scratch: no parent to pay for
        assert s["flops"]["finetune_dense_gradients"] > 0  # RigL's dense gradients at its updates
        rows = [json.loads(x) for x in (tmp_path / f"runs/ft{member}/metrics.jsonl").read_text().splitlines()]
        assert len({r["sparsity"] for r in rows}) == 1 and rows[-1]["mask_updates"] > 0
        dense = (
            "method=dense",
            "parent.epochs=3",
            "ensemble.independent_parents=true",
            "train.finetune_epochs=1",
        )
        run(make_cfg(*DIGITS, *dense, f"ensemble.member={member}", run_dir=f"runs/dense{member}"))
    report = combine([tmp_path / "runs"], max_k=0)
    by_method = {e["method"]: e for e in report["ensembles"]}
    assert set(by_method) == {"rigl", "dense"} and by_method["rigl"]["n_members"] == 2
    assert by_method["rigl"]["complete"]
    assert {"test", "val", "corrupt/gaussian_noise/1"} <= set(by_method["rigl"]["splits"])
    path = tmp_path / "ensemble.json"
    path.write_text(json.dumps(report))
    out = tmp_path / "results"
    figures(["table2", "--runs", str(path), "--out", str(out)])
    md = (out / "table2.md").read_text()
    assert "| FreeTickets (DST ensemble, rigl) |" in md and "| Dense ensemble |" in md
    assert "| FreeTickets | paper's numbers" not in md  # rerun: no placeholder row
    assert "| MIMO | paper's numbers, not rerun" in md
    numbers = pd.read_csv(out / "table2.csv")
    cost = numbers[numbers["metric"] == "training FLOPs / dense ensemble"].set_index("setting")["mean"]
    assert cost["Dense ensemble"] == pytest.approx(1.0)
    assert 0 < cost["FreeTickets (DST ensemble, rigl)"] < 1  # sparse members, no parents
