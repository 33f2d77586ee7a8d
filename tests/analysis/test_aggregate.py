"""collect() reads every run back; table() shows mean ± std over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ssa_experiments.analysis.aggregate import (
    budget,
    collect,
    epochs,
    epochs_csv,
    from_wandb,
    paired_csv,
    read_epochs,
    read_runs,
    settings,
    table,
    write_csv,
)
from ssa_experiments.cli.aggregate import main
from ssa_experiments.store.files import atomic_write_json


def write(root: Path, name: str, **summary: object) -> None:
    atomic_write_json(root / name / "summary.json", {"status": "completed", **summary})


def test_collect_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seed, acc in enumerate([90.0, 92.0]):
        write(
            tmp_path,
            f"os{seed}",
            method="one_shot",
            target_sparsity=0.9,
            seed=seed,
            test_acc=acc,
            parent={"source": "cache", "test_acc": 99.0},
            steps=100,
            epochs_at_target=10,
            lr_trace_sha256="abc",
        )
    write(tmp_path, "d0", method="dense", target_sparsity=0.0, seed=0, test_acc=99.0)
    write(
        tmp_path / "nested", "ta0", method="temperature_annealing", target_sparsity=0.9, seed=0,
        test_acc=95.0, steps=100, epochs_at_target=5, lr_trace_sha256="abc",
    )  # fmt: skip
    write(tmp_path, "bad", method="iterative", target_sparsity=0.9, seed=0, status="failed")
    df = collect(tmp_path)
    assert len(df) == 5 and set(df["status"]) == {"completed", "failed"}
    assert df.loc[df["run_dir"].str.endswith("os0"), "parent_source"].item() == "cache"
    t = table(df)
    assert list(t.index) == ["dense", "one_shot", "temperature_annealing"]  # failed runs are not averaged
    assert t.loc["one_shot", "0.9"] == "91.00 ± 1.41 (n=2)"
    assert t.loc["dense", "0"] == "99.00 (n=1)"
    b = budget(df)
    assert b.loc["one_shot", "steps"] == "100" and b.loc["temperature_annealing", "epochs_at_target"] == "5"
    main([str(tmp_path), "--csv", str(tmp_path / "runs.csv")])
    out = capsys.readouterr().out
    assert "5 runs" in out and "91.00 ± 1.41" in out and (tmp_path / "runs.csv").exists()


def _cfg(method: str, **method_keys: object) -> dict:
    return {"method": {"name": method, **method_keys}, "seed": 0, "sparsity": 0.9, "output_dir": "x"}


def test_a_swept_key_gives_one_row_per_value_and_holes_are_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "sweep_a", tmp_path / "sweep_b"
    for seed, (t, acc) in enumerate([(0.25, 80.0), (0.25, 82.0), (0.5, 90.0), (0.5, 92.0)]):
        cfg = {**_cfg("temperature_annealing", initial_temperature=t), "seed": seed}
        write(a, f"t{t}_{seed}", method="temperature_annealing", target_sparsity=0.9, seed=seed, test_acc=acc,
              config=cfg)  # fmt: skip
    write(b, "os", method="one_shot", target_sparsity=0.9, seed=0, test_acc=70.0, config=_cfg("one_shot"))
    write(b, "dead", method="one_shot", target_sparsity=0.9, seed=1, status="diverged", test_acc=10.0)
    killed = b / "killed"  # a run killed before its summary: a log and Hydra's record of its config
    (killed / ".hydra").mkdir(parents=True)
    (killed / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (killed / ".hydra" / "config.yaml").write_text("method:\n  name: iterative\nseed: 3\n")
    df = collect([a, b])  # several roots
    assert len(df) == 7
    assert df.loc[df["run_dir"].str.endswith("killed"), "status"].item() == "incomplete"
    assert df.loc[df["run_dir"].str.endswith("killed"), "config"].item()["method"]["name"] == "iterative"
    t = table(df)
    assert list(t.index) == [
        "one_shot",
        "temperature_annealing method.initial_temperature=0.25",
        "temperature_annealing method.initial_temperature=0.5",
    ]
    assert t.loc["temperature_annealing method.initial_temperature=0.5", "0.9"] == "91.00 ± 1.41 (n=2)"
    assert t.loc["one_shot", "0.9"] == "70.00 (n=1)"  # the diverged run is not averaged in
    main([str(a), str(b)])
    out = capsys.readouterr().out
    assert (
        "7 runs under" in out
        and "not in the table: diverged" in out
        and "not in the table: incomplete" in out
    )


def test_wandb_runs_give_the_same_frame() -> None:
    """Objects shaped like wandb.Api().runs(...): flat dotted config, summary keys nested with '/'."""
    from types import SimpleNamespace

    run = SimpleNamespace(
        id="abc", path=["me", "proj", "abc"], state="finished",
        config={"method.name": "temperature_annealing", "method.initial_temperature": 0.5, "seed": 1},
        summary={"status": "completed", "method": "temperature_annealing", "target_sparsity": 0.9, "seed": 1,
                 "test_acc": 91.0, "steps": 100, "parent/source": "cache", "parent/test_acc": 99.0},
    )  # fmt: skip
    crashed = SimpleNamespace(id="def", path=["me", "proj", "def"], state="crashed", config={}, summary={})
    df = from_wandb([run, crashed])
    row = df.iloc[0]
    assert row["test_acc"] == 91.0 and row["parent_source"] == "cache" and row["parent_test_acc"] == 99.0
    assert row["config"]["method"]["initial_temperature"] == 0.5
    assert df.iloc[1]["status"] == "incomplete"
    assert table(df).loc["temperature_annealing", "0.9"] == "91.00 (n=1)"


def test_runs_that_compute_the_same_thing_count_once(tmp_path: Path) -> None:
    """Dense launched at every sparsity of a sweep, one-shot next to a temperature sweep, another number of
    data workers: the same result per seed, not n copies of it (that would shrink the std)."""
    for seed, acc in enumerate([90.0, 91.0, 92.0]):
        for s in (0.5, 0.9):
            write(tmp_path, f"d{seed}_{s}", method="dense", target_sparsity=0.0, seed=seed, test_acc=acc,
                  config={**_cfg("dense"), "seed": seed, "sparsity": s})  # fmt: skip
        for t in (0.25, 0.5):
            cfg = {
                **_cfg("one_shot", initial_temperature=t),
                "seed": seed,
                "data": {"num_workers": int(t * 8)},
            }
            write(tmp_path, f"os{seed}_{t}", method="one_shot", target_sparsity=0.9, seed=seed, test_acc=acc,
                  config=cfg)  # fmt: skip
    t = table(collect(tmp_path))
    assert list(t.index) == ["dense", "one_shot"]
    assert t.loc["dense", "0"] == "91.00 ± 1.00 (n=3)" and t.loc["one_shot", "0.9"] == "91.00 ± 1.00 (n=3)"


def test_the_csv_is_a_complete_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """write_csv/read_runs give back the same configs, so the same settings and table; the epoch rows of the
    completed runs go to epochs.csv next to the runs CSV."""
    root = tmp_path / "sweep"
    for seed in range(2):
        for t, n in ((0.25, 2), (1.0, 2), (1.0, 10)):
            cfg = {**_cfg("temperature_annealing", initial_temperature=t, anneal_epochs=n, schedule="linear"),
                   "seed": seed, "train": {"amp": True, "max_steps_per_epoch": 0}, "parent": {"path": None},
                   "optimizer": {"betas": [0.9, 0.999]}, "tag": "1"}  # fmt: skip
            write(root, f"t{t}_{n}_{seed}", method="temperature_annealing", target_sparsity=0.9, seed=seed,
                  test_acc=80.0 + t + seed, val_acc=81.0, config=cfg)  # fmt: skip
            rows = [{"epoch": e, "test_acc": 70.0 + e, "val_acc": 71.0, "at_target": e > n,
                     "layer_sparsity": {"0": 0.5}} for e in (1, 2, 3)]  # fmt: skip
            lines = [json.dumps(r) for r in rows[:2]] + ['{"note": "not an epoch row"}', json.dumps(rows[2])]
            (root / f"t{t}_{n}_{seed}" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        write(root, f"os{seed}", method="one_shot", target_sparsity=0.9, seed=seed, test_acc=70.0,
              config={**_cfg("one_shot", initial_temperature=0.5), "seed": seed})  # fmt: skip
    write(
        root, "bad", method="one_shot", target_sparsity=0.9, seed=5, status="failed", config=_cfg("one_shot")
    )
    df = collect(root)
    csv = write_csv(df, tmp_path / "runs.csv")
    back = read_runs(csv)
    assert back["config"].tolist() == df["config"].tolist()
    assert settings(back).tolist() == settings(df).tolist()
    assert "temperature_annealing method.anneal_epochs=10 method.initial_temperature=1.0" in set(settings(df))
    assert table(back).equals(table(df)) and list(back["status"]) == list(df["status"])
    rows = epochs(df)
    assert len(rows) == 6 * 3 and "layer_sparsity" not in rows and "note" not in rows  # epoch rows only
    assert set(rows["setting"]) == set(settings(df[df["method"] == "temperature_annealing"]))
    main([str(root), "--csv", str(tmp_path / "runs.csv")])
    assert "epochs.csv" in capsys.readouterr().out and epochs_csv(csv) == tmp_path / "epochs.csv"
    again = read_epochs(tmp_path / "epochs.csv")
    assert again[["run_dir", "epoch", "test_acc", "setting"]].equals(
        rows[["run_dir", "epoch", "test_acc", "setting"]]
    )
    assert epochs_csv(tmp_path / "fig1.csv") == tmp_path / "fig1_epochs.csv"


def test_paired_table_under_the_usual_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--paired: each setting against one-shot seed by seed (seed 2 has no one-shot run: not paired), with
    --csv its numbers next to the runs CSV; --paired dense pairs every sparsity with dense of its seed."""
    for seed, (os_acc, ta_acc) in enumerate([(80.0, 81.0), (82.0, 85.0), (None, 99.0)]):
        if os_acc is not None:
            write(tmp_path, f"os{seed}", method="one_shot", target_sparsity=0.9, seed=seed, test_acc=os_acc,
                  config={**_cfg("one_shot"), "seed": seed})  # fmt: skip
        write(tmp_path, f"ta{seed}", method="temperature_annealing", target_sparsity=0.9, seed=seed,
              test_acc=ta_acc, config={**_cfg("temperature_annealing"), "seed": seed})  # fmt: skip
        write(tmp_path, f"d{seed}", method="dense", target_sparsity=0.0, seed=seed, test_acc=90.0 + seed,
              config={**_cfg("dense"), "seed": seed})  # fmt: skip
    main([str(tmp_path), "--paired", "--csv", str(tmp_path / "runs.csv"), "--bootstrap-seed", "3"])
    out = capsys.readouterr().out
    head = "Δ test_acc vs one_shot, mean per-seed difference [95% bootstrap CI], wins/n"
    assert head in out and out.index(head) > out.index("budget per method")
    row = next(line for line in out.splitlines() if line.startswith("temperature_annealing") and "[" in line)
    assert row.split()[1:] == ["+2.00", "[+1.00,", "+3.00]", "2/2"]  # +1 and +3; seed 2 unpaired
    numbers = pd.read_csv(tmp_path / "runs_paired.csv")
    assert numbers[["setting", "n_pairs", "mean_diff", "wins", "ties", "bootstrap_seed"]].values.tolist() == [
        ["temperature_annealing", 2, 2.0, 2, 0, 3]
    ]
    assert paired_csv(tmp_path / "fig1.csv") == tmp_path / "fig1_paired.csv"
    main([str(tmp_path), "--paired", "dense", "--level", "0.9"])
    out = capsys.readouterr().out
    assert "vs dense, mean per-seed difference [90% bootstrap CI]" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.split("vs dense")[1].splitlines()[3:]}
    assert rows["one_shot"][0] == "-9.50" and rows["one_shot"][-1] == "0/2"  # 80 - 90, 82 - 91
    assert (
        rows["temperature_annealing"][0] == f"{(-9 - 6 + 7) / 3:+.2f}"
        and rows["temperature_annealing"][-1] == "1/3"
    )
    main([str(tmp_path)])
    assert "Δ" not in capsys.readouterr().out  # without --paired: the output as before


def test_an_unknown_metric_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "a", method="one_shot", target_sparsity=0.9, seed=0, test_acc=90.0)
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path), "--metric", "bogus"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--metric bogus" in err[0] and "test_acc, val_acc" in err[0]


def test_no_completed_run_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    atomic_write_json(tmp_path / "f" / "summary.json", {"status": "failed", "method": "one_shot", "seed": 0})
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path)])
    assert info.value.code == f"no completed runs under {tmp_path}"
    assert "Empty DataFrame" not in capsys.readouterr().out


def test_one_seed_shows_no_spread_and_several_do() -> None:
    from ssa_experiments.analysis.aggregate import cell

    assert cell(91.0, float("nan"), 1) == "91.00 (n=1)"
    assert cell(91.0, 1.5, 3) == "91.00 ± 1.50 (n=3)"


def test_the_written_tables_show_no_spread_for_one_seed(tmp_path: Path) -> None:
    from ssa_experiments.analysis.tables import write

    long = pd.DataFrame({"setting": ["a", "b"], "sparsity": [0.9, 0.9], "mean": [91.0, 80.0],
                         "std": [0.0, 1.5], "n": [1, 3]})  # fmt: skip
    md = write(long, tmp_path, "t", "method")[0].read_text()
    assert "91.00 (n=1)" in md and "± 0.00" not in md and "80.00 ± 1.50 (n=3)" in md
