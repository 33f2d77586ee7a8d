"""One run, as a function of its resolved config: validate, build, get the parent, fine-tune, write.

``run(cfg)`` owns its output directory (``cfg.output_dir``) and nothing else, so launchers (local, joblib,
SLURM) and resumption only have to call it. A killed run resumes from ``checkpoint.pt`` when started again
with the same output directory; a completed one returns its summary without recomputing.

What a run reports, and why (see README, "What a run writes"):
* every epoch is evaluated on the validation split (if any) and the test set, with BatchNorm statistics
  recalibrated for the evaluated (target) network (``loop.recalibrated``);
* ``test_acc`` is the final epoch's; a "best epoch" exists only among epochs trained on the final mask and
  is chosen by validation accuracy, never by test accuracy (``best_by_validation``);
* the budget that makes methods comparable is recorded: ``steps``, ``epochs_at_target``, ``lr_trace_sha256``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.schema import ConfigError, ScheduleConfig, to_container
from ssa_experiments.config.seeds import finetune_seed, parent_seed
from ssa_experiments.config.validate import check_device, validate
from ssa_experiments.data.datasets import load_data
from ssa_experiments.data.loaders import Batches, RunBatches, make_batches
from ssa_experiments.ensembles import members
from ssa_experiments.models import build_model, count_params
from ssa_experiments.pruning.masking import export_state_dict
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.pruning.targets import prunable_modules
from ssa_experiments.repro import numerics, provenance
from ssa_experiments.store.files import (
    CHECKPOINT,
    METRICS,
    MODEL,
    SUMMARY,
    DamagedFile,
    atomic_torch_save,
    atomic_write_json,
    read_metrics_checked,
    read_summary,
    remove_temporaries,
    set_aside,
)
from ssa_experiments.training.checkpoint import load_checkpoint, restore, save_checkpoint
from ssa_experiments.training.compile import compiled
from ssa_experiments.training.devices import pick_device
from ssa_experiments.training.loop import Precision, evaluate, recalibrated, steps_per_epoch, train_epoch
from ssa_experiments.training.lr import LrFn, lr_at, lr_replay_start, retraining_lr
from ssa_experiments.training.optim import make_optimizer
from ssa_experiments.training.parent import EpochHook, load_parent, rewind_weights
from ssa_experiments.training.sinks import make_sinks

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(
    model: torch.nn.Module,
    train_batches: Batches,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    epochs: int,
    schedule: ScheduleConfig,
    precision: Precision,
    max_steps: int = 0,
    on_epoch_end: EpochHook | None = None,
) -> None:
    """Train ``epochs`` epochs without pruning: the dense parent. ``on_epoch_end(epochs_done)`` lets the
    parent cache keep the weights weight rewinding goes back to."""
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
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)


def evaluate_splits(
    model: torch.nn.Module, batches: RunBatches, precision: Precision, recalibration_batches: int
) -> tuple[dict[str, float], torch.nn.Module]:
    """Validation and test metrics of the evaluation network; returns them and the network evaluated."""
    net = recalibrated(model, batches.train, recalibration_batches, precision)
    metrics = {"bn_recalibration_batches": recalibration_batches if net is not model else 0}
    if batches.val is not None:
        metrics.update(evaluate(net, batches.val, precision, "val"))
    metrics.update(evaluate(net, batches.test, precision, "test"))
    return metrics, net


def best_by_validation(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The best epoch by validation accuracy among the epochs trained on the final mask (first on ties).

    Never by test accuracy, and never an epoch where the network was still denser than the target.
    """
    candidates = [r for r in history if r.get("at_target") and r.get("val_acc") is not None]
    if not candidates:
        return {"best_epoch": None, "best_val_acc": None, "test_acc_at_best_val": None}
    best = max(candidates, key=lambda r: (r["val_acc"], -r["epoch"]))
    return {
        "best_epoch": best["epoch"],
        "best_val_acc": best["val_acc"],
        "test_acc_at_best_val": best["test_acc"],
    }


def summarize(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary's numbers, all read from the epoch rows (so a resumed run reports the same)."""
    last = history[-1] if history else {}
    return {
        "sparsity": last.get("sparsity"),
        "layer_sparsity": last.get("layer_sparsity"),
        "test_acc": last.get("test_acc"),
        "test_loss": last.get("test_loss"),
        "val_acc": last.get("val_acc"),
        "val_loss": last.get("val_loss"),
        **best_by_validation(history),
        "bn_recalibration_batches": last.get("bn_recalibration_batches"),
        "epochs": len(history),
        "epochs_at_target": sum(bool(r["at_target"]) for r in history),
    }


def lr_trace_sha256(steps: int, lr_fn: LrFn) -> str:
    """A digest of the LR of every step taken: equal digests mean equal LR traces (budgets comparable)."""
    lrs = np.array([lr_fn(s) for s in range(steps)], dtype=np.float64)
    return hashlib.sha256(lrs.tobytes()).hexdigest()[:16]


def previous_summary(out: Path) -> dict[str, Any] | None:
    """The summary already in ``out``, if it is one a run can trust; a damaged one (torn, not a summary, a
    completed one without its identity) is named in a warning and set aside: the run computes again."""
    try:
        return read_summary(out, trusted=True)
    except DamagedFile as err:
        log.warning("%s; set aside as %s, the run is computed again", err, set_aside(err.path).name)
        return None


def resume_point(
    path: Path, out: Path, identity: dict[str, Any], device: torch.device
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The checkpoint to resume from and the epoch rows it continues, or None: start from epoch 0.

    A checkpoint of another config, version or device type is refused (``ConfigError``). One that cannot
    be read is set aside, and one whose epochs ``metrics.jsonl`` no longer holds intact (truncated, a torn
    line) is removed, each named in a warning: resuming from it would report fewer epochs than trained.
    """
    try:
        ckpt = load_checkpoint(path, identity, device)
    except DamagedFile as err:
        log.warning("%s; set aside as %s, the run starts again from epoch 0", err, set_aside(path).name)
        return None
    rows, problem = read_metrics_checked(out)
    first_epoch = ckpt["epoch"] + 1
    if len(rows) < first_epoch:
        log.warning(
            "%s holds %d intact epoch rows%s, %s is at epoch %d: not resuming from it, the run starts again "
            "from epoch 0", out / METRICS, len(rows), f" ({problem})" if problem else "", path, first_epoch,
        )  # fmt: skip
        path.unlink()
        return None
    return ckpt, rows[:first_epoch]


def run(cfg: DictConfig) -> dict[str, Any]:
    """Fine-tune one pruned (or dense) network from the dense parent and write the run directory."""
    validate(cfg)
    check_device(cfg)
    out = Path(cfg.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # read-only, a name too long, a file in the way: before anything is computed
        reason = f"cannot use {out}: {err.strerror or err} (errno {err.errno})"
        raise ConfigError("output_dir", reason) from None
    remove_temporaries(out)  # of writes a kill interrupted; this process owns the directory now
    identity = run_identity(cfg)
    previous = previous_summary(out)
    if previous is not None and previous.get("identity", identity) != identity:
        raise ConfigError(
            "output_dir", f"{out} holds a run of a different config; choose another run directory"
        )
    if previous is not None and previous.get("status") == "completed":
        (out / CHECKPOINT).unlink(missing_ok=True)  # a kill between the summary and its removal left it
        if cfg.ensemble.member is not None:  # corrupted sets asked for since: evaluated, never retrained
            return members.complete_evaluations(out, cfg) or previous
        log.info("run already completed in %s: nothing to do", out)
        return previous

    started = time.time()
    torch.set_num_threads(cfg.train.cpu_threads)  # before any compute: the parent's numbers depend on it too
    device = pick_device(cfg.device)
    if device.type == "cpu":  # a run in another mode than it asks for would store numbers under a false key
        numerics.check(cfg.train.cpu_numerics)
    precision = Precision.for_device(device, cfg.train.amp, cfg.train.channels_last)
    # cfg.seed for both, unless an ensemble member (members.py): its own fine-tuning seed, and with
    # ensemble.independent_parents its own parent's
    init_seed, tune_seed = parent_seed(cfg), finetune_seed(cfg)
    seed_everything(init_seed)
    data = load_data(cfg.data)
    batches = make_batches(
        data, cfg.data.pipeline, cfg.train.batch_size, device, init_seed, cfg.data.num_workers
    )
    model = build_model(cfg.model, data.in_channels, data.image_shape[-1], data.num_classes).to(device)
    model = compiled(model, cfg.train.compile)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Layers the masks cannot act on are refused here, before the parent is trained.
    prunable_modules(model, cfg.pruning.keep_first_layer, cfg.pruning.keep_last_layer)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)

    max_steps = cfg.train.max_steps_per_epoch

    def train_parent(m: torch.nn.Module, on_epoch_end: EpochHook | None = None) -> dict[str, float]:
        opt = make_optimizer(m.parameters(), cfg.optimizer, cfg.parent.schedule.lr)
        fit(
            m, batches.train, opt, loss_fn, cfg.parent.epochs, cfg.parent.schedule, precision, max_steps,
            on_epoch_end,
        )  # fmt: skip
        metrics = evaluate_splits(m, batches, precision, 0)[0]
        log.info("parent: test_acc %.2f%% after %d epochs", metrics["test_acc"], cfg.parent.epochs)
        return metrics

    parent = load_parent(members.with_parent_seed(cfg), model, train_parent)
    parent_info = parent.info
    if parent_info.get("test_acc") is None:  # brought by parent.path: measure it here
        parent_info.update(evaluate_splits(model, batches, precision, 0)[0])

    seed_everything(tune_seed)
    if tune_seed != init_seed:  # a member's own batch order and augmentation while it is tuned
        batches = make_batches(
            data, cfg.data.pipeline, cfg.train.batch_size, device, tune_seed, cfg.data.num_workers
        )
    method = make_method(cfg.method, cfg.pruning, cfg.sparsity, tune_seed, members.member_masks(cfg))
    method.start(model)  # the mask comes from the trained parent, also when the weights are rewound
    if parent.rewind_state is not None:
        rewind_weights(model, parent.rewind_state)
    optimizer = make_optimizer(
        model.parameters(), cfg.optimizer, cfg.schedule.lr, method.self_decayed_params()
    )
    method.bind_optimizer(optimizer)
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
    recal = cfg.eval.bn_recalibration_batches if method.masks else 0  # dense: trained == evaluated network

    epochs = cfg.train.finetune_epochs
    steps = steps_per_epoch(batches.train, max_steps)
    lr_fn = retraining_lr(cfg.schedule, cfg.parent, steps, epochs)  # the parent's steps per epoch are these
    first_epoch, global_step, history = 0, 0, []
    ckpt_path = out / CHECKPOINT
    resumed = resume_point(ckpt_path, out, identity, device) if ckpt_path.exists() else None
    if resumed is not None:
        ckpt, history = resumed
        first_epoch, global_step = restore(ckpt, model, optimizer, method)
        log.info("resuming from %s at epoch %d", ckpt_path, first_epoch)

    sinks = make_sinks(cfg, to_container(cfg), identity, out, epochs)
    for sink in sinks:
        sink.start(history)
    summary: dict[str, Any] | None = None
    try:
        status, evaluated = "completed", model
        for epoch in range(first_epoch, epochs):
            t0 = time.time()
            method.begin_epoch(epoch, steps)
            at_target = method.at_target
            train_metrics, global_step = train_epoch(
                model, batches.train, optimizer, loss_fn, epoch, global_step,
                lr_fn, precision, method, max_steps,
            )  # fmt: skip
            eval_metrics, evaluated = evaluate_splits(model, batches, precision, recal)
            row = {
                "epoch": epoch + 1,
                "step": global_step,
                "lr": optimizer.param_groups[0]["lr"],
                "at_target": at_target and method.at_target,
                **train_metrics,
                **eval_metrics,
                **method.report(),
                "epoch_time_s": time.time() - t0,
            }
            history.append(row)
            for sink in sinks:
                sink.row(row)
            if not math.isfinite(row["train_loss"]):
                status = "diverged"
                break
            every = cfg.train.checkpoint_every
            if every and (epoch + 1) % every == 0 and epoch + 1 < epochs:
                save_checkpoint(
                    ckpt_path, model=model, optimizer=optimizer, method=method, epoch=epoch,
                    global_step=global_step, identity=identity, device=device,
                )  # fmt: skip

        model_file = None
        if status == "completed" and cfg.train.save_model:
            # The network evaluated last (recalibrated BN statistics included), pruned weights exactly zero.
            state = {k: v.detach().cpu() for k, v in export_state_dict(evaluated).items()}
            atomic_torch_save(out / MODEL, state)
            model_file = MODEL
        member_outputs = {}
        if status == "completed" and cfg.ensemble.member is not None:  # logits.pt for the combiner
            member_outputs = members.save_outputs(out, evaluated, batches, data, cfg, precision)
            member_outputs["flops"] = members.training_flops(cfg, data, steps, history, parent_info)
        final = {
            "status": status,
            "method": method.name,
            "target_sparsity": cfg.sparsity if method.name != "dense" else 0.0,
            **summarize(history),
            "collapsed_layers": method.collapsed_layers,
            "seed": cfg.seed,
            "model": cfg.model.arch,
            "data": cfg.data.name,
            "steps": global_step,
            "lr_trace_sha256": lr_trace_sha256(global_step, lr_fn),
            # the retraining baseline's budget: where the weights and the LR restart in the parent's training
            "rewind_epoch": cfg.parent.rewind_epoch,
            "lr_replay_start_epoch": lr_replay_start(cfg.schedule.name, cfg.parent, epochs),
            "parent": parent_info,
            "params": n_params,
            "prunable_params": start_report["prunable_params"],
            "model_file": model_file,
            "wall_time_s": time.time() - started,
            "device": str(device),
            # train.cpu_threads, as torch applied it (CPU results depend on it; README, "Same numbers ...")
            "torch_threads": torch.get_num_threads(),
            # what computed it: versions, the CPU kernels used, the numerics mode, the code's commit
            "provenance": provenance.software_and_machine(numerics.active_mode()),
            "config": to_container(cfg),
            "identity": identity,
            **member_outputs,
        }
        atomic_write_json(out / SUMMARY, final)
        summary = final  # only once it is on disk: W&B never reports a run the local files do not
    finally:  # W&B is finished also when the run fails: one bad run never leaves another's open
        for sink in sinks:
            sink.finish(summary, ok=summary is not None and summary["status"] == "completed")
    ckpt_path.unlink(missing_ok=True)
    log.info(
        "done: %s test_acc %.2f%% at sparsity %.4f -> %s",
        status,
        summary["test_acc"] or float("nan"),
        summary["sparsity"] or 0.0,
        out / SUMMARY,
    )
    return summary
