"""One run, as a function of its resolved config: prepare, build, get the parent, fine-tune, finalise.

``run(cfg)`` owns its output directory (``cfg.output_dir``) and nothing else, so launchers (local, joblib,
SLURM) and resumption only have to call it. A killed run resumes from ``checkpoint.pt`` when started again
with the same output directory; a completed one returns its summary without recomputing.

``run`` is a short sequence of phases, each a function of what the one before returns; everything a run
does besides training (its files, logs, W&B, an ensemble member's outputs; a caller's timer or simulated
kill) is an epoch callback (``callbacks.py``): the config's own from ``make_sinks`` and ``member_callbacks``,
then the caller's ``callbacks``.

What a run reports, and why (see README, "What a run writes"):
* every epoch is evaluated on the validation split (if any) and the test set, with BatchNorm statistics
  recalibrated for the evaluated (target) network (``loop.recalibrated``);
* ``test_acc`` is the final epoch's; a "best epoch" exists only among epochs trained on the final mask and
  is chosen by validation accuracy, never by test accuracy (``summary.best_by_validation``);
* the budget that makes methods comparable is recorded: ``steps``, ``epochs_at_target``, ``lr_trace_sha256``.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.schema import DATA_CRITERIA, SIGNAL_ARCHS, ConfigError, to_container
from ssa_experiments.config.seeds import derived_seed, finetune_seed, parent_seed
from ssa_experiments.config.targets import option_label
from ssa_experiments.config.validate import check_device, validate
from ssa_experiments.data.base import ImageData
from ssa_experiments.data.datasets import load_data
from ssa_experiments.data.loaders import RunBatches, make_batches
from ssa_experiments.ensembles import members
from ssa_experiments.ensembles.outputs import member_callbacks
from ssa_experiments.models import build_model, count_params
from ssa_experiments.pruning.criteria import ScoreData
from ssa_experiments.pruning.masking import dense_weight
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.pruning.pruner import Pruner
from ssa_experiments.pruning.sanity import reinitialise
from ssa_experiments.pruning.targets import check_pattern, prunable_layers, prunable_modules
from ssa_experiments.repro import numerics, provenance
from ssa_experiments.runtime.devices import pick_device
from ssa_experiments.runtime.precision import Precision
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
from ssa_experiments.training import interrupt
from ssa_experiments.training.callbacks import Callback, Callbacks, Row, RunContext
from ssa_experiments.training.checkpoint import load_checkpoint, restore, save_checkpoint
from ssa_experiments.training.compile import compiled
from ssa_experiments.training.loop import (
    EpochSums,
    SaveInEpoch,
    evaluate_splits,
    steps_per_epoch,
    train_epoch,
)
from ssa_experiments.training.lr import lr_replay_start, retraining_lr
from ssa_experiments.training.optim import make_optimizer
from ssa_experiments.training.parent import Parent, load_parent, parent_entry, parent_trainer
from ssa_experiments.training.sinks import make_sinks, parent_sinks
from ssa_experiments.training.summary import lr_trace_sha256, summarize

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(cfg: DictConfig, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Fine-tune one pruned (or dense) network from the dense parent and write the run directory.

    ``callbacks`` are called after the ones the config asks for (``callbacks.py``): a caller's way to observe
    or interrupt a run (a benchmark's timer, a test's simulated kill)."""
    out, identity, previous = prepare(cfg)
    sinks = make_sinks(cfg, identity, out, cfg.train.finetune_epochs)
    hooks = Callbacks([*sinks, *member_callbacks(cfg), *callbacks])
    if previous is not None and previous.get("status") == "completed":
        return revisit(out, previous, hooks)
    started = time.time()
    setup = build(cfg)
    parent = dense_parent(cfg, setup)
    ctx = set_up_finetuning(cfg, setup, parent, out, identity)
    hooks.on_start(ctx.history, ctx)
    summary: dict[str, Any] | None = None  # set once on disk: W&B never reports a run the files do not hold
    try:
        summary = finalise(ctx, fine_tune(ctx, hooks), hooks, started)
    finally:  # also when the run fails: W&B is finished, one bad run never leaves another's open
        hooks.on_finish(summary, ok=summary is not None and summary["status"] == "completed")
    (out / CHECKPOINT).unlink(missing_ok=True)
    log.info(
        "done: %s test_acc %.2f%% at sparsity %.4f -> %s",
        summary["status"],
        summary["test_acc"] or float("nan"),
        summary["sparsity"] or 0.0,
        out / SUMMARY,
    )
    return summary


# -- prepare: before anything is computed -------------------------------------------------------------------


def prepare(cfg: DictConfig) -> tuple[Path, dict[str, Any], dict[str, Any] | None]:
    """Validate ``cfg``, take its output directory; returns the directory, the run's identity and the
    summary already there (None: none a run can trust). Raises ConfigError when it holds another config."""
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
    return out, identity, previous


def revisit(out: Path, previous: dict[str, Any], hooks: Callbacks) -> dict[str, Any]:
    """A completed run asked for again: never recomputed; a callback may add to it what it lacks (an ensemble
    member's corrupted sets asked for since: evaluated, never retrained)."""
    (out / CHECKPOINT).unlink(missing_ok=True)  # a kill between the summary and its removal left it
    updated = hooks.revisit(out, previous)
    if updated is None:
        log.info("run already completed in %s: nothing to do", out)
    return updated or previous


# -- build: device, numerics, data, model -------------------------------------------------------------------


@dataclass
class Setup:
    """What every later phase computes with."""

    device: torch.device
    precision: Precision
    data: ImageData
    batches: RunBatches  # in the parent's order (its seed)
    model: torch.nn.Module  # the parent's initialisation
    loss_fn: torch.nn.Module
    init_seed: int


def build(cfg: DictConfig) -> Setup:
    """Threads, device and numerics mode first (every number depends on them), then data and model, seeded
    with the parent's seed. Layers the masks cannot act on are refused here, before the parent is trained."""
    torch.set_num_threads(cfg.train.cpu_threads)  # before any compute: the parent's numbers depend on it too
    device = pick_device(cfg.device)
    if device.type == "cpu":  # a run in another mode than it asks for would store numbers under a false key
        numerics.check(cfg.train.cpu_numerics)
    precision = Precision.for_device(device, cfg.train.amp, cfg.train.channels_last)
    # cfg.seed, unless an ensemble member with ensemble.independent_parents (members.py): its own parent's
    init_seed = parent_seed(cfg)
    seed_everything(init_seed)
    data = load_data(cfg.data)
    check_fits(cfg.model.arch, data)
    batches = make_batches(
        data, cfg.data.pipeline, cfg.train.batch_size, device, init_seed, cfg.data.num_workers
    )
    model = build_model(
        cfg.model, data.in_channels, data.image_shape[-1], data.num_classes, data.image_shape
    ).to(device)
    model = compiled(model, cfg.train.compile)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.model.arch == "custom" and not prunable_layers(model):  # before keep_first/last_layer's own rule
        raise ConfigError(
            "model._target_",
            f"{cfg.model._target_} has no layer the masks can prune (nn.Conv1d/2d/3d, nn.Linear, "
            "nn.MultiheadAttention): nothing to prune",
        )
    prunable = prunable_modules(model, cfg.pruning.keep_first_layer, cfg.pruning.keep_last_layer)
    check_pattern({n: tuple(dense_weight(m).shape) for n, m in prunable.items()}, cfg.pruning.pattern)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
    return Setup(device, precision, data, batches, model, loss_fn, init_seed)


def check_fits(arch: str, data: ImageData) -> None:
    """A built-in model takes the data's kind of sample: (C, H, W) images a 2-D model, (C, L) signals a 1-D
    one (``validate`` knows this for the built-in data sets; the user's data or files, once read)."""
    if arch == "custom":
        return
    signals = len(data.image_shape) == 2
    if signals != (arch in SIGNAL_ARCHS):
        kind = "(C, L) signals" if signals else "(C, H, W) images"
        need = ", ".join(SIGNAL_ARCHS) if signals else "a 2-D model"
        raise ConfigError(
            "model.arch", f"{arch} does not fit data={data.name}: its samples are {kind}; use {need}"
        )


# -- parent: the dense network every run starts from ---------------------------------------------------------


def dense_parent(cfg: DictConfig, setup: Setup) -> Parent:
    """The parent's weights loaded into ``setup.model`` (``parent.py``: brought, cached or trained), with its
    record for the summary; a parent brought by ``parent.path`` is measured here. A parent trained here is
    watched like a run (``sinks.parent_sinks``): parent_metrics.jsonl beside it, a bar or log lines, W&B."""
    parent_cfg = members.with_parent_seed(cfg)
    observer = parent_sinks(cfg, parent_entry(parent_cfg))
    train = parent_trainer(cfg, setup.batches, setup.precision, setup.loss_fn, observer)
    parent = load_parent(parent_cfg, setup.model, train)
    observer.published(parent.info)  # the parent's W&B run, if it was trained here: its weights as artifacts
    if parent.info.get("test_acc") is None:
        parent.info.update(evaluate_splits(setup.model, setup.batches, setup.precision, 0)[0])
    return parent


# -- set up fine-tuning: method, rewinding, optimizer, resume point ------------------------------------------


def set_up_finetuning(
    cfg: DictConfig, setup: Setup, parent: Parent, out: Path, identity: dict[str, Any]
) -> RunContext:
    """The pruning method started on the trained parent, the weights rewound if asked, the optimizer, the LR
    of every step, and the state of the checkpoint to resume from (``resume``; none: epoch 0)."""
    # cfg.seed, unless an ensemble member (members.py): its own batch order and augmentation while it is tuned
    tune_seed, batches = finetune_seed(cfg), setup.batches
    seed_everything(tune_seed)
    if tune_seed != setup.init_seed:
        batches = make_batches(
            setup.data, cfg.data.pipeline, cfg.train.batch_size, setup.device, tune_seed, cfg.data.num_workers
        )
    model, epochs = setup.model, cfg.train.finetune_epochs
    steps = steps_per_epoch(batches.train, cfg.train.max_steps_per_epoch)
    # the method through the library's interface, as a loop of one's own uses it (``pruning/pruner.py``);
    # the mask comes from the trained parent, also when the weights are rewound
    pruner = Pruner(
        model, cfg.method, cfg.sparsity, epochs=epochs, steps_per_epoch=steps, seed=tune_seed,
        pruning=cfg.pruning, scorer=members.member_scorer(cfg), score_data=score_data(cfg, batches, setup),
    )  # fmt: skip
    method = pruner.method
    parent.rewind(model)
    if cfg.pruning.control == "reinit" and method.masks:
        reinitialise(method.modules, method.masks, fresh_layers(cfg, setup, method, tune_seed))
    optimizer = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr.lr, method.self_decayed_params())
    pruner.bind_optimizer(optimizer)
    params, prunable = count_params(model), method.report()["prunable_params"]
    log.info(
        "model %s: %d parameters, %d prunable (%s); method %s, target sparsity %.4f",
        option_label(cfg.model, "arch"), params, prunable, f"{100 * prunable / params:.1f}%", method.name,
        cfg.sparsity,
    )  # fmt: skip
    lr_fn = retraining_lr(cfg.lr, cfg.parent, steps, epochs)  # the parent's steps per epoch are these
    recal = cfg.eval.bn_recalibration_batches if method.masks else 0  # dense: trained == evaluated network
    ctx = RunContext(
        cfg=cfg, out=out, identity=identity, device=setup.device, precision=setup.precision,
        data=setup.data, batches=batches, model=model, loss_fn=setup.loss_fn, pruner=pruner,
        optimizer=optimizer, parent_info=parent.info, params=params, prunable_params=prunable,
        epochs=epochs, steps_per_epoch=steps, lr_fn=lr_fn, recalibration_batches=recal,
        history=[], global_step=0, evaluated=model,
    )  # fmt: skip
    resume(ctx)
    return ctx


def score_data(cfg: DictConfig, batches: RunBatches, setup: Setup) -> ScoreData:
    """What snip, grasp and synflow score with: the first ``pruning.score_batches`` training batches of
    epoch 0 in the fine-tuning order (a function of the seed: ``loaders.epoch_generator``, no global RNG),
    the run's loss, one sample's shape. No batches for the criteria that read none."""
    k = cfg.pruning.score_batches if cfg.pruning.criterion in DATA_CRITERIA else 0
    chosen = [(setup.precision.inputs(x), y) for x, y in itertools.islice(batches.train.epoch(0), k)]
    return ScoreData(chosen, setup.loss_fn, setup.data.image_shape)


def fresh_layers(
    cfg: DictConfig, setup: Setup, method: PruningMethod, seed: int
) -> dict[str, torch.nn.Module]:
    """The prunable layers of the model built anew from a seed of the reinit control's own (the model's
    initialisation, another draw of it), on the CPU RNG forked: the run's later draws do not move."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, 0, "reinit"))
        data = setup.data
        fresh = build_model(cfg.model, data.in_channels, data.image_shape[-1], data.num_classes)
    found = dict(fresh.named_modules())
    return {name: found[name] for name in method.modules}


def resume(ctx: RunContext) -> None:
    """Continue from ``checkpoint.pt`` if there is one to trust: its model, optimizer, method and RNG
    states, its step, and the epoch rows it covers."""
    ckpt_path = ctx.out / CHECKPOINT
    resumed = resume_point(ckpt_path, ctx.out, ctx.identity, ctx.device) if ckpt_path.exists() else None
    if resumed is not None:
        ckpt, ctx.history = resumed
        first_epoch, ctx.global_step = restore(ckpt, ctx.model, ctx.optimizer, ctx.method)
        ctx.in_epoch = ckpt.get("in_epoch")
        where = f" after step {ctx.in_epoch['step']}" if ctx.in_epoch else ""
        log.info("resuming from %s at epoch %d%s", ckpt_path, first_epoch + 1, where)


# -- fine-tune: the epoch loop ------------------------------------------------------------------------------


def fine_tune(ctx: RunContext, hooks: Callbacks) -> str:
    """The epochs from the resume point on (the rows a resumed run has: one per epoch done), a checkpoint
    every ``train.checkpoint_every`` epochs and every ``train.checkpoint_every_steps`` steps inside an epoch;
    returns the run's status ("completed", or "diverged": a non-finite training loss stops it). A stop asked
    by the scheduler (``interrupt.py``) saves a checkpoint at the next step boundary first (whatever the
    intervals say), then raises ``Interrupted``."""
    for epoch in range(len(ctx.history), ctx.epochs):
        hooks.on_epoch_start(epoch, ctx)
        row = train_and_evaluate(ctx, epoch, hooks)
        ctx.history.append(row)
        hooks.on_epoch_end(row, ctx)
        if not math.isfinite(row["train_loss"]):
            return "diverged"
        if epoch + 1 == ctx.epochs:
            break
        every = ctx.cfg.train.checkpoint_every
        if (every and (epoch + 1) % every == 0) or interrupt.pending() is not None:
            with hooks.span("checkpoint"):
                save_checkpoint(
                    ctx.out / CHECKPOINT, model=ctx.model, optimizer=ctx.optimizer, method=ctx.method,
                    epoch=epoch, global_step=ctx.global_step, identity=ctx.identity, device=ctx.device,
                )  # fmt: skip
        interrupt.check(f"after epoch {epoch + 1} (checkpoint saved)")
    return "completed"


def train_and_evaluate(ctx: RunContext, epoch: int, hooks: Callbacks) -> Row:
    """One fine-tuning epoch and the evaluation after it; returns its metrics row."""
    t0 = time.time()
    method = ctx.method
    resumed, ctx.in_epoch = ctx.in_epoch, None
    if resumed is None:
        ctx.pruner.begin_epoch(epoch)  # also where a run resumed between epochs starts: the pruner's position
        at_target, start, sums = method.at_target, 0, None
    else:  # inside the epoch: its start-of-epoch work is in the restored state, not done again
        ctx.pruner.resume_at(epoch, resumed["step"])
        at_target, start = resumed["at_target"], resumed["step"]
        sums = EpochSums.from_state(resumed["sums"], ctx.device)
    save = in_epoch_saver(ctx, epoch, at_target, hooks) if method.resumes_inside_epochs() else None
    with hooks.span("train_epoch"):
        train_metrics, ctx.global_step = train_epoch(
            ctx.model, ctx.batches.train, ctx.optimizer, ctx.loss_fn, epoch, ctx.global_step,
            ctx.lr_fn, ctx.precision, ctx.pruner, ctx.cfg.train.max_steps_per_epoch,
            lambda step: hooks.on_step(step, ctx), start_step=start, sums=sums, save=save,
            save_every=ctx.cfg.train.checkpoint_every_steps,
        )  # fmt: skip
    eval_metrics, ctx.evaluated = evaluate_splits(
        ctx.model, ctx.batches, ctx.precision, ctx.recalibration_batches, hooks.span
    )
    return {
        "epoch": epoch + 1,
        "step": ctx.global_step,
        "lr": ctx.optimizer.param_groups[0]["lr"],
        "at_target": at_target and method.at_target,
        **train_metrics,
        **eval_metrics,
        **method.report(),
        "epoch_time_s": time.time() - t0,
    }


def in_epoch_saver(ctx: RunContext, epoch: int, at_target: bool, hooks: Callbacks) -> SaveInEpoch:
    """What ``train_epoch`` calls to write ``checkpoint.pt`` inside ``epoch`` (``checkpoint.py``)."""

    def save(step: int, global_step: int, sums: EpochSums) -> None:
        in_epoch = {"epoch": epoch, "step": step, "sums": sums.state(), "at_target": at_target}
        with hooks.span("checkpoint"):
            save_checkpoint(
                ctx.out / CHECKPOINT, model=ctx.model, optimizer=ctx.optimizer, method=ctx.method,
                epoch=epoch - 1, global_step=global_step, identity=ctx.identity, device=ctx.device,
                in_epoch=in_epoch,
            )  # fmt: skip

    return save


# -- finalise: model.pt, summary.json ------------------------------------------------------------------------


def finalise(ctx: RunContext, status: str, hooks: Callbacks, started: float) -> dict[str, Any]:
    """Write ``model.pt`` (a completed run, ``train.save_model``) and ``summary.json``; returns the summary.
    The callbacks' fields (a completed run's only) come last."""
    cfg, method = ctx.cfg, ctx.method
    model_file = None
    if status == "completed" and cfg.train.save_model:
        with hooks.span("save_model"):
            # The network evaluated last (recalibrated BN statistics included), pruned weights exactly zero.
            state = {k: v.detach().cpu() for k, v in ctx.pruner.export(ctx.evaluated).items()}
            atomic_torch_save(ctx.out / MODEL, state)
        model_file = MODEL
    outputs = hooks.summary_fields(ctx) if status == "completed" else {}
    final = {
        "status": status,
        "method": option_label(cfg.method, "name"),
        "target_sparsity": cfg.sparsity if method.name != "dense" else 0.0,
        **summarize(ctx.history),
        "collapsed_layers": method.collapsed_layers,
        "seed": cfg.seed,
        "model": option_label(cfg.model, "arch"),
        "data": option_label(cfg.data, "name"),
        "steps": ctx.global_step,
        "lr_trace_sha256": lr_trace_sha256(ctx.global_step, ctx.lr_fn),
        # the retraining baseline's budget: where the weights and the LR restart in the parent's training
        "rewind_epoch": cfg.parent.rewind_epoch,
        "lr_replay_start_epoch": lr_replay_start(cfg.lr.name, cfg.parent, ctx.epochs),
        "parent": ctx.parent_info,
        "params": ctx.params,
        "prunable_params": ctx.prunable_params,
        "model_file": model_file,
        "wall_time_s": time.time() - started,
        "device": str(ctx.device),
        # train.cpu_threads, as torch applied it (CPU results depend on it; README, "Same numbers ...")
        "torch_threads": torch.get_num_threads(),
        # what computed it: versions, the CPU kernels used, the numerics mode, the code's commit
        "provenance": provenance.software_and_machine(numerics.active_mode()),
        "config": to_container(cfg),
        "identity": ctx.identity,
        **outputs,
    }
    with hooks.span("summary"):
        atomic_write_json(ctx.out / SUMMARY, final)
    return final


# -- resuming ------------------------------------------------------------------------------------------------


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
