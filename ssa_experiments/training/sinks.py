"""Where each epoch's row goes: the run's own files, the console, Weights & Biases; and the same for the
dense parent's training (``ParentSinks``).

Each sink is an epoch callback (``callbacks.py``: ``on_start`` with the rows a resumed run already has,
``on_step`` after every optimizer step, ``on_epoch_end`` with every row, ``on_finish`` also when the run
fails), so a new logger is a new sink, not new lines in the loop. Local files are always written first and
are the source of truth (``collect`` reads them); W&B is a mirror that must never cost a run: a bounded
start-up, and on any W&B failure one warning and the run goes on. How a run looks in W&B (group, job_type,
namespaces, artifacts, the stable id) is ``wandb_mirror.py``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ssa_experiments.store.files import METRICS, MODEL, append_metrics, read_metrics, rewrite_metrics
from ssa_experiments.training import wandb_mirror as wm
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


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def epoch_line(row: dict[str, Any], epochs: int, label: str = "", eta_s: float | None = None) -> str:
    """One epoch as one self-contained log line (``label`` names the run or the parent in a shared log)."""
    val = f"{row['val_acc']:.2f}%" if "val_acc" in row else "-"
    test = f"{row['test_acc']:.2f}%" if "test_acc" in row else "-"
    line = f"{label}epoch {row['epoch']}/{epochs}  train_loss {row['train_loss']:.4f}  val_acc {val}  "
    line += f"test_acc {test}"
    if "sparsity" in row:
        line += (
            f"  sparsity {row['sparsity']:.4f}  expected_train_sparsity {row['expected_train_sparsity']:.4f}"
        )
    if "epoch_time_s" in row:
        line += f"  ({row['epoch_time_s']:.1f} s"
        line += f", ETA {_duration(eta_s)})" if eta_s is not None else ")"
    return line


class Console(Callback):
    """One log line per epoch, with the time left: what a SLURM or CI log, or a multirun's job log, holds."""

    def __init__(self, epochs: int, label: str = "") -> None:
        self.epochs, self.label = epochs, label
        self.times: list[float] = []

    def on_epoch_end(self, row: dict[str, Any], ctx: RunContext | None) -> None:
        self.times.append(float(row.get("epoch_time_s", 0.0)))
        left = self.epochs - int(row["epoch"])
        eta = left * sum(self.times) / len(self.times)
        log.info("%s", epoch_line(row, self.epochs, self.label, eta))


class ProgressBar(Callback):
    """A tqdm bar on a terminal that counts optimizer steps over the whole run (its ETA is the run's), the
    epoch in its description and the last epoch's loss, accuracy and expected training sparsity after it."""

    MININTERVAL_S = 0.1  # tqdm's: at most ten frames a second, however fast the steps

    def __init__(self, epochs: int, label: str = "") -> None:
        self.epochs, self.label = epochs, label
        self.bar: Any = None
        self.steps = 0
        self.epoch = 0

    def open(self, done_epochs: int, steps_per_epoch: int) -> None:
        from tqdm import tqdm

        self.steps, self.epoch = steps_per_epoch, done_epochs
        self.bar = tqdm(
            total=self.epochs * steps_per_epoch, initial=done_epochs * steps_per_epoch, unit="step",
            dynamic_ncols=True, leave=True, desc=self._desc(done_epochs), mininterval=self.MININTERVAL_S,
        )  # fmt: skip

    def _desc(self, epoch: int) -> str:
        return f"{self.label}epoch {min(epoch + 1, self.epochs)}/{self.epochs}"

    def on_start(self, history: list[dict[str, Any]], ctx: RunContext) -> None:
        self.open(len(history), ctx.steps_per_epoch)

    def on_epoch_start(self, epoch: int, ctx: RunContext) -> None:
        self.epoch = epoch
        if self.bar is not None:
            self.bar.set_description(self._desc(epoch), refresh=False)
            self.bar.n = epoch * self.steps  # exact at each epoch's start, whatever steps were counted

    def on_step(self, step: int, ctx: RunContext | None) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_epoch_end(self, row: dict[str, Any], ctx: RunContext | None) -> None:
        if self.bar is None:
            return
        post = {"loss": f"{row['train_loss']:.3f}"}
        if "val_acc" in row:
            post["val"] = f"{row['val_acc']:.1f}%"
        if "test_acc" in row:
            post["test"] = f"{row['test_acc']:.1f}%"
        if "expected_train_sparsity" in row:
            post["exp_sparsity"] = f"{row['expected_train_sparsity']:.3f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.set_description(self._desc(int(row["epoch"]) - (int(row["epoch"]) == self.epochs)), False)
        self.bar.n = int(row["epoch"]) * self.steps
        self.bar.refresh()

    def on_finish(self, summary: dict[str, Any] | None, ok: bool) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_kind(setting: str, tty: bool, multirun: bool) -> str:
    """``logger.progress=auto`` resolved: a bar where someone watches a terminal (not inside multirun
    workers, whose bars would overwrite each other), one line per epoch elsewhere (files, SLURM, CI logs,
    a multirun's job logs: each line names its run)."""
    if setting != "auto":
        return setting
    return "bar" if tty and not multirun else "lines"


class WandB(Callback):
    """A mirror of the local files in W&B (``logger=wandb``; its conventions: ``wandb_mirror.py``)."""

    def __init__(self, cfg: DictConfig, identity: dict[str, Any], out: Path) -> None:
        self.cfg, self.identity, self.out = cfg, identity, out
        self.run: Any = None
        self.mode = "offline"
        self.masks: Path | None = None
        self._ctx: RunContext | None = None  # its method's masks go into the model artifact at the end

    def _guard(self, what: str, fn) -> bool:
        """``fn()``; False (and W&B given up for this run, in one warning) when it raised."""
        if self.run is None and what not in ("init", "publish"):
            return False
        try:
            fn()
        except Exception as err:  # a mirror must never cost the run
            log.warning(
                "W&B %s failed (%s: %s); the run goes on with local files only", what, type(err).__name__, err
            )
            self.run = None
            return False
        return True

    def _start(self) -> None:
        self.mode = wm.effective_mode(self.cfg.logger.mode, wm.sweep_dir())
        self.run = wm.start(
            self.cfg.logger, run_id=wm.wandb_run_id(self.identity, self.out), name=self.out.name,
            group=wm.sweep_group(self.cfg, self.out, self.identity), job_type=self.cfg.logger.job_type
            or wm.stage(self.cfg), tag_list=wm.tags(self.cfg), config=self.identity, directory=self.out,
            mode=self.mode,
        )  # fmt: skip

    def revisit(self, out: Path, summary: dict[str, Any]) -> dict[str, Any] | None:
        """A completed run asked for again with ``logger=wandb``: mirrored from its files if W&B has not seen
        it (one line either way); its summary is unchanged."""
        self.publish(summary)
        return None

    def publish(self, summary: dict[str, Any], force: bool = False) -> str:
        """Mirror the stored run (its metrics.jsonl, summary.json and model.pt) as the W&B run of its stable
        id, unless its run directory already holds a W&B run of that id (``force``: again). Returns
        ``published``, ``already`` or ``failed``; says which in one line."""
        out, run_id = self.out, wm.wandb_run_id(self.identity, self.out)
        there = wm.existing(out, run_id)
        if there and not force:
            log.info("%s: already mirrored to W&B as run %s (%s; `wandb sync` uploads an offline one)",
                     out, run_id, there[-1].name)  # fmt: skip
            return "already"

        def publish() -> None:
            self._start()
            self._fill(read_metrics(out), summary)

        if not self._guard("publish", publish):
            return "failed"
        log.info("%s: mirrored to W&B from its files as run %s (%s)", out, run_id, self.mode)
        return "published"

    def on_start(self, history: list[dict[str, Any]], ctx: RunContext) -> None:
        self._ctx = ctx

        def init() -> None:
            self._start()
            wm.parent_link(self.run, self.mode, ctx.parent_info, self.cfg.parent.cache_dir)

        self._guard("init", init)

    def on_epoch_end(self, row: dict[str, Any], ctx: RunContext) -> None:
        self._guard("log", lambda: self.run.log(wm.history_row(row), step=row["epoch"]))

    def on_finish(self, summary: dict[str, Any] | None, ok: bool) -> None:
        def done() -> None:
            if summary is not None:
                self._save_masks()
                self._close(summary, ok)
            else:
                self.run.finish(exit_code=1)

        self._guard("finish", done)

    def _save_masks(self) -> None:
        """The masks the run was evaluated on (``{layer: bool tensor}``), beside W&B's files, for the model
        artifact; none for a dense run."""
        if self._ctx is None or not self._ctx.method.masks or not (self.out / MODEL).exists():
            return
        import torch

        masks = {n: m.eval_mask.detach().cpu().bool() for n, m in self._ctx.method.masks.items()}
        self.masks = self.out / "wandb" / "masks.pt"
        torch.save(masks, self.masks)

    def _fill(self, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        """A stored run's history, summary and model, logged at once (publishing)."""
        wm.log_rows(self.run, rows)
        self._close(summary, summary.get("status") == "completed")

    def _close(self, summary: dict[str, Any], ok: bool) -> None:
        self.run.summary.update(wm.summary_fields(summary, self.out))
        if summary.get("model_file") and (self.out / MODEL).exists():
            self.run.log_artifact(wm.model_artifact(self.out, summary, self.masks), aliases=["latest"])
        self.run.finish(exit_code=0 if ok else 1)


def _in_multirun() -> bool:
    return wm.sweep_dir() is not None


def _label(out: Path, multirun: bool) -> str:
    """In a multirun's shared or job logs a line names its run (the store name); alone it needs no name."""
    return f"[{out.name}] " if multirun else ""


def make_sinks(cfg: DictConfig, identity: dict[str, Any], out: Path, epochs: int) -> list[Callback]:
    """The sinks ``cfg.logger`` asks for, local files first."""
    sinks: list[Callback] = [MetricsFile(out)]
    multirun = _in_multirun()
    kind = progress_kind(cfg.logger.progress, sys.stderr.isatty(), multirun)
    if kind == "bar":
        sinks.append(ProgressBar(epochs))
    elif kind == "lines":
        sinks.append(Console(epochs, _label(out, multirun)))
    if cfg.logger.name == "wandb":
        sinks.append(WandB(cfg, identity, out))
    return sinks


PARENT_METRICS = "parent_metrics.jsonl"  # beside parent.pt in its cache entry: one line per parent epoch


class ParentSinks:
    """The dense parent's training watched like a run's (``parent.ParentObserver``): ``parent_metrics.jsonl``
    beside the cached parent, the same bar or log lines (labelled ``parent``), and with ``logger=wandb`` its
    own W&B run (job_type ``parent``, per-epoch metrics, its weights as artifacts once they are stored)."""

    def __init__(self, cfg: DictConfig, entry: tuple[Path, dict[str, Any]] | None) -> None:
        self.cfg = cfg
        self.entry, self.key = entry if entry is not None else (None, None)
        self.progress: Callback | None = None
        self.wandb: Any = None
        self.mode = "offline"
        self.trained = False

    def start(self, epochs: int, steps_per_epoch: int, done: int = 0) -> None:
        self.trained = True
        multirun = _in_multirun()
        kind = progress_kind(self.cfg.logger.progress, sys.stderr.isatty(), multirun)
        if kind == "bar":
            bar = ProgressBar(epochs, "parent ")
            bar.open(done, steps_per_epoch)
            self.progress = bar
        elif kind == "lines":
            named = f"[{self.entry.name}] " if self.entry is not None and multirun else ""
            self.progress = Console(epochs, "parent " + named)
        if self.entry is not None:
            self.entry.mkdir(parents=True, exist_ok=True)
            path = self.entry / PARENT_METRICS  # this training's epochs only; a resumed one's rows before
            kept = path.read_text().splitlines(keepends=True)[:done] if done and path.exists() else []
            path.write_text("".join(kept))
        if self.cfg.logger.name == "wandb" and self.entry is not None:
            self._guard(self._start_wandb)

    def _start_wandb(self) -> None:
        assert self.entry is not None and self.key is not None
        cfg = self.cfg
        self.mode = wm.effective_mode(cfg.logger.mode, wm.sweep_dir())
        out = Path(cfg.output_dir)
        self.wandb = wm.start(
            cfg.logger, run_id=wm.parent_run_id(self.entry.name), name=wm.parent_artifact(self.entry.name),
            group=wm.sweep_group(cfg, out, None), job_type="parent",
            tag_list=[*(str(t) for t in cfg.logger.tags), f"model:{cfg.model.arch}", f"data:{cfg.data.name}"],
            config=self.key, directory=self.entry, mode=self.mode,
        )  # fmt: skip

    def _guard(self, fn) -> None:
        try:
            fn()
        except Exception as err:  # a mirror must never cost the parent
            log.warning("W&B (parent) failed (%s: %s); training goes on with local files only",
                        type(err).__name__, err)  # fmt: skip
            self.wandb = None

    def step(self, step: int) -> None:
        if isinstance(self.progress, ProgressBar):
            self.progress.on_step(step, None)

    def epoch(self, row: dict[str, Any]) -> None:
        if self.entry is not None:
            with open(self.entry / PARENT_METRICS, "a") as f:
                f.write(json.dumps(row) + "\n")
        if self.progress is not None:
            self.progress.on_epoch_end(row, None)
        if self.wandb is not None:
            self._guard(lambda: self.wandb.log(wm.history_row(row), step=int(row["epoch"])))

    def finish(self, ok: bool) -> None:
        if self.progress is not None:
            self.progress.on_finish(None, ok)
            self.progress = None
        if not ok and self.wandb is not None:
            self._guard(lambda: self.wandb.finish(exit_code=1))
            self.wandb = None

    def published(self, info: dict[str, Any]) -> None:
        """Once the parent is stored: its record as the W&B run's summary, parent.pt (aliases ``final``,
        ``latest``) and each kept epoch (``epoch<k>``) as artifact versions of ``parent-<hash>``."""
        if self.wandb is None or self.entry is None:
            return
        entry, run = self.entry, self.wandb

        def publish() -> None:
            import wandb

            run.summary.update({k: v for k, v in info.items() if wm.loggable(v) or isinstance(v, str)})
            name = wm.parent_artifact(entry.name)
            for path in sorted(entry.glob("epoch_*.pt")):
                art = wandb.Artifact(name, type="parent")
                art.add_file(str(path), name=path.name)
                run.log_artifact(art, aliases=[path.stem.replace("_", "")])
            art = wandb.Artifact(name, type="parent", metadata={"test_acc": info.get("test_acc")})
            art.add_file(str(entry / "parent.pt"), name="parent.pt")
            run.log_artifact(art, aliases=["final", "latest"])
            run.finish()

        self._guard(publish)
        self.wandb = None


def parent_sinks(cfg: DictConfig, entry: tuple[Path, dict[str, Any]] | None) -> ParentSinks:
    return ParentSinks(cfg, entry)
