"""The baselines table (method × retraining, one table per sparsity) from fake result trees."""

from __future__ import annotations

from pathlib import Path
from statistics import mean

import pytest
from test_figures import accuracy, write_run

from ssa_experiments.analysis import aggregate
from ssa_experiments.analysis.tables import baselines
from ssa_experiments.cli.figures import main

RETRAINING = {  # column label -> what write_run is given
    "one-cycle": {"lr": "one_cycle"},
    "fine-tune": {"lr": "finetune"},
    "LR rewind": {"lr": "lr_rewind"},
    "weight rewind (k=10)": {"lr": "lr_rewind", "parent": {"epochs": 20, "rewind_epoch": 10}},
}
METHODS = {  # row label -> method and its keys
    "one-shot": ("one_shot", {}),
    "iterative (cubic)": ("iterative", {"anneal_epochs": 5, "schedule": "polynomial"}),
    "GMP (cubic, every 10 steps)": (
        "iterative", {"anneal_epochs": 5, "schedule": "polynomial", "prune_every_steps": 10},
    ),
    "temperature annealing": ("temperature_annealing", {"initial_temperature": 0.5, "anneal_epochs": 5}),
}  # fmt: skip


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("baselines") / "tree"
    for seed in range(3):
        write_run(root, "dense", 0.0, seed, lr="one_cycle")
        for s in (0.5, 0.9):
            for method, keys in METHODS.values():
                for how in RETRAINING.values():
                    write_run(root, method, s, seed, **dict(keys), **how)
    return root


def test_rows_columns_and_cells(tree: Path) -> None:
    long = baselines(aggregate.collect([str(tree)]))
    part = long[long["sparsity"] == 0.9]
    assert list(dict.fromkeys(part["setting"])) == list(METHODS)  # the baseline order, GMP after iterative
    assert list(dict.fromkeys(part["retraining"])) == list(RETRAINING)
    cell = part[(part["setting"] == "iterative (cubic)") & (part["retraining"] == "fine-tune")].iloc[0]
    want = mean(accuracy("iterative", 0.9, seed, anneal_epochs=5, schedule="polynomial") for seed in range(3))
    assert cell["mean"] == pytest.approx(want) and cell["n"] == 3
    assert set(long.loc[long["sparsity"] == 0, "setting"]) == {"dense"}


def test_one_table_per_sparsity_with_the_dense_row(tree: Path, tmp_path: Path) -> None:
    paths = main(["baselines", "--runs", str(tree), "--out", str(tmp_path)])
    assert sorted(p.name for p in paths if p.suffix == ".md") == ["baselines_s0.5.md", "baselines_s0.9.md"]
    md = (tmp_path / "baselines_s0.9.md").read_text().splitlines()
    assert md[2] == "| method | " + " | ".join(RETRAINING) + " |"
    assert md[4].startswith("| dense | ") and md[5].startswith("| one-shot | ")
    best = next(line for line in md if line.startswith("| temperature annealing"))
    assert best.count("**") == 2 * 4  # the made-up numbers put annealing first in every column
    assert md[4].count("**") == 0  # dense is the reference, never bold


def test_two_settings_in_one_cell_are_refused(tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write_run(root, "one_shot", 0.9, 0, lr="one_cycle")
    write_run(root, "temperature_annealing", 0.9, 0, lr="one_cycle", initial_temperature=0.5, anneal_epochs=5)
    write_run(root, "temperature_annealing", 0.9, 0, lr="one_cycle", initial_temperature=1.0, anneal_epochs=5)
    with pytest.raises(SystemExit, match="one setting per method × retraining"):
        baselines(aggregate.collect([str(root)]))
