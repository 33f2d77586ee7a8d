"""One run, as a function of its resolved config: validate, build, get the parent, fine-tune, write.

``run(cfg)`` owns its output directory (``cfg.output_dir``) and nothing else, so launchers (local, joblib,
SLURM) and resumption only have to call it. A killed run resumes from ``checkpoint.pt`` when started again
with the same output directory; a completed one returns its summary without recomputing.
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from ssa_experiments.config import ConfigError, ScheduleConfig, run_identity, to_container, validate
from ssa_experiments.data import load_data
from ssa_experiments.loaders import Batches, make_batches
from ssa_experiments.loop import Precision, evaluate, steps_per_epoch, train_epoch
from ssa_experiments.models import build_model, count_params
from ssa_experiments.optim import lr_at, make_optimizer
from ssa_experiments.parent import get_parent
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.results import (
    CHECKPOINT,
    SUMMARY,
    append_metrics,
    atomic_torch_save,
    atomic_write_json,
    read_metrics,
    read_summary,
    rewrite_metrics,
)

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fit(
    model: torch.nn.Module,
    train_batches: Batches,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    epochs: int,
    schedule: ScheduleConfig,
    precision: Precision,
    max_steps: int = 0,
) -> None:
    """Train ``epochs`` epochs without pruning: the dense parent."""
    total, global_step = epochs * steps_per_epoch(train_batches, max_steps), 0
    for epoch in range(epochs):
        train_metrics, global_step = train_epoch(
            model, train_batches, optimizer, loss_fn, epoch, global_step,
            lambda s: lr_at(s, total, schedule), precision, None, max_steps,
        )  # fmt: skip
        if not math.isfinite(train_metrics["train_loss"]):
            raise FloatingPointError(
                f"dense parent diverged at epoch {epoch} (loss {train_metrics['train_loss']})"
            )


def run(cfg: DictConfig) -> dict[str, Any]:
    """Fine-tune one pruned (or dense) network from the dense parent and write the run directory."""
    validate(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    identity = run_identity(cfg)
    previous = read_summary(out)
    if previous is not None and previous.get("identity", identity) != identity:
        raise ConfigError(
            "output_dir", f"{out} holds a run of a different config; choose another run directory"
        )
    if previous is not None and previous.get("status") == "completed":
        log.info("run already completed in %s: nothing to do", out)
        return previous

    started = time.time()
    device = pick_device(cfg.device)
    precision = Precision.for_device(device, cfg.train.amp, cfg.train.channels_last)
    seed_everything(cfg.seed)
    data = load_data(cfg.data)
    train_batches, test_batches = make_batches(
        data, cfg.data.pipeline, cfg.train.batch_size, device, cfg.seed, cfg.data.num_workers
    )
    model = build_model(cfg.model, data.in_channels, data.image_shape[-1], data.num_classes).to(device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)

    max_steps = cfg.train.max_steps_per_epoch

    def train_parent(m: torch.nn.Module) -> dict[str, float]:
        opt = make_optimizer(m.parameters(), cfg.optimizer, cfg.parent.schedule.lr)
        fit(m, train_batches, opt, loss_fn, cfg.parent.epochs, cfg.parent.schedule, precision, max_steps)
        metrics = evaluate(m, test_batches, precision)
        log.info("parent: test_acc %.2f%% after %d epochs", metrics["test_acc"], cfg.parent.epochs)
        return metrics

    parent_info = get_parent(cfg, model, train_parent)
    if parent_info.get("test_acc") is None:  # brought by parent.path: measure it here
        parent_info["test_acc"] = evaluate(model, test_batches, precision)["test_acc"]

    seed_everything(cfg.seed)
    method = make_method(cfg.method, cfg.pruning, cfg.sparsity, cfg.seed)
    method.start(model)
    optimizer = make_optimizer(model.parameters(), cfg.optimizer, cfg.schedule.lr)
    n_params = count_params(model)
    start_report = method.report()
    log.info(
        "model %s: %d parameters, %d prunable (%s); method %s, target sparsity %.4f",
        cfg.model.arch,
        n_params,
        start_report["prunable_params"],
        f"{100 * start_report['prunable_params'] / n_params:.1f}%",
        method.name,
        cfg.sparsity,
    )

    epochs = cfg.train.finetune_epochs
    steps = steps_per_epoch(train_batches, max_steps)
    total_steps = epochs * steps
    first_epoch, global_step, history = 0, 0, []
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ckpt.get("identity") != identity:
            raise ConfigError(
                "output_dir", f"{ckpt_path} was written by a different config; not resuming from it"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        method.load_state_dict(ckpt["method"])
        first_epoch, global_step = ckpt["epoch"] + 1, ckpt["global_step"]
        history = read_metrics(out)[:first_epoch]
        rewrite_metrics(out, history)
        log.info("resuming from %s at epoch %d", ckpt_path, first_epoch)
    elif (out / "metrics.jsonl").exists():
        rewrite_metrics(out, [])

    status = "completed"
    for epoch in range(first_epoch, epochs):
        t0 = time.time()
        method.begin_epoch(epoch, steps)
        train_metrics, global_step = train_epoch(
            model,
            train_batches,
            optimizer,
            loss_fn,
            epoch,
            global_step,
            lambda s: lr_at(s, total_steps, cfg.schedule),
            precision,
            method,
            max_steps,
        )
        report = method.report()
        row = {
            "epoch": epoch + 1,
            "step": global_step,
            "lr": optimizer.param_groups[0]["lr"],
            **train_metrics,
            **evaluate(model, test_batches, precision),
            **report,
            "epoch_time_s": time.time() - t0,
        }
        history.append(row)
        append_metrics(out, row)
        if cfg.logger.print_every_epoch:
            log.info(
                "epoch %d/%d  train_loss %.4f  test_acc %.2f%%  sparsity %.4f  expected_train_sparsity %.4f",
                epoch + 1,
                epochs,
                row["train_loss"],
                row["test_acc"],
                row["sparsity"],
                row["expected_train_sparsity"],
            )
        if not math.isfinite(row["train_loss"]):
            status = "diverged"
            break
        if (
            cfg.train.checkpoint_every
            and (epoch + 1) % cfg.train.checkpoint_every == 0
            and epoch + 1 < epochs
        ):
            atomic_torch_save(
                ckpt_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "method": method.state_dict(),
                    "epoch": epoch,
                    "identity": identity,
                    "global_step": global_step,
                },
            )

    last = history[-1] if history else {}
    summary = {
        "status": status,
        "method": method.name,
        "target_sparsity": cfg.sparsity if method.name != "dense" else 0.0,
        "sparsity": last.get("sparsity"),
        "layer_sparsity": last.get("layer_sparsity"),
        "seed": cfg.seed,
        "model": cfg.model.arch,
        "data": cfg.data.name,
        "test_acc": last.get("test_acc"),
        "best_test_acc": max((r["test_acc"] for r in history), default=None),
        "test_loss": last.get("test_loss"),
        "epochs": len(history),
        "steps": global_step,
        "parent": parent_info,
        "params": n_params,
        "prunable_params": start_report["prunable_params"],
        "wall_time_s": time.time() - started,
        "device": str(device),
        "config": to_container(cfg),
        "identity": identity,
    }
    atomic_write_json(out / SUMMARY, summary)
    ckpt_path.unlink(missing_ok=True)
    log.info(
        "done: %s test_acc %.2f%% at sparsity %.4f -> %s",
        status,
        summary["test_acc"] or float("nan"),
        summary["sparsity"] or 0.0,
        out / SUMMARY,
    )
    return summary
