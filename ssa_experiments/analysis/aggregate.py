"""Read results back: ``collect(roots)`` is the one way, ``table`` the usual view of it.

    python -m ssa_experiments.cli.aggregate ROOT [ROOT ...] [--metric test_acc] [--csv runs.csv]
        [--paired [REF]] [--level 0.95] [--bootstrap-seed 0]
    python -m ssa_experiments.cli.aggregate --wandb ENTITY/PROJECT [--group G]     (same frame, from W&B)
    ssa-aggregate ...                                                          (console script)

Every run directory below a root with a ``summary.json`` becomes one row (JSON only: never ``eval``); a run
directory with a log or a checkpoint but no summary (a killed run) is a row with status ``incomplete``; one
whose summary is damaged (torn, not a summary) a row with status ``damaged``, with a warning naming it. A
completed run whose ``metrics.jsonl`` holds fewer intact epoch rows than it trained is named in a warning
(its curves in ``epochs.csv`` stop at the torn line).
Failed, diverged and incomplete runs are counted and listed, never averaged in. The table has one row per
method and per value of every config key swept within that method (a sweep over ``method.initial_temperature``
gives one row per temperature), one column per target sparsity. Under the table, ``budget`` shows per method
what makes the comparison fair or not: optimizer steps, epochs on the final mask, the digest of the LR trace.

``--csv runs.csv`` writes every run with its whole config (``config.<dotted.key>`` columns) and, next to it,
``epochs.csv`` (every epoch row of every completed run; ``NAME_epochs.csv`` next to ``NAME.csv``): the two
files are a complete record, ``read_runs`` and ``read_epochs`` read them back, and the figures can be redrawn
from them alone.

``--paired [REF]`` (REF: a method or a setting label, default ``one_shot``) adds, under the table, each
setting against REF seed by seed (analysis/paired.py: runs of one seed share their dense parent, so the
per-seed difference removes the parent's share of the spread): the mean per-seed difference of ``--metric``,
its percentile bootstrap interval over seeds at ``--level`` (seeded: ``--bootstrap-seed``) and the seeds won,
wins/n; pairs have the same seed, target sparsity and config but for the method's keys. With ``--csv
NAME.csv`` the tidy numbers also go to ``NAME_paired.csv`` next to it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ssa_experiments.config.methods import METHOD_KEYS
from ssa_experiments.config.renamed import current
from ssa_experiments.store.files import METRICS, flatten, read_metrics_checked
from ssa_experiments.store.read import DAMAGED, stored_runs

COLUMNS = [
    "method", "target_sparsity", "seed", "status", "test_acc", "val_acc", "best_epoch", "best_val_acc",
    "test_acc_at_best_val", "sparsity", "epochs", "epochs_at_target", "steps", "lr_trace_sha256",
    "bn_recalibration_batches", "wall_time_s", "model", "data", "parent_source", "parent_test_acc",
    "parent_val_acc", "run_dir",
]  # fmt: skip
BUDGET = ["steps", "epochs_at_target", "lr_trace_sha256"]
TEXT = ["method", "status", "lr_trace_sha256", "model", "data", "parent_source", "run_dir", "setting"]
EPOCH_KEYS = ["run_dir", "method", "target_sparsity", "seed", "setting"]
# Keys that vary between runs without making them different settings: the seed (averaged over), the sparsity
# (the columns), where a run executes or logs, and what it saves; none of them changes a run's numbers.
NOT_SETTINGS = (
    "seed", "sparsity", "method.name", "output_dir", "device", "parent.cache_dir", "parent.cache",
    "data.root", "data.num_workers", "train.checkpoint_every", "train.checkpoint_every_steps",
    "train.save_model", "force", "parent.save_epochs",
)  # fmt: skip
# The method.* keys each method reads (config.METHOD_KEYS); a key a method ignores never labels its rows
# (sweeping method.initial_temperature next to one_shot repeats the same one-shot run, counted once per seed).


def _row(summary: dict[str, Any], run_dir: str, config: dict[str, Any]) -> dict[str, Any]:
    parent = summary.get("parent") or {}
    return {
        **{k: summary.get(k) for k in COLUMNS if k in summary},
        "parent_source": parent.get("source"),
        "parent_test_acc": parent.get("test_acc"),
        "parent_val_acc": parent.get("val_acc"),  # with parent_test_acc: the curves' epoch 0
        "run_dir": run_dir,
        "config": config,
    }


def collect(roots: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One row per run under ``roots`` (each searched recursively, following a sweep's ``run`` links into
    the store: ``store/read.py`` reads them), with the flat fields and the config. A run reached twice (two
    sweeps, or two requests that are one computation) is one row."""
    rows = []
    for run in stored_runs(roots):
        if run.summary is not None:
            rows.append(_row(run.summary, str(run.run_dir), run.config))
        elif run.status == DAMAGED:  # one bad file is one row, never the whole table (store/read.py warns)
            rows.append({"status": DAMAGED, "run_dir": str(run.run_dir), "config": {}})
        else:  # started, never finished: a hole, shown as such
            method = (run.config.get("method") or {}).get("name")
            rows.append({"status": run.status, "method": method, "seed": run.config.get("seed"),
                         "run_dir": str(run.run_dir), "config": run.config})  # fmt: skip
    return pd.DataFrame(rows, columns=[*COLUMNS, "config"])


def from_wandb(runs: Iterable[Any]) -> pd.DataFrame:
    """The same frame from W&B runs (``wandb.Api().runs(path)``: objects with ``.config`` (flat dotted keys),
    ``.summary`` (nested keys joined by "/") and ``.state``): what the W&B mirror wrote, read back."""
    rows = []
    for run in runs:
        summary = dict(run.summary)
        nested: dict[str, Any] = {}
        for key, value in summary.items():
            head, _, tail = key.partition("/")
            if tail:
                nested.setdefault(head, {})[tail] = value
            else:
                nested[key] = value
        nested["config"] = _unflatten(dict(run.config))
        if "status" not in nested:  # a run that never wrote its summary
            nested["status"] = "incomplete" if run.state in ("running", "crashed", "killed") else run.state
        where = f"wandb:{run.path if hasattr(run, 'path') else run.id}"
        rows.append(_row(nested, where, current(nested["config"])))  # old spellings: today's
    return pd.DataFrame(rows, columns=[*COLUMNS, "config"])


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """The per-run rows with the config flattened into ``config.<dotted.key>`` columns: a complete record of
    the runs, which ``read_runs`` turns back into the same frame (``settings`` labels it the same)."""
    flat = [{f"config.{k}": _cell(v) for k, v in flatten(c if isinstance(c, dict) else {}).items()}
            for c in df["config"]]  # fmt: skip
    out = pd.concat([df.drop(columns=["config"]), pd.DataFrame(flat, index=df.index)], axis=1)
    out.to_csv(path, index=False)
    return Path(path)


def read_runs(sources: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """The runs frame from CSV files written by ``write_csv`` and/or run directories (``collect``)."""
    sources = [sources] if isinstance(sources, str | Path) else list(sources)
    csvs = [s for s in sources if str(s).endswith(".csv")]
    dirs = [s for s in sources if not str(s).endswith(".csv")]
    frames = [_read_csv(Path(p)) for p in csvs] + ([collect(dirs)] if dirs else [])
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, "config"])
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _cell(value: Any) -> Any:
    """A config value as CSV text that ``_uncell`` reads back as the same value: JSON, except strings, which
    stay bare unless they would read back as something else ("1", "true", "")."""
    if isinstance(value, str) and value:
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


def _uncell(text: str) -> tuple[Any, ...]:
    """The value in a 1-tuple (pandas would turn a bare None into NaN); () for an empty cell: no such key."""
    if text == "":
        return ()
    try:
        return (json.loads(text),)
    except ValueError:
        return (text,)


def _read_csv(path: Path) -> pd.DataFrame:
    header = list(pd.read_csv(path, nrows=0).columns)
    keys = [c for c in header if c.startswith("config.")]
    df = pd.read_csv(
        path,
        converters={c: _uncell for c in keys},
        dtype={c: str for c in TEXT if c in header},
    )
    configs = [
        current(_unflatten({k.removeprefix("config."): v[0] for k, v in zip(keys, values, strict=True) if v}))
        for values in df[keys].itertuples(index=False)
    ]  # a CSV written before a rename (results/) reads as today's
    return df.drop(columns=keys).assign(config=configs)


def epochs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (completed run, epoch) from each run's ``metrics.jsonl``: the curves behind the final
    numbers, with the run's method, target sparsity, seed and setting (nested values such as the per-layer
    sparsity are left out)."""
    done = df[df["status"] == "completed"]
    rows = []
    if not done.empty:
        done = done.assign(setting=settings(done))
        trained = done["epochs"] if "epochs" in done else pd.Series(None, index=done.index)
        for run, n in zip(done[EPOCH_KEYS].to_dict("records"), trained, strict=True):
            metrics, problem = read_metrics_checked(Path(run["run_dir"]))
            kept = sum(isinstance(r, dict) and "epoch" in r for r in metrics)
            if problem or (pd.notna(n) and kept < n):
                warnings.warn(
                    f"{Path(run['run_dir']) / METRICS}: {kept} of {n if pd.notna(n) else '?'} epoch rows kept"
                    f"{f' ({problem})' if problem else ''}; that run's curves are incomplete",
                    stacklevel=2,
                )
            for row in metrics:
                if isinstance(row, dict) and "epoch" in row:  # epoch rows only
                    flat = {k: v for k, v in row.items() if not isinstance(v, dict | list)}
                    rows.append({**flat, **run})
    frame = pd.DataFrame(rows)
    rest = sorted(c for c in frame.columns if c not in EPOCH_KEYS)
    return frame.reindex(columns=[*EPOCH_KEYS, *rest])


def epochs_csv(runs_csv: str | Path) -> Path:
    """Where the epoch rows of a runs CSV live: ``epochs.csv`` next to ``runs.csv``, else ``NAME_epochs.csv``
    next to ``NAME.csv``."""
    runs_csv = Path(runs_csv)
    name = "epochs.csv" if runs_csv.stem == "runs" else f"{runs_csv.stem}_epochs.csv"
    return runs_csv.with_name(name)


def paired_csv(runs_csv: str | Path) -> Path:
    """Where ``--paired`` writes its numbers: ``NAME_paired.csv`` next to ``NAME.csv``."""
    runs_csv = Path(runs_csv)
    return runs_csv.with_name(f"{runs_csv.stem}_paired.csv")


def write_epochs_csv(df: pd.DataFrame, path: str | Path) -> Path:
    df.to_csv(path, index=False)
    return Path(path)


def read_epochs(path: str | Path) -> pd.DataFrame:
    header = list(pd.read_csv(path, nrows=0).columns)
    return pd.read_csv(path, dtype={c: str for c in TEXT if c in header})


def settings(df: pd.DataFrame) -> pd.Series:
    """Each run's setting: its method plus every config key that varies among that method's runs and that
    the method reads."""
    labels = pd.Series(df["method"].astype(str), index=df.index)
    for method, idx in df.groupby("method").groups.items():
        configs = df.loc[idx, "config"].map(
            lambda c, m=method: {k: v for k, v in flatten(c or {}).items() if _relevant(k, m)}
        )
        keys = sorted({k for c in configs for k in c})
        swept = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
        for i in idx:
            if swept:
                labels[i] = f"{method} " + " ".join(f"{k}={configs[i].get(k)}" for k in swept)
    return labels


def _relevant(key: str, method: str) -> bool:
    if key in NOT_SETTINGS or key.startswith(("logger.", "hydra.", "store.")):
        return False
    if key.startswith("method.") and method in METHOD_KEYS:
        return key.removeprefix("method.") in METHOD_KEYS[method]
    return True


def completed(df: pd.DataFrame) -> pd.DataFrame:
    """The completed runs with their ``setting``, each (setting, target sparsity, seed) once: what the tables
    and figures average (the same computation launched under labels it ignores counts once per seed)."""
    done = df[df["status"] == "completed"]
    if done.empty:
        return done.assign(setting=pd.Series(dtype=str))
    return done.assign(setting=settings(done)).drop_duplicates(["setting", "target_sparsity", "seed"])


ORDER = [
    "dense", "one_shot", "iterative", "random_annealing", "temperature_annealing", "stochastic_constant",
    "soft_annealing", "dropconnect_target",
]  # fmt: skip


def setting_rank(setting: str) -> tuple[int, str]:
    """Sort key of a setting label: by method (``ORDER``, others after), then by the label."""
    rank = {m: i for i, m in enumerate(ORDER)}
    return (rank.get(setting.split(" ")[0], len(ORDER)), setting)


# what --metric may name: the numbers of a run's row (aggregate's table averages one of them over seeds)
RUN_METRICS = [
    "test_acc", "val_acc", "best_val_acc", "test_acc_at_best_val", "sparsity", "best_epoch", "epochs",
    "epochs_at_target", "steps", "wall_time_s", "parent_test_acc",
]  # fmt: skip


def cell(mean: float, std: float, n: int) -> str:
    """``mean ± std (n=N)``; one seed has no spread to show, so ``mean (n=1)`` (not a misleading ± 0.00)."""
    if n == 1 or pd.isna(std):
        return f"{mean:.2f} (n={n})"
    return f"{mean:.2f} ± {std:.2f} (n={n})"


def table(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """mean ± std of ``metric`` over seeds, methods as rows and target sparsities as columns.

    The dense reference (sparsity 0) is its own row, whatever sparsity its runs were launched with.
    """
    done = df[df["status"] == "completed"]
    if done.empty:
        return pd.DataFrame()
    # The same computation launched under labels it ignores (dense at every sparsity of a sweep, one-shot next
    # to a temperature sweep) is one result per seed, not several.
    done = done.assign(setting=settings(done)).drop_duplicates(["setting", "target_sparsity", "seed"])
    stats = done.groupby(["setting", "target_sparsity"])[metric].agg(["mean", "std", "count"]).reset_index()
    cells = stats.apply(lambda r: cell(r["mean"], r["std"], int(r["count"])), axis=1)
    wide = stats.assign(cell=cells).pivot(index="setting", columns="target_sparsity", values="cell")
    wide = wide.loc[sorted(wide.index, key=setting_rank)]
    wide.index.name = "method"
    wide.columns = [f"{c:g}" for c in wide.columns]
    return wide.fillna("")


def budget(df: pd.DataFrame) -> pd.DataFrame:
    """Per method, the distinct budget values of its completed runs (one value each when all agree)."""
    done = df[df["status"] == "completed"]
    cols = [c for c in BUDGET if c in done]

    def distinct(values: pd.Series) -> str:
        shown = {f"{x:g}" if isinstance(x, float) else str(x) for x in values.dropna()}
        return ", ".join(sorted(shown))

    return done.groupby("method")[cols].agg(distinct)
