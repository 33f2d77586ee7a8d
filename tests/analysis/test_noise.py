"""The noise floor (analysis/noise.py): runs paired across two roots by identity without the numerics mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssa_experiments.analysis.aggregate import collect
from ssa_experiments.analysis.noise import noise_floor, pairing_key
from ssa_experiments.cli.noise import main
from ssa_experiments.store.files import atomic_write_json


def write(root: Path, mode: str, method: str, seed: int, acc: float) -> None:
    identity = {"method": {"name": method}, "seed": seed, "compute": {"device": "cpu", "cpu_numerics": mode}}
    atomic_write_json(
        root / f"{method}-{seed}" / "summary.json",
        {"status": "completed", "method": method, "target_sparsity": 0.99, "seed": seed, "test_acc": acc,
         "identity": identity, "config": {"method": {"name": method}, "seed": seed}},
    )  # fmt: skip


def test_pairing_ignores_only_the_numerics_mode() -> None:
    a = {"seed": 1, "compute": {"device": "cpu", "cpu_numerics": "portable", "cpu_threads": 1}}
    assert pairing_key(a) == pairing_key({**a, "compute": {**a["compute"], "cpu_numerics": "native"}})
    assert pairing_key(a) != pairing_key({**a, "compute": {**a["compute"], "cpu_threads": 2}})
    assert pairing_key(a) != pairing_key({**a, "seed": 2})


def test_noise_floor_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for seed, (x, y) in enumerate([(60.0, 61.0), (70.0, 67.0), (80.0, 80.0)]):
        write(a, "portable", "one_shot", seed, x)
        write(b, "native", "one_shot", seed, y)
    write(a, "portable", "iterative", 0, 50.0)  # no twin in b: not paired
    (row,) = noise_floor(collect(a), collect(b)).to_dict("records")
    assert (row["setting"], row["n_pairs"], row["identical"]) == ("one_shot", 3, 1)
    assert row["mean_abs_diff"] == pytest.approx(4 / 3)
    assert row["max_abs_diff"] == 3.0
    assert row["seed_std"] == pytest.approx(10.0)  # 60, 70, 80
    assert row["noise_to_seed"] == pytest.approx(4 / 30)
    main([str(a), str(b), "--csv", str(tmp_path / "noise.csv")])
    assert "one_shot" in capsys.readouterr().out
    assert (tmp_path / "noise.csv").read_text().startswith("setting,target_sparsity,n_pairs")


def test_roots_with_nothing_in_common_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "a", "portable", "one_shot", 0, 1.0)
    write(tmp_path / "b", "native", "one_shot", 1, 1.0)
    with pytest.raises(SystemExit, match="no run of the first root"):
        noise_floor(collect(tmp_path / "a"), collect(tmp_path / "b"))
