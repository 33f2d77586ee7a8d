"""Figures and tables from fake result trees (no training): selection on validation, every command from a tree
and from its CSVs, Table 1's bold cell and counts, failed and incomplete runs left out."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from ssa_experiments.analysis import aggregate, figures
from ssa_experiments.analysis.figures.fig1 import fig1
from ssa_experiments.analysis.figures.select import best_config, matches, prepare
from ssa_experiments.analysis.tables import markdown, table1
from ssa_experiments.cli.aggregate import main as aggregate_main
from ssa_experiments.cli.figures import COMMANDS, PAIRED, main
from ssa_experiments.store.files import atomic_write_json

EPOCHS = 8
PARENT = 96.0  # the dense parent's test accuracy at seed 0 (+1 per seed; validation: 1 less)
SPARSITIES = (0.5, 0.9)


def accuracy(method: str, sparsity: float, seed: int, **keys: object) -> float:
    """A made-up final test accuracy with the paper's shape: annealing beats one-shot, best near τ0 = 0.5."""
    if method == "dense":
        return 95.0 + 0.3 * seed
    acc = 90.0 - 20 * (sparsity - 0.5) + 0.4 * seed - 3 * (keys.get("criterion") == "random")
    n = float(keys.get("anneal_epochs", 0))  # type: ignore[arg-type]
    if method == "temperature_annealing":
        acc += 1.5 - 2 * abs(float(keys["initial_temperature"]) - 0.5) + 0.2 * n  # type: ignore[arg-type]
    elif method == "random_annealing":
        acc += 0.5 + 0.1 * n
    elif method == "iterative":
        acc += (1.2 if keys.get("schedule") == "polynomial" else 0.6) + 0.1 * n
    return acc


def write_run(
    root: Path, method: str, sparsity: float, seed: int, status: str = "completed", **keys: object
) -> Path:
    """A run directory as run.py leaves it: summary.json (last) and one metrics.jsonl line per epoch."""
    criterion = keys.pop("criterion", "magnitude")
    schedule = keys.pop("lr", "constant")
    parent = keys.pop("parent", {"epochs": 20, "rewind_epoch": None})
    name = ",".join(
        f"{k}={v}" for k, v in {"method": method, **keys, "seed": seed, "sparsity": sparsity}.items()
    )
    run_dir = root / f"criterion={criterion},lr={schedule},rewind={parent['rewind_epoch']},{name}"
    run_dir.mkdir(parents=True)
    config = {
        "method": {"name": method, **keys},
        "pruning": {"criterion": criterion, "scope": "global"},
        "lr": {"name": schedule, "lr": 0.1},
        "parent": parent,
        "model": {"arch": "resnet18"},
        "data": {"name": "cifar10", "num_workers": 2},
        "seed": seed,
        "sparsity": sparsity,
        "output_dir": str(run_dir),
    }
    final = accuracy(method, sparsity, seed, criterion=criterion, **keys)
    n = int(keys.get("anneal_epochs", 0))  # type: ignore[call-overload]
    with open(run_dir / "metrics.jsonl", "w") as f:
        for epoch in range(1, EPOCHS + 1):
            test = final - 12 * (1 - epoch / EPOCHS) ** 2 - (4.0 if epoch <= n else 0.0)
            row = {"epoch": epoch, "step": 10 * epoch, "lr": 0.1, "at_target": epoch > n, "train_loss": 0.5,
                   "test_acc": test, "val_acc": test + 0.5, "sparsity": sparsity,
                   "layer_sparsity": {"0": 0.5}}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    if status == "incomplete":
        return run_dir
    atomic_write_json(run_dir / "summary.json", {
        "status": status, "method": method, "target_sparsity": 0.0 if method == "dense" else sparsity,
        "seed": seed, "test_acc": final, "val_acc": final + 0.5, "model": "resnet18", "data": "cifar10",
        "epochs": EPOCHS, "epochs_at_target": EPOCHS - n, "steps": 10 * EPOCHS, "lr_trace_sha256": "01234567",
        "config": config,
        "parent": {"source": "trained", "test_acc": PARENT + seed, "val_acc": PARENT - 1 + seed},
    })  # fmt: skip
    return run_dir


def write_tree(root: Path, kind: str) -> Path:
    """The sweeps behind fig1, fig2 and table1, at two sparsities, three seeds, plus the dense reference."""
    lr = "constant" if kind == "fig1" else "one_cycle"
    for seed in range(3):
        write_run(root, "dense", 0.0, seed, lr=lr)
        for s in SPARSITIES:
            if kind == "fig1":
                write_run(root, "one_shot", s, seed, lr=lr)
                for tau in (0.25, 0.5, 1.0):
                    for n in (2, 5):
                        write_run(root, "temperature_annealing", s, seed, lr=lr, initial_temperature=tau,
                                  anneal_epochs=n)  # fmt: skip
            elif kind == "fig2":
                write_run(root, "one_shot", s, seed, lr=lr)
                for n in (2, 5):
                    write_run(root, "random_annealing", s, seed, lr=lr, anneal_epochs=n)
                    write_run(
                        root,
                        "temperature_annealing",
                        s,
                        seed,
                        lr=lr,
                        initial_temperature=0.5,
                        anneal_epochs=n,
                    )
                    for schedule in ("linear", "polynomial"):
                        write_run(root, "iterative", s, seed, lr=lr, anneal_epochs=n, schedule=schedule)
            else:
                for criterion in ("magnitude", "random"):
                    write_run(root, "one_shot", s, seed, lr=lr, criterion=criterion)
                    write_run(root, "iterative", s, seed, lr=lr, criterion=criterion, anneal_epochs=5,
                              schedule="linear")  # fmt: skip
                    write_run(root, "temperature_annealing", s, seed, lr=lr, criterion=criterion,
                              initial_temperature=0.5, anneal_epochs=5)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each sweep as a tree and as the CSVs aggregate writes (runs.csv and epochs.csv next to it)."""
    out = {}
    for kind in ("fig1", "fig2", "table1"):
        root = write_tree(tmp_path_factory.mktemp(kind) / "tree", kind)
        aggregate_main([str(root), "--csv", str(root.parent / "runs.csv")])
        out[kind] = (root, root.parent / "runs.csv")
    return out


def test_best_configuration_is_chosen_on_validation_not_test() -> None:
    """Setting A has the better validation accuracy, B the better test accuracy: validation picks A, and only
    the paper's optimistic selection on test picks B."""
    rows = [
        {"status": "completed", "method": "temperature_annealing", "target_sparsity": 0.9, "seed": seed,
         "val_acc": val + seed, "test_acc": test + seed,
         "config": {"method": {"name": "temperature_annealing", "initial_temperature": tau}}}
        for seed in range(3) for tau, val, test in ((0.25, 90.0, 80.0), (1.0, 85.0, 88.0))
    ]  # fmt: skip
    df = pd.DataFrame(rows)
    on_val = best_config(df).iloc[0]
    assert on_val["setting"] == "temperature_annealing method.initial_temperature=0.25"
    assert (on_val["score"], on_val["mean"], on_val["count"]) == (91.0, 81.0, 3)
    on_test = best_config(df, by="test_acc").iloc[0]
    assert on_test["setting"] == "temperature_annealing method.initial_temperature=1.0"


def test_the_command_table_is_the_help_s_list() -> None:
    """Every NAME the --help text describes has a row in COMMANDS and no row is undocumented; the names
    that take --paired are the ones the help says do."""
    doc = figures.__doc__ or ""
    listing = doc[doc.index("NAME is one of") : doc.index("Each figure is written")]
    assert sorted(re.findall(r"^  (\w+)  ", listing, flags=re.M)) == sorted(COMMANDS)
    assert "``--paired REF`` (table1, table, baselines)" in doc and "``paired`` draws the same numbers" in doc
    assert PAIRED == ["table1", "table", "baselines", "paired"]


@pytest.mark.parametrize("name", [n for n, command in COMMANDS.items() if command.source == "runs"])
@pytest.mark.parametrize("source", ["tree", "csv"])
def test_every_command_writes_its_files(
    trees: dict[str, tuple[Path, Path]], tmp_path: Path, name: str, source: str
) -> None:
    """Each command drawn from runs, from a tree and from its CSVs (schedules: below; table2 and
    ensemble_size: tests/ensembles/test_members.py, from a combiner's report)."""
    kind = "fig1" if name in ("fig1", "curves") else "fig2" if name == "fig2" else "table1"
    tree, csv = trees[kind]
    # the baselines refuse two criteria in one cell
    where = ["--where", "pruning.criterion=magnitude"] if name == "baselines" else []
    if name == "paired":  # every setting against one-shot magnitude, pairs sharing the LR schedule
        where = ["--paired", "one_shot pruning.criterion=magnitude", "--pair-on", "lr.name"]
    paths = main([name, "--runs", str(tree if source == "tree" else csv), "--out", str(tmp_path), *where])
    suffixes = {".png", ".pdf"} if name in ("fig1", "fig2", "curves") else {".md", ".tex", ".csv"}
    suffixes = {".png", ".pdf", ".csv"} if name == "paired" else suffixes
    assert {p.suffix for p in paths} == suffixes
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)


def test_select_on_test_says_so(trees: dict[str, tuple[Path, Path]]) -> None:
    done = prepare(aggregate.read_runs(trees["fig1"][1]))
    assert "selected on validation" in fig1(done, "val_acc", "x").get_suptitle()
    assert "selected on test (optimistic)" in fig1(done, "test_acc", "x").get_suptitle()


def test_table1_bold_dense_and_counts(trees: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    long = table1(aggregate.read_runs(trees["table1"][1]))
    assert list(dict.fromkeys(long["setting"])) == [
        "dense",
        "magnitude / one-shot",
        "magnitude / iterative",
        "magnitude / temperature annealing",
        "random / one-shot",
        "random / iterative",
        "random / temperature annealing",
    ]
    assert set(long["n"]) == {3}
    text = markdown(long, "criterion / method", spread_dense=True)
    lines = {line.split(" | ")[0].removeprefix("| "): line for line in text.splitlines()}
    assert lines["magnitude / temperature annealing"].count("**") == 4  # best in both columns
    assert "**" not in lines["dense"] and "95.30 ± 0.30 (n=3)" in lines["dense"]  # never bolded
    assert "90.40 ± 0.40 (n=3)" in lines["magnitude / one-shot"]  # 90 + 0.4 seed at 50%
    main(["table1", "--runs", str(trees["table1"][0]), "--out", str(tmp_path)])
    tex = (tmp_path / "table1.tex").read_text()
    assert tex.count("\\textbf{") == 2 and "50\\%" in tex


def test_failed_and_incomplete_runs_are_not_plotted(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree", "fig1")
    write_run(root, "one_shot", 0.9, 7, status="failed")  # its summary says 80.x: must not move the band
    write_run(root, "temperature_annealing", 0.9, 8, status="incomplete", initial_temperature=0.75,
              anneal_epochs=5)  # fmt: skip
    df = aggregate.collect(root)
    assert set(df["status"]) == {"completed", "failed", "incomplete"}
    done = prepare(df)
    assert set(done["status"]) == {"completed"} and 0.75 not in set(done["flat"].map(lambda f: f.get(TAU)))
    fig = fig1(done, "val_acc", "x")
    one_shot = [ln for ln in fig.axes[1].get_lines() if ln.get_label().startswith("one-shot")]
    assert one_shot[0].get_ydata()[0] == pytest.approx(82.4)  # 90 - 8 + 0.4 (mean of seeds 0..2)
    assert 0.75 not in list(fig.axes[1].get_xticks())


TAU = "method.initial_temperature"


def test_where_keeps_methods_that_ignore_the_key(trees: dict[str, tuple[Path, Path]]) -> None:
    done = prepare(aggregate.read_runs(trees["fig1"][1]), [("method.anneal_epochs", "5.0")])
    assert set(done["method"]) == {"dense", "one_shot", "temperature_annealing"}
    assert set(done.loc[done["method"] == "temperature_annealing", "flat"].map(lambda f: f[TAU])) == {
        0.25, 0.5, 1.0,
    }  # fmt: skip
    assert not matches("one_shot", {"pruning": {"criterion": "random"}}, [("pruning.criterion", "magnitude")])
    assert matches("iterative", {"method": {"schedule": "linear"}}, [("method.schedule", "linear")])


def test_irrelevant_input_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    for seed in range(2):
        write_run(root, "one_shot", 0.9, seed)
    with pytest.raises(SystemExit, match="fig1 needs temperature_annealing runs"):
        main(["fig1", "--runs", str(root), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="fig2 needs"):
        main(["fig2", "--runs", str(root), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="no completed runs"):
        main(["table", "--runs", str(root), "--out", str(tmp_path), "--where", "seed=5"])


def test_curves_from_csv_need_the_epochs_csv(trees: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    csv = tmp_path / "copy.csv"
    csv.write_text(trees["fig1"][1].read_text().replace(str(trees["fig1"][0]), "/nowhere"))
    with pytest.raises(SystemExit, match="curves needs per-epoch data"):
        main(["curves", "--runs", str(csv), "--out", str(tmp_path)])
    rows = aggregate.read_epochs(trees["fig1"][1].with_name("epochs.csv"))
    assert len(rows) == 3 * (1 + len(SPARSITIES) * 7) * EPOCHS and not math.isnan(rows["val_acc"].iloc[0])


def test_expected_density_of_the_schedules_by_hand() -> None:
    from ssa_experiments.analysis.figures.schedules import expected_density

    # s = 0.99, tau0 = 0.5, n = 5: d0 = 0.01 + 0.99 * 0.5 = 0.505 (issue 16's cliff: 10.9 % -> 1 % at epoch 5)
    assert expected_density(4.5, "linear", 0.99, 5, granularity="epoch") == pytest.approx(0.109)
    assert expected_density(4.5, "linear", 0.99, 5) == pytest.approx(0.01 + 0.1 * 0.495)
    assert expected_density(2.5, "geometric", 0.99, 5) == pytest.approx(math.sqrt(0.505 * 0.01))
    assert expected_density(5.0, "geometric", 0.99, 5) == pytest.approx(0.01)
    assert expected_density(4.0, "linear", 0.99, 5, method="iterative") == pytest.approx(1 - 0.99 * 0.8)


def test_schedules_need_no_runs_and_the_others_do(tmp_path: Path) -> None:
    paths = main(["schedules", "--out", str(tmp_path), "--sparsity", "0.98"])
    assert [p.name for p in paths] == ["schedules_s0.98.png", "schedules_s0.98.pdf"]
    with pytest.raises(SystemExit):
        main(["fig1", "--out", str(tmp_path)])


def test_paired_is_refused_where_a_command_has_no_table(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["fig1", "--runs", str(tmp_path), "--out", str(tmp_path), "--paired", "one_shot"])
    assert refused.value.code == 2
    assert capsys.readouterr().err.endswith(
        "error: --paired applies to table1, table, baselines and paired, not fig1\n"
    )


def test_paired_tables_next_to_the_tables(trees: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """--paired one_shot: every Table 1 cell against one-shot of the same criterion and seed. In the fake
    tree temperature annealing (τ0 = 0.5, n = 5) is one-shot + 2.5 at every seed, iterative one-shot + 1.1."""
    paths = main(
        ["table1", "--runs", str(trees["table1"][1]), "--out", str(tmp_path), "--paired", "one_shot"]
    )
    assert [p.name for p in paths] == [
        "table1.md", "table1.tex", "table1.csv", "table1_paired.md", "table1_paired.tex", "table1_paired.csv",
    ]  # fmt: skip
    md = (tmp_path / "table1_paired.md").read_text()
    lines = {line.split(" | ")[0].removeprefix("| "): line for line in md.splitlines()}
    assert lines["random / temperature annealing"] == (
        "| random / temperature annealing | +2.50 [+2.50, +2.50] 3/3 | +2.50 [+2.50, +2.50] 3/3 |"
    )
    assert "magnitude / one-shot" not in lines and "dense" not in lines  # the reference; dense: no pair
    assert "**" not in md and md.startswith("Δ test accuracy (percentage points) vs one_shot")
    numbers = pd.read_csv(tmp_path / "table1_paired.csv")
    row = numbers[(numbers["setting"] == "magnitude / iterative") & (numbers["sparsity"] == 0.9)].iloc[0]
    assert (row["n_pairs"], row["wins"], row["reference"]) == (3, 3, "one_shot pruning.criterion=magnitude")
    assert row["mean_diff"] == pytest.approx(1.1)
    assert "+1.10 [+1.10, +1.10] 3/3" in (tmp_path / "table1_paired.tex").read_text()
    # the baselines, one paired table per sparsity; vs dense: 90 - 20 (s - 0.5) + 0.4 seed - (95 + 0.3 seed)
    paths = main(["baselines", "--runs", str(trees["table1"][1]), "--out", str(tmp_path), "--where",
                  "pruning.criterion=magnitude", "--paired", "dense"])  # fmt: skip
    assert {p.name for p in paths} >= {"baselines_s0.5_paired.md", "baselines_s0.9_paired.csv"}
    md = (tmp_path / "baselines_s0.9_paired.md").read_text()
    assert "| one-shot | -12.90 [-13.00, -12.80] 0/3 |" in md
    with pytest.raises(SystemExit, match="no completed soft_annealing run"):
        main(
            ["table", "--runs", str(trees["table1"][1]), "--out", str(tmp_path), "--paired", "soft_annealing"]
        )


def test_the_paired_figure_draws_paireds_numbers(trees: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    """One point per setting and sparsity at paired()'s mean, its interval as the line, wins/n beside it;
    the CSV beside the figure is paired()'s frame."""
    from ssa_experiments.analysis.figures.forest import forest
    from ssa_experiments.analysis.paired import paired

    done = prepare(aggregate.read_runs(trees["table1"][1]))
    ref = "one_shot pruning.criterion=magnitude"
    fig, numbers = forest(done, ref, match=["lr.name"])
    expected = paired(done, ref, match=["lr.name"])
    pd.testing.assert_frame_equal(numbers, expected)
    assert len(fig.axes) == len(SPARSITIES)
    for ax, s in zip(fig.axes, SPARSITIES, strict=True):
        at = expected[expected["target_sparsity"] == s]
        points = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_marker() == "o")
        assert points == sorted(at["mean_diff"])
        texts = {t.get_text() for t in ax.texts}
        assert {f"{w}/{n}" for w, n in zip(at["wins"], at["n_pairs"], strict=True)} <= texts
    main(["paired", "--runs", str(trees["table1"][1]), "--out", str(tmp_path), "--paired", ref,
          "--pair-on", "lr.name"])  # fmt: skip
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "paired.csv"), expected, check_dtype=False)
    with pytest.raises(SystemExit):
        main(["paired", "--runs", str(trees["table1"][1]), "--out", str(tmp_path)])  # no reference


def test_errorbars_ci_draw_the_bootstrap_interval_of_the_mean(trees: dict[str, tuple[Path, Path]]) -> None:
    """fig1's error bars: ± std by default; with --errorbars ci the seeded bootstrap interval of the mean over
    the seeds. The fake accuracies of a point are v, v + 0.4, v + 0.8 (std 0.4); at 95% their 27 resamples
    put the interval on the extremes v, v + 0.8 (each has probability 1/27 > 2.5%): the same as ± std, so
    the test draws a 50% interval, v + 0.8/3 to v + 1.6/3 (the resample means' quartiles)."""

    from ssa_experiments.analysis.paired import Bootstrap, bootstrap_ci

    done = prepare(aggregate.read_runs(trees["fig1"][1]))
    ta = done[(done["method"] == "temperature_annealing") & (done["target_sparsity"] == 0.5)]
    first = ta[ta["flat"].map(lambda f: f[TAU] == 0.25 and f["method.anneal_epochs"] == 2)]
    values = first.sort_values("seed")["test_acc"].tolist()
    mean, lo, hi = bootstrap_ci(values, level=0.5)
    assert (lo, hi) == pytest.approx((values[0] + 0.8 / 3, values[0] + 1.6 / 3))

    def bar(fig: Figure) -> tuple[float, float]:  # the first error bar (τ0 = 0.25, n = 2) of the 50% panel
        segment = fig.axes[0].containers[0].lines[2][0].get_segments()[0]
        return float(segment[0][1]), float(segment[1][1])

    assert bar(fig1(done, "val_acc", "x")) == pytest.approx((mean - 0.4, mean + 0.4))
    fig = fig1(done, "val_acc", "x", ci=Bootstrap(level=0.5))
    assert bar(fig) == pytest.approx((lo, hi))
    assert "50% bootstrap CI of the mean" in fig.get_suptitle()


# ---- readable at a glance (issue 25): words in legends, no empty panel, integer epochs, greyscale-safe ----


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _curves(trees: dict[str, tuple[Path, Path]], kind: str) -> Figure:
    from ssa_experiments.analysis.figures.curves import curves, load_epochs

    runs = aggregate.read_runs(trees[kind][1])
    fig, _ = curves(prepare(runs), load_epochs([str(trees[kind][1])], runs), None, "x")
    return fig


def _figures(trees: dict[str, tuple[Path, Path]]) -> dict[str, Figure]:
    from ssa_experiments.analysis.figures.fig2 import fig2
    from ssa_experiments.analysis.figures.schedules import schedules_figure

    return {
        "fig1": fig1(prepare(aggregate.read_runs(trees["fig1"][1])), "val_acc", "x"),
        "fig2": fig2(prepare(aggregate.read_runs(trees["fig2"][1])), "val_acc", "x"),
        "curves fig1": _curves(trees, "fig1"),
        "curves fig2": _curves(trees, "fig2"),
        "schedules": schedules_figure(0.9, 5, 0.5, 10),
    }


def _legend_texts(fig: Figure) -> list[str]:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def test_setting_labels_in_words() -> None:
    from ssa_experiments.analysis.figures.style import pretty

    ta = "temperature_annealing"
    assert pretty(f"{ta} method.anneal_epochs=5 method.initial_temperature=0.5", ta) == (
        "temperature annealing: n = 5, τ0 = 0.5"
    )
    assert pretty(f"{ta} method.granularity=step method.rescore=True method.schedule=geometric", ta) == (
        "temperature annealing: geometric, per step, re-scored"
    )
    assert pretty(f"{ta} method.granularity=epoch method.rescore=False method.schedule=linear", ta) == (
        "temperature annealing: linear, per epoch"
    )
    assert pretty("iterative method.schedule=polynomial", "iterative (cubic)") == "iterative (cubic)"
    assert pretty("one_shot", "one_shot") == "one-shot"


def test_legends_name_settings_in_words_not_override_strings(trees: dict[str, tuple[Path, Path]]) -> None:
    for name, fig in _figures(trees).items():
        texts = _legend_texts(fig)
        assert texts, name
        for text in texts:
            assert "method." not in text and "_" not in text, (name, text)
            assert not re.search(r"\w=\S", text), (name, text)  # "τ0 = 0.5", never "initial_temperature=0.5"
    labels = _legend_texts(_curves(trees, "fig1"))
    assert "temperature annealing: n = 2, τ0 = 0.25" in labels


def test_no_empty_panels(trees: dict[str, tuple[Path, Path]]) -> None:
    """Every axes shows data, a legend or a table: no empty slot in a grid (fig1 had two)."""
    for name, fig in _figures(trees).items():
        for ax in fig.axes:
            assert ax.get_visible() and (ax.has_data() or ax.get_legend() or ax.texts), (name, ax.get_title())


def test_single_sparsity_fig1_has_no_repeated_best_panel(trees: dict[str, tuple[Path, Path]]) -> None:
    done = prepare(aggregate.read_runs(trees["fig1"][1]))
    fig = fig1(done[done["target_sparsity"].isin([0.0, 0.5])], "val_acc", "x")
    assert len(fig.axes) == 1  # the best configuration is marked in the panel instead
    (text,) = [t.get_text() for t in fig.axes[0].texts]
    # chosen on validation: τ0 = 0.5, n = 5, 1.5 + 0.2 * 5 = +2.5 above one-shot at every seed
    assert text == "best: τ0 = 0.5, n = 5\nΔ +2.5 [+2.5, +2.5] vs one-shot"


def test_best_panel_gives_the_paired_difference_from_one_shot(trees: dict[str, tuple[Path, Path]]) -> None:
    fig = fig1(prepare(aggregate.read_runs(trees["fig1"][1])), "val_acc", "x")
    best = fig.axes[-1]
    assert "best configuration" in best.get_title() and "paired difference" in best.get_title()
    texts = [t.get_text() for t in best.texts]
    assert texts == ["τ0 = 0.5\nn = 5\nΔ +2.5 [+2.5, +2.5]"] * 2


def test_epochs_are_integers_and_the_parent_is_epoch_0(trees: dict[str, tuple[Path, Path]]) -> None:
    fig = _curves(trees, "fig2")
    test, val = fig.axes
    for ax in (test, val):
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert ax.get_ylim()[1] <= 100
    # the parent: mean over seeds 0, 1, 2 of PARENT + seed (test), one less on validation
    for ax, want in ((test, PARENT + 1), (val, PARENT)):
        (star,) = [c for c in ax.containers if c.lines[0].get_marker() == "*"]
        assert list(star.lines[0].get_xdata()) == [0]
        assert star.lines[0].get_ydata()[0] == pytest.approx(want)
    assert "iterative pruning evaluated on its current mask" in fig.get_suptitle()
    assert "on the target mask" in fig.get_suptitle()
    assert "current mask" not in _curves(trees, "fig1").get_suptitle()  # no iterative runs: nothing to say


def test_two_settings_of_one_method_differ_in_greyscale(trees: dict[str, tuple[Path, Path]]) -> None:
    """Settings of one method share its colour: their line style or marker sets them apart."""
    from ssa_experiments.config.methods import STYLES

    red = to_rgba(STYLES["temperature_annealing"].color)
    for fig in (_curves(trees, "fig1"), fig1(prepare(aggregate.read_runs(trees["fig1"][1])), "val_acc", "x")):
        ax = fig.axes[0]
        drawn = [(c.get_label(), c.lines[0]) for c in ax.containers]  # error bars: labelled as a whole
        drawn += [(ln.get_label(), ln) for ln in ax.get_lines()]
        lines = [ln for text, ln in drawn if text.startswith("temperature annealing")]
        assert len(lines) >= 2
        assert {to_rgba(ln.get_color()) for ln in lines} == {red}  # one colour per method
        looks = {(ln.get_linestyle(), ln.get_marker()) for ln in lines}
        assert len(looks) == len(lines)


def test_accuracy_axes_stop_at_100(trees: dict[str, tuple[Path, Path]]) -> None:
    for name, fig in _figures(trees).items():
        for ax in fig.axes:
            if "accuracy" in ax.get_ylabel():
                assert ax.get_ylim()[1] <= 100, name
