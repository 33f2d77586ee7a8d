"""Where each epoch's row goes: the run's own files, the console, Weights & Biases.

Each sink is an epoch callback (``callbacks.py``: ``on_start`` with the rows a resumed run already has,
``on_epoch_end`` with every row, ``on_finish`` also when the run fails), so a new logger is a new sink, not
new lines in the loop. Local files are always written first and are the source of truth (``collect`` reads
them); W&B is a mirror that must never cost a run: a bounded start-up, and on any W&B failure one warning
and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ssa_experiments.config.targets import option_label
from ssa_experiments.store.files import METRICS, append_metrics, flatten, rewrite_metrics
from ssa_experiments.training.callbacks import Callback, RunContext

log = logging.getLogger(__name__)


class MetricsFile(Callback):
    """``metrics.jsonl``: one line per epoch; a resumed run keeps exactly the epochs its checkpoint covers."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_start(self, history: list[dict[str, Any]], ctx: RunContext) -> None:
        if history or (self.out / METRICS).exists():
            rewrite_metrics(self.out, history)

    def on_epoch_end(self, row: dict[str, Any], ctx: RunContext) -> None:
        append_metrics(self.out, row)


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    val = f"{row['val_acc']:.2f}%" if "val_acc" in row else "-"
    return (
        f"epoch {row['epoch']}/{epochs}  train_loss {row['train_loss']:.4f}  val_acc {val}  "
        f"test_acc {row['test_acc']:.2f}%  sparsity {row['sparsity']:.4f}  "
        f"expected_train_sparsity {row['expected_train_sparsity']:.4f}"
    )


class Console(Callback):
    """One log line per epoch: what a SLURM or CI log can hold."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, row: dict[str, Any], ctx: RunContext) -> None:
        log.info("%s", _epoch_line(row, self.epochs))


class ProgressBar(Callback):
    """A tqdm bar over the epochs, on a terminal: loss, accuracy and the expected sparsity in training."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.bar: Any = None

    def on_start(self, history: list[dict[str, Any]], ctx: RunContext) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.epochs, initial=len(history), unit="epoch", dynamic_ncols=True, leave=True)

    def on_epoch_end(self, row: dict[str, Any], ctx: RunContext) -> None:
        self.bar.set_postfix(
            loss=f"{row['train_loss']:.3f}",
            test=f"{row['test_acc']:.1f}%",
            exp_sparsity=f"{row['expected_train_sparsity']:.3f}",
            refresh=False,
        )
        self.bar.update(1)

    def on_finish(self, summary: dict[str, Any] | None, ok: bool) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_kind(setting: str, tty: bool, multirun: bool) -> str:
    """``logger.progress=auto`` resolved: a bar only where someone watches a terminal, no per-epoch output
    from multirun workers (their one ``done:`` line per run says enough), plain lines elsewhere."""
    if setting != "auto":
        return setting
    if multirun:
        return "none"
    return "bar" if tty else "lines"


def wandb_run_id(identity: dict[str, Any], out: Path) -> str:
    """The same config in the same run directory gives the same id, so a killed and resumed run is one W&B
    run, not two; the same config run again into another directory (a new sweep) is a new W&B run."""
    key = json.dumps({"identity": identity, "run_dir": str(Path(out).resolve())}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:24]


class WandB(Callback):
    """A mirror of the local files in Weights & Biases (``logger=wandb``)."""

    def __init__(self, cfg: DictConfig, config: dict[str, Any], identity: dict[str, Any], out: Path) -> None:
        self.cfg, self.config, self.identity, self.out = cfg, config, identity, out
        self.run: Any = None

    def _guard(self, what: str, fn) -> None:
        if self.run is None and what != "init":
            return
        try:
            fn()
        except Exception as err:  # a mirror must never cost the run
            log.warning(
                "W&B %s failed (%s: %s); the run goes on with local files only", what, type(err).__name__, err
            )
            self.run = None

    def on_start(self, history: list[dict[str, Any]], ctx: RunContext) -> None:
        lc = self.cfg.logger
        tags = [str(t) for t in lc.tags] + [
            f"model:{option_label(self.cfg.model, 'arch')}", f"data:{option_label(self.cfg.data, 'name')}",
            f"method:{option_label(self.cfg.method, 'name')}",
            f"sparsity:{self.cfg.sparsity}",
        ]  # fmt: skip

        def init() -> None:
            import wandb

            self.run = wandb.init(
                project=lc.project,
                entity=lc.entity,
                group=lc.group or _default_group(self.out),
                job_type=lc.job_type or option_label(self.cfg.method, "name"),
                tags=tags,
                name=self.out.name,
                config=flatten(self.config),
                id=wandb_run_id(self.identity, self.out),
                resume="allow",
                mode=lc.mode,
                dir=str(self.out),
                reinit="create_new",  # several runs in one worker process never mix
                settings=wandb.Settings(init_timeout=lc.init_timeout, quiet=True, console="off"),
            )

        self._guard("init", init)

    def on_epoch_end(self, row: dict[str, Any], ctx: RunContext) -> None:
        scalars = {k: v for k, v in flatten(row, sep="/").items() if _loggable(v)}
        self._guard("log", lambda: self.run.log(scalars, step=row["epoch"]))

    def on_finish(self, summary: dict[str, Any] | None, ok: bool) -> None:
        def done() -> None:
            if summary is not None:
                flat = flatten({k: v for k, v in summary.items() if k not in ("config", "identity")}, sep="/")
                self.run.summary.update({k: v for k, v in flat.items() if _loggable(v) or isinstance(v, str)})
            self.run.finish(exit_code=0 if ok else 1)

        self._guard("finish", done)


def _default_group(out: Path) -> str:
    """The experiment preset's name (``experiment=fig1`` -> ``fig1``), else the sweep directory's name."""
    try:
        from hydra.core.hydra_config import HydraConfig

        choice = HydraConfig.get().runtime.choices.get("experiment")
        if choice and choice != "null":
            return str(choice)
    except Exception:  # run() called outside Hydra (tests, scripts): no preset to name
        pass
    return out.parent.name


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # run() called outside Hydra (tests, scripts)
        return False


def _loggable(value: Any) -> bool:
    return isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value))


def make_sinks(
    cfg: DictConfig, config: dict[str, Any], identity: dict[str, Any], out: Path, epochs: int
) -> list[Callback]:
    """The sinks ``cfg.logger`` asks for, local files first."""
    sinks: list[Callback] = [MetricsFile(out)]
    kind = progress_kind(cfg.logger.progress, sys.stderr.isatty(), _in_multirun())
    if kind == "bar":
        sinks.append(ProgressBar(epochs))
    elif kind == "lines":
        sinks.append(Console(epochs))
    if cfg.logger.name == "wandb":
        sinks.append(WandB(cfg, config, identity, out))
    return sinks
