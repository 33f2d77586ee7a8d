"""The paper's Table 2 competitors run for real at tiny scale (digits): FreeTickets (a DST ensemble: RigL
members from their own initialisations) and MIMO (one network, 3 heads, trained from scratch) through the
same combiner, FLOPs accounting and table as the Prune-and-Tune rows."""

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
MIMO = (
    "method=dense", "model.mimo_heads=3", "model.mimo_batch_repetitions=2", "parent.epochs=0",
    "ensemble.size=1", "ensemble.member=0", "ensemble.masks=random",
)  # fmt: skip


def test_labels_of_the_rerun_rows() -> None:
    assert label("rigl", True, "random", from_scratch=True) == "FreeTickets (DST ensemble, rigl)"
    assert label("set", False, "random", from_scratch=True).endswith("(one initialisation)")
    assert label("rigl", False, "anti_random") == "Prune and Tune + rigl"  # sparse fine-tuning of one parent
    assert label("dense", True, None, from_scratch=True, mimo_heads=3) == "MIMO (3 heads)"


def test_freetickets_and_mimo_through_the_combiner_and_table2(make_cfg, tmp_path: Path) -> None:
    from ssa_experiments.cli.figures import main as figures

    dense_runs = []
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
        dense_runs.append(
            run(make_cfg(*DIGITS, *dense, f"ensemble.member={member}", run_dir=f"runs/dense{member}"))
        )
    m = run(make_cfg(*DIGITS, *MIMO, run_dir="runs/mimo"))
    assert m["status"] == "completed" and m["sparsity"] == 0.0
    # one forward pass per training example x repetitions: the batch of every step counted twice
    assert m["flops"]["finetune"] == pytest.approx(3 * m["flops"]["forward_per_sample"] * m["steps"] * 64 * 2)
    report = combine([tmp_path / "runs"], max_k=0)
    by_method = {(e["method"], e["n_members"]): e for e in report["ensembles"]}
    assert set(by_method) == {("rigl", 2), ("dense", 2), ("dense", 1)}
    by_method = {k[0] if k[1] == 2 else "mimo": e for k, e in by_method.items()}
    assert by_method["mimo"]["complete"]
    assert by_method["rigl"]["complete"]
    assert {"test", "val", "corrupt/gaussian_noise/1"} <= set(by_method["rigl"]["splits"])
    path = tmp_path / "ensemble.json"
    path.write_text(json.dumps(report))
    out = tmp_path / "results"
    figures(["table2", "--runs", str(path), "--out", str(out)])
    md = (out / "table2.md").read_text()
    assert "| FreeTickets (DST ensemble, rigl) |" in md and "| Dense ensemble |" in md
    assert "| MIMO (3 heads) |" in md
    assert "paper's numbers" not in md  # both rerun: no placeholder rows
    assert "nan" not in md  # MIMO has no disagreement (one network): an empty cell
    numbers = pd.read_csv(out / "table2.csv")
    cost = numbers[numbers["metric"] == "training FLOPs / dense ensemble"].set_index("setting")["mean"]
    assert cost["Dense ensemble"] == pytest.approx(1.0)
    assert 0 < cost["FreeTickets (DST ensemble, rigl)"] < 1  # sparse members, no parents
    dense_total = sum(d["flops"]["parent"] + d["flops"]["finetune"] for d in dense_runs)
    assert cost["MIMO (3 heads)"] == pytest.approx(m["flops"]["finetune"] / dense_total)
