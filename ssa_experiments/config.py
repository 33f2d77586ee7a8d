"""The config schema and every bad-input rule, in one place.

The dataclasses are registered in Hydra's ConfigStore and ``conf/config.yaml`` extends them, so a key that is
not in the schema (a typo) or a value of the wrong type fails at composition, before any compute.
``validate`` adds the rules a type cannot express (ranges, cross-field rules, paths that must exist).
Key names are frozen: renaming one breaks users' sweeps; deprecate instead.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from ssa_experiments.numerics import MODES as CPU_NUMERICS
from ssa_experiments.provenance import COMPUTE_VERSION
from ssa_experiments.results import file_sha256


class ConfigError(ValueError):
    """A bad config value; the message names the field so the user knows what to change."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field_name = field_name


@dataclass
class ModelConfig:
    arch: str = MISSING  # registry key in models.py: small_cnn | mlp | resnet | wide_resnet | vit | timm
    name: str = ""  # timm model name when arch=timm; informative otherwise
    width: int = 16  # base channels (CNNs, ResNets), hidden units (MLP), embed dim (ViT)
    depth: int = 2  # conv/linear blocks (small models), ResNet/WRN depth, ViT blocks
    widen_factor: int = 1  # Wide-ResNet k
    patch_size: int = 4  # ViT
    heads: int = 4  # ViT
    dropout: float = 0.0
    pretrained: bool = False  # timm only; needs weights available locally (no network here)
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed through to timm.create_model


@dataclass
class DataConfig:
    name: str = MISSING  # digits | synthetic | mnist1d | cifar10 | cifar100 | tiny_imagenet
    root: str | None = None  # disk data sets: directory; default $SSA_DATA_DIR, then ./data
    pipeline: str = "device"  # device: whole set on the training device, batched aug; torch: DataLoader
    image_size: int = 16  # digits (upsampled from 8x8) and synthetic
    crop_padding: int = 0  # random crop with this padding (CIFAR: 4)
    flip: bool = False  # random horizontal flip
    num_workers: int = 2  # torch pipeline only
    # validation split carved from the training set (stratified), fixed by split_seed (not the run's seed),
    # so every run of a sweep selects on the same images; 0: no validation split, no "best epoch"
    val_fraction: float = 0.1
    split_seed: int = 0
    # synthetic only
    num_train: int = 512
    num_test: int = 256
    num_classes: int = 10
    channels: int = 3
    # mnist1d only: samples generated (train 80 %, test 20 %); 5000 is the published 4000/1000 split
    num_samples: int = 5000


@dataclass
class MethodConfig:
    # dense | one_shot | iterative | random_annealing | temperature_annealing; controls (README):
    # stochastic_constant | dropconnect_target | soft_annealing
    name: str = MISSING
    anneal_epochs: int = 0  # n: epochs over which iterative pruning / annealing reaches the target
    # annealing: linear|cosine|exponential|cubic (curves of the keep-probability p), geometric|density_linear
    # (of the expected density); iterative: linear|polynomial (also called cubic)|geometric
    schedule: str = "linear"
    granularity: str = "epoch"  # annealing: probabilities updated per epoch or per step
    resample: str = "step"  # stochastic masks: fresh Bernoulli sample every step or every epoch
    # tau0 in (0, 1]: temperature_annealing, stochastic_constant, soft_annealing
    initial_temperature: float = 0.5
    initial_drop_rate: float = 0.5  # dropconnect_target: r0 in (0, 1), drop rate of target weights at t = 0
    max_initial_probability: float = 1.0  # random_annealing: p_i(0) ~ U(0, this)
    decay_rate: float = 5.0  # exponential annealing schedule: s(x) = (e^{-kx} - e^{-k}) / (1 - e^{-k})
    # whether weight decay acts on weights sampled out of the current step's mask during annealing
    # (true: the plain optimizer, as a masked parameter is decayed by any PyTorch optimizer)
    decay_sampled_out: bool = True
    # temperature_annealing, random_annealing, soft_annealing: re-choose the target from the current weights
    # at the start of each epoch 1..n-1, as iterative re-scores (false: fixed from the parent, the paper's)
    rescore: bool = False
    # iterative: 0 = a pruning step at the start of each epoch 1..n; k > 0 = gradual magnitude pruning, a step
    # every k training steps at the schedule's sparsity at t = epoch + step/steps_per_epoch; target at epoch n
    prune_every_steps: int = 0


@dataclass
class PruningConfig:
    criterion: str = "magnitude"  # magnitude | random: scores that choose the target subnetwork
    scope: str = "global"  # global | layerwise threshold
    keep_first_layer: bool = False  # paper/authors' code: the first conv IS pruned
    keep_last_layer: bool = True  # paper/authors' code: the classifier is NOT pruned
    allow_layer_collapse: bool = False  # a target that empties a whole layer fails the run unless true


@dataclass
class ScheduleConfig:
    """A learning-rate schedule: ``lr`` is the peak (one_cycle) or base LR; the rest shape it."""

    # one_cycle | cosine | constant | step | parent_swa_style; retraining baselines read off the parent's
    # schedule (optim.retraining_lr; their other fields are not read): finetune | lr_rewind
    name: str = MISSING
    lr: float = 0.1
    pct_start: float = 0.1  # one_cycle warm-up fraction
    div_factor: float = 100.0  # one_cycle: start at lr / div_factor
    final_div_factor: float = 1e4  # one_cycle: end at start / final_div_factor
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # step: fractions of training
    gamma: float = 0.1  # step: factor at each milestone
    decay_start: float = 0.5  # parent_swa_style: linear decay from here (fraction of training) ...
    decay_end: float = 0.9  # ... to here, then constant
    final_ratio: float = 0.01  # parent_swa_style: final LR = lr * final_ratio (0.1 -> 0.001)
    min_ratio: float = 0.0  # cosine: final LR = lr * min_ratio


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | adamw
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw


@dataclass
class TrainConfig:
    finetune_epochs: int = 10
    batch_size: int = 128
    label_smoothing: float = 0.0
    amp: bool = True  # bf16 autocast, used only on CUDA
    channels_last: bool = True  # used only on CUDA with 4-D inputs
    checkpoint_every: int = 1  # epochs between resumable checkpoints (0: never)
    max_steps_per_epoch: int = 0  # >0: cap steps per epoch (smoke tests); 0: full epochs
    save_model: bool = True  # a completed run writes model.pt: the pruned network as a plain state_dict
    # torch's CPU threads in every run, whatever the launcher gives its workers: CPU results depend on the
    # thread count (the order of float sums), so it is fixed here and part of a run's (and parent's) identity.
    # 1: a sweep parallelises over processes (hydra/launcher=joblib, SLURM), and every launcher gives the
    # same numbers; raise it for one large run on a CPU. It does not change what a GPU computes.
    cpu_threads: int = 1
    # portable: CPU kernels capped at AVX2 (numerics.py), so a CPU run gives the same bits on every x86-64
    # machine with AVX2, with or without AVX-512; native: torch's own choice for this CPU (faster, its own
    # numbers). Part of a CPU run's (and parent's) identity; a GPU's numbers do not depend on it.
    cpu_numerics: str = "portable"


@dataclass
class EvalConfig:
    # Evaluate a pruned network with BatchNorm statistics recalibrated for its own (target) mask: this many
    # training batches through a copy in train mode, no gradient, the training state untouched. 0: use the
    # running statistics accumulated in training (which mix networks: sampled masks, denser earlier masks).
    bn_recalibration_batches: int = 20


@dataclass
class EnsembleConfig:
    """A run as one member (child) of a Prune-and-Tune ensemble (README, "Ensembles"); ``member: null`` (the
    default) is an ordinary run, and none of these keys is then part of its identity.

    A member's target mask is a function of (parent, ``member``, ``seed``) only, so members train in parallel
    under any launcher and are re-created exactly; ``masks`` replaces ``pruning.criterion`` for members. Its
    fine-tuning randomness (data order, annealing samples) comes from a seed derived from (``seed``, member),
    so two members never share a batch order; the parent keeps ``seed`` unless ``independent_parents``.
    """

    member: int | None = None  # index in [0, size); null: not an ensemble member
    size: int = 6  # the ensemble's number of members (validation only: it never changes a member's numbers)
    # anti_random: members 2j and 2j+1 rank the weights by one random permutation (seeded by (seed, j)),
    #   the odd one reversed: at 50% sparsity their masks are exact complements on the prunable weights;
    # random: a random permutation of its own per member; magnitude_random: |w| * exp(noise * N(0, 1))
    masks: str = "anti_random"
    # magnitude_random: std of the log-normal factor on |w|; 0.5 makes two members share ~78% of their
    # kept weights at 50% sparsity (~84% with the plain magnitude mask), against 50% for random masks
    noise: float = 0.5
    # true: each member's dense parent is trained from a seed derived from (seed, member): the dense ensemble
    # trained from scratch; false: every member is pruned from the one parent of ``seed`` (Prune and Tune)
    independent_parents: bool = False
    # corrupted copies of the test set every member is also evaluated on (data/corruptions.py)
    corruptions: list[str] = field(
        default_factory=lambda: ["gaussian_noise", "shot_noise", "gaussian_blur", "contrast"]
    )
    severities: list[int] = field(default_factory=lambda: [1, 3, 5])


@dataclass
class ParentConfig:
    epochs: int = 20
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(name="parent_swa_style", lr=0.1))
    path: str | None = None  # bring your own trained checkpoint (a state_dict file)
    cache_dir: str = "${oc.env:SSA_CACHE_DIR,.cache/parents}"  # relative to the launch directory
    cache: bool = True
    # weight rewinding (Frankle et al.): the mask from the trained parent, the weights of the end of this
    # parent epoch (0: the initialisation); null: the trained parent's weights
    rewind_epoch: int | None = None
    # parent epochs whose weights the cache entry keeps (besides rewind_epoch): set it in a sweep's preset so
    # the parent is trained once for every rewinding run; not part of the parent's key nor of a run's identity
    save_epochs: list[int] = field(default_factory=list)


@dataclass
class LoggerConfig:
    """Where runs are logged besides their own files (which are always written, and written first)."""

    name: str = "local"  # local | wandb (a mirror of the local files)
    # per-epoch progress: bar (tqdm, on a terminal) | lines (one log line per epoch) | none | auto: a bar on a
    # terminal, lines otherwise (SLURM, CI logs), none inside multirun workers (their one-line result stays)
    progress: str = "auto"
    project: str = "ssa-experiments"  # wandb
    entity: str | None = None  # wandb: your user or team; null: W&B's default
    group: str | None = None  # wandb; null: the experiment preset's name, else the sweep directory's name
    job_type: str | None = None  # wandb; null: the method's name
    tags: list[str] = field(default_factory=list)  # wandb; model, data, method and sparsity are added
    mode: str | None = None  # wandb: online | offline | disabled; null: W&B decides (WANDB_MODE, else online)
    init_timeout: float = 60.0  # wandb: seconds before a hanging init is given up (the run goes on)


@dataclass
class StoreConfig:
    """Where runs live, keyed by what they compute (``store.py``); sweeps link to them."""

    root: str | None = "outputs/store"  # relative to the launch directory; null: run in Hydra's directory
    # seconds a process asking for a run that another holds waits for its lock (logging whom it waits for)
    # before giving up with an error; null: for ever. Not part of any identity (``store`` is not).
    lock_timeout_s: float | None = 86400.0


@dataclass
class Config:
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    method: MethodConfig = MISSING
    schedule: ScheduleConfig = MISSING
    logger: LoggerConfig = MISSING
    pruning: PruningConfig = field(default_factory=PruningConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    parent: ParentConfig = field(default_factory=ParentConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    sparsity: float = 0.9  # fraction of prunable weights removed in the target subnetwork
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    output_dir: str = "${hydra:runtime.output_dir}"
    store: StoreConfig = field(default_factory=StoreConfig)
    force: bool = False  # recompute a run the store already holds
    # what main() returns to a Hydra sweeper that optimises (Optuna, Nevergrad): a validation metric of the
    # summary, never a test one, so tuning never selects on the test set
    objective: str = "val_acc"


def short_dirname(overrides: str, max_len: int = 120) -> str:
    """A sweep job's directory from its overrides (Hydra's ``override_dirname``): every swept key is in the
    name, so two configs never share a directory; a name longer than ``max_len`` keeps its start and ends
    with a hash of the whole, so it stays unique and within file-name limits."""
    name = overrides.replace("/", "_") or "default"
    if len(name) <= max_len:
        return name
    import hashlib

    return f"{name[: max_len - 17]}_{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)
    OmegaConf.register_new_resolver("ssa_dirname", short_dirname, replace=True)


METHODS = (
    "dense", "one_shot", "iterative", "random_annealing", "temperature_annealing",
    "stochastic_constant", "dropconnect_target", "soft_annealing",
)  # fmt: skip
TAU0_METHODS = ("temperature_annealing", "stochastic_constant", "soft_annealing")  # read initial_temperature
GRADUAL_METHODS = ("iterative", "random_annealing", *TAU0_METHODS, "dropconnect_target")  # reach T at epoch n
# pruning/schedules.py: shapes in keep-probability space, then curves in expected-density space
ANNEAL_SCHEDULES = ("linear", "cosine", "exponential", "cubic", "geometric", "density_linear")
ITERATIVE_SCHEDULES = ("linear", "polynomial", "cubic", "geometric")  # cubic: another name of polynomial
RESCORE_METHODS = ("temperature_annealing", "random_annealing", "soft_annealing")  # read method.rescore
PARENT_DERIVED_SCHEDULES = ("finetune", "lr_rewind")  # retraining baselines: the parent's LR, replayed
LR_SCHEDULES = ("one_cycle", "cosine", "constant", "step", "parent_swa_style", *PARENT_DERIVED_SCHEDULES)
DATA_SETS = ("digits", "synthetic", "mnist1d", "cifar10", "cifar100", "tiny_imagenet")  # data/datasets.py
# what main() may return to a sweeper: validation metrics of the summary only
OBJECTIVES = ("val_acc", "best_val_acc", "val_loss")
SIGNAL_DATA_SETS = ("mnist1d",)  # (N, C, L) signals: only the 1-D models (SIGNAL_ARCHS) take them


def resolve_root(cfg: DataConfig) -> Path:
    """Where a disk data set lives: ``data.root`` if set, else ``$SSA_DATA_DIR``, else ``./data``."""
    root = cfg.root or os.environ.get("SSA_DATA_DIR") or "data"
    return Path(root).expanduser()


ARCHS = ("small_cnn", "mlp", "resnet", "wide_resnet", "vit", "timm", "cnn1d")
SIGNAL_ARCHS = ("cnn1d",)


def check_num_samples(n: int) -> None:
    """MNIST-1D's generator makes ``n // 10`` samples per class, so ``n`` must be a multiple of 10 (else the
    set is silently smaller than asked), and at least 100 (10 per class, a test set of 20)."""
    if n < 100 or n % 10:
        raise ConfigError("data.num_samples", f"must be a multiple of 10 and >= 100, got {n}")


def _choice(value: str, allowed: tuple[str, ...] | list[str], name: str) -> None:
    if value not in allowed:
        raise ConfigError(name, f"unknown value {value!r}; choose one of {', '.join(allowed)}")


def _positive(value: float, name: str, allow_zero: bool = False) -> None:
    """A finite number > 0 (>= 0 with ``allow_zero``): NaN and infinity are refused, as NaN compares false."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(name, f"must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value}")


def _in_range(value: float, name: str, low: float, high: float, closed_high: bool = False) -> None:
    """``low <= value < high`` (``<= high`` with ``closed_high``); NaN is never in range."""
    if not (low <= value <= high if closed_high else low <= value < high):
        raise ConfigError(name, f"must be in [{low:g}, {high:g}{']' if closed_high else ')'}, got {value}")


def validate_schedule(s: Any, prefix: str) -> None:
    _choice(s.name, LR_SCHEDULES, f"{prefix}.name")
    _positive(s.lr, f"{prefix}.lr")
    if not 0 < s.pct_start < 1:
        raise ConfigError(f"{prefix}.pct_start", f"must be in (0, 1), got {s.pct_start}")
    if not 0 <= s.decay_start <= s.decay_end <= 1:
        raise ConfigError(f"{prefix}.decay_start", "need 0 <= decay_start <= decay_end <= 1")
    _positive(s.div_factor, f"{prefix}.div_factor")
    _positive(s.final_div_factor, f"{prefix}.final_div_factor")
    _positive(s.gamma, f"{prefix}.gamma")
    for m in s.milestones:  # fractions of training
        _in_range(m, f"{prefix}.milestones", 0, 1, closed_high=True)
    _positive(s.final_ratio, f"{prefix}.final_ratio", allow_zero=True)
    _positive(s.min_ratio, f"{prefix}.min_ratio", allow_zero=True)


def validate_model(m: Any) -> None:
    """Sizes a model is built from: at least one of each (0 builds nothing and fails deep inside torch)."""
    for key in ("width", "depth", "widen_factor", "patch_size", "heads"):
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key}", f"must be >= 1, got {getattr(m, key)}")
    _in_range(m.dropout, "model.dropout", 0, 1)


def check_device(cfg: DictConfig | Config) -> None:
    """A CUDA device this machine has (torch's view), before anything is written or computed; not part of
    ``validate``, which judges a config on any machine."""
    name = str(cfg.device)
    if not name.startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = name.partition(":")[2]
    if not count:
        raise ConfigError(
            "device", f"{name} asked for, but torch sees no GPU on this machine: use cpu or auto"
        )
    if index and (not index.isdigit() or int(index) >= count):
        raise ConfigError("device", f"{name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")


ENSEMBLE_MASKS = ("anti_random", "random", "magnitude_random")


def validate_ensemble(cfg: DictConfig | Config) -> None:
    """The ``ensemble.*`` rules, checked for every run (a default run's values are valid), so a bad preset
    fails before its first member trains."""
    e = cfg.ensemble
    _choice(e.masks, ENSEMBLE_MASKS, "ensemble.masks")
    _positive(e.size, "ensemble.size")
    _positive(e.noise, "ensemble.noise", allow_zero=True)
    if e.masks == "anti_random" and e.size % 2:
        raise ConfigError(
            "ensemble.size", f"anti_random masks come in pairs: needs an even size, not {e.size}"
        )
    if e.member is not None and not 0 <= e.member < e.size:
        raise ConfigError("ensemble.member", f"must be in [0, ensemble.size={e.size}), got {e.member}")
    if e.independent_parents and cfg.parent.path is not None:
        raise ConfigError(
            "ensemble.independent_parents",
            "each member trains its own parent from a derived seed, parent.path brings one: unset one",
        )
    from ssa_experiments.data.corruptions import CORRUPTIONS, SEVERITIES  # torch: imported when needed only

    for name in e.corruptions:
        _choice(name, CORRUPTIONS, "ensemble.corruptions")
    bad = [s for s in e.severities if s not in SEVERITIES]
    if bad:
        raise ConfigError("ensemble.severities", f"{bad} not in {list(SEVERITIES)}")


def validate_retraining(cfg: DictConfig | Config) -> None:
    """The retraining baselines' rules: a derived schedule needs a parent schedule to read, LR rewinding must
    stay within the parent's epochs, and weight rewinding needs epoch checkpoints of a parent trained here."""
    p, t = cfg.parent, cfg.train.finetune_epochs
    if p.schedule.name in PARENT_DERIVED_SCHEDULES:
        raise ConfigError("parent.schedule.name", f"{p.schedule.name!r} is a fine-tuning schedule only")
    if cfg.schedule.name in PARENT_DERIVED_SCHEDULES and p.epochs <= 0:
        raise ConfigError(
            "parent.epochs",
            f"schedule={cfg.schedule.name} replays the parent's LR schedule: set parent.epochs and "
            "parent.schedule to those the parent was trained with",
        )
    for k in p.save_epochs:
        if not 0 <= k < p.epochs:
            raise ConfigError("parent.save_epochs", f"each must be in [0, parent.epochs={p.epochs}), got {k}")
    k = p.rewind_epoch
    if k is not None:
        if p.path is not None:
            raise ConfigError(
                "parent.rewind_epoch",
                "needs the parent's epoch checkpoints, which parent.path (final weights only) does not have",
            )
        if not 0 <= k < p.epochs:
            raise ConfigError("parent.rewind_epoch", f"must be in [0, parent.epochs={p.epochs}), got {k}")
    # lr_rewind replays the parent's epochs from parent.epochs - t (from k when rewinding): all must exist
    most = p.epochs - (0 if k is None else k)
    if cfg.schedule.name == "lr_rewind" and t > most:
        after = "" if k is None else f" after parent.rewind_epoch={k}"
        raise ConfigError(
            "train.finetune_epochs",
            f"schedule=lr_rewind replays {t} parent epochs, the parent has {most}{after}: need <= {most}",
        )


def validate(cfg: DictConfig | Config) -> None:
    """Raise ConfigError for the first bad value; called before any data is read or model built."""
    if not 0 <= cfg.sparsity < 1:
        raise ConfigError("sparsity", f"must be in [0, 1), got {cfg.sparsity}")
    if not 0 <= cfg.seed < 2**32:  # numpy's seeds
        raise ConfigError("seed", f"must be in [0, 2**32), got {cfg.seed}")
    m = cfg.method
    _choice(m.name, METHODS, "method.name")
    _choice(cfg.model.arch, ARCHS, "model.arch")
    _choice(cfg.data.name, DATA_SETS, "data.name")
    if (cfg.data.name in SIGNAL_DATA_SETS) != (cfg.model.arch in SIGNAL_ARCHS):
        raise ConfigError(
            "model.arch",
            f"{cfg.model.arch} does not fit data={cfg.data.name}: 1-D signals "
            f"({', '.join(SIGNAL_DATA_SETS)}) need a 1-D model ({', '.join(SIGNAL_ARCHS)}), images a 2-D one",
        )
    if cfg.data.name == "mnist1d":
        check_num_samples(cfg.data.num_samples)
    _choice(cfg.data.pipeline, ("device", "torch"), "data.pipeline")
    _choice(cfg.pruning.criterion, ("magnitude", "random"), "pruning.criterion")
    _choice(cfg.pruning.scope, ("global", "layerwise"), "pruning.scope")
    _choice(cfg.optimizer.name, ("sgd", "adamw"), "optimizer.name")
    _positive(cfg.optimizer.weight_decay, "optimizer.weight_decay", allow_zero=True)
    _in_range(cfg.optimizer.momentum, "optimizer.momentum", 0, 1)
    for beta in cfg.optimizer.betas:
        _in_range(beta, "optimizer.betas", 0, 1)
    validate_model(cfg.model)
    validate_schedule(cfg.schedule, "schedule")
    validate_schedule(cfg.parent.schedule, "parent.schedule")
    _positive(cfg.train.finetune_epochs, "train.finetune_epochs")
    _positive(cfg.train.batch_size, "train.batch_size")
    _positive(cfg.train.cpu_threads, "train.cpu_threads")
    _choice(cfg.train.cpu_numerics, CPU_NUMERICS, "train.cpu_numerics")
    _choice(cfg.objective, OBJECTIVES, "objective")
    _positive(cfg.parent.epochs, "parent.epochs", allow_zero=cfg.parent.path is not None)
    validate_retraining(cfg)
    if not 0 <= cfg.train.label_smoothing < 1:
        raise ConfigError("train.label_smoothing", f"must be in [0, 1), got {cfg.train.label_smoothing}")
    if m.name == "iterative":
        _choice(m.schedule, ITERATIVE_SCHEDULES, "method.schedule")
    else:
        _choice(m.schedule, ANNEAL_SCHEDULES, "method.schedule")
    _choice(m.granularity, ("epoch", "step"), "method.granularity")
    _choice(m.resample, ("step", "epoch"), "method.resample")
    if m.name in TAU0_METHODS and not 0 < m.initial_temperature <= 1:
        raise ConfigError("method.initial_temperature", f"must be in (0, 1], got {m.initial_temperature}")
    if m.name == "random_annealing" and not 0 < m.max_initial_probability <= 1:
        raise ConfigError(
            "method.max_initial_probability", f"must be in (0, 1], got {m.max_initial_probability}"
        )
    if m.name == "dropconnect_target" and not 0 < m.initial_drop_rate < 1:  # kept weights scale by 1/(1 - r)
        raise ConfigError("method.initial_drop_rate", f"must be in (0, 1), got {m.initial_drop_rate}")
    _positive(m.decay_rate, "method.decay_rate")
    _positive(m.prune_every_steps, "method.prune_every_steps", allow_zero=True)
    if m.prune_every_steps and m.name != "iterative":
        raise ConfigError(
            "method.prune_every_steps",
            f"is read by method=iterative only (gradual magnitude pruning), not {m.name}",
        )
    if m.rescore and m.name not in RESCORE_METHODS:
        raise ConfigError(
            "method.rescore",
            f"is read by {', '.join(RESCORE_METHODS)} only, not {m.name} (iterative always re-scores; the "
            "controls fix P or the target from the start)",
        )
    if m.rescore and cfg.pruning.criterion == "random":
        raise ConfigError(
            "method.rescore", "pruning.criterion=random draws the same scores again: nothing to re-score"
        )
    if m.name in GRADUAL_METHODS:
        _positive(m.anneal_epochs, "method.anneal_epochs")
        if m.anneal_epochs >= cfg.train.finetune_epochs:  # the target must be trained on its own
            raise ConfigError(
                "method.anneal_epochs",
                f"{m.anneal_epochs} must be < train.finetune_epochs={cfg.train.finetune_epochs} "
                "(the target mask is in force from epoch anneal_epochs on; at least one epoch must train it)",
            )
    if not 0 <= cfg.data.val_fraction < 1:
        raise ConfigError("data.val_fraction", f"must be in [0, 1), got {cfg.data.val_fraction}")
    _positive(cfg.eval.bn_recalibration_batches, "eval.bn_recalibration_batches", allow_zero=True)
    validate_ensemble(cfg)
    _choice(cfg.logger.name, ("local", "wandb"), "logger.name")
    _choice(cfg.logger.progress, ("auto", "bar", "lines", "none"), "logger.progress")
    if cfg.logger.mode is not None:
        _choice(cfg.logger.mode, ("online", "offline", "disabled"), "logger.mode")
    _positive(cfg.logger.init_timeout, "logger.init_timeout")
    if cfg.store.lock_timeout_s is not None:
        _positive(cfg.store.lock_timeout_s, "store.lock_timeout_s", allow_zero=True)
    if cfg.device not in ("auto", "cpu") and not str(cfg.device).startswith("cuda"):
        raise ConfigError("device", f"unknown device {cfg.device!r}; use auto, cpu, cuda or cuda:N")
    if cfg.data.name in ("cifar10", "cifar100", "tiny_imagenet"):
        root = resolve_root(cfg.data)
        if not root.is_dir():
            raise ConfigError(
                "data.root",
                f"data directory {str(root)!r} does not exist; set data.root=... or SSA_DATA_DIR to a copy "
                f"of {cfg.data.name} (see README, 'Data sets')",
            )
    if cfg.parent.path is not None and not Path(cfg.parent.path).is_file():
        raise ConfigError("parent.path", f"no checkpoint file at {cfg.parent.path!r}")


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data, for summary.json."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


# Where a run executes, reads from, logs or is stored, what it saves, how it is tuned: not what it computes.
# The device and the train.* keys of precision are replaced by what they do (``compute_identity``).
NOT_IDENTITY = (
    "output_dir", "device", "parent.cache_dir", "parent.save_epochs", "parent.cache", "data.root",
    "data.num_workers", "logger", "store", "force", "objective", "train.checkpoint_every", "train.save_model",
    "train.amp", "train.channels_last", "train.cpu_threads", "train.cpu_numerics",
)  # fmt: skip
# The method.* keys each method reads (besides name); the others cannot change its run.
ANNEALING_KEYS = ("anneal_epochs", "schedule", "granularity", "resample", "decay_rate", "decay_sampled_out")
METHOD_KEYS = {
    "dense": (),
    "one_shot": (),
    "iterative": ("anneal_epochs", "schedule", "prune_every_steps"),
    "temperature_annealing": (*ANNEALING_KEYS, "initial_temperature", "rescore"),
    "random_annealing": (*ANNEALING_KEYS, "max_initial_probability", "rescore"),
    # P is constant until epoch n: no schedule to follow, nothing to interpolate within an epoch
    "stochastic_constant": ("anneal_epochs", "resample", "decay_sampled_out", "initial_temperature"),
    "dropconnect_target": (*ANNEALING_KEYS, "initial_drop_rate"),
    # nothing is sampled: P(t) itself is the train mask
    "soft_annealing": (*(k for k in ANNEALING_KEYS if k != "resample"), "initial_temperature", "rescore"),
}
# method.* keys at the value that computes what runs did before the key existed: dropped from the identity
# there, so one computation has one identity however it is spelled
METHOD_KEY_DEFAULTS = {"rescore": False, "prune_every_steps": 0}
# The fields each LR schedule reads (optim.lr_at); the parent-derived ones read the parent's schedule.
LR_SCHEDULE_KEYS = {
    "constant": ("lr",),
    "one_cycle": ("lr", "pct_start", "div_factor", "final_div_factor"),
    "cosine": ("lr", "min_ratio"),
    "step": ("lr", "milestones", "gamma"),
    "parent_swa_style": ("lr", "decay_start", "decay_end", "final_ratio"),
    "finetune": (),
    "lr_rewind": (),
}
# data.* keys only some data sets read; dropped from the run's and the parent's identity for the others, so
# adding a data set never changes the store keys and cached parents of the existing ones
DATA_KEYS_READ_BY = {"num_samples": ("mnist1d",)}


def data_identity(data: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` node without the keys its data set does not read (``DATA_KEYS_READ_BY``)."""
    name = data.get("name")
    return {k: v for k, v in data.items() if name in DATA_KEYS_READ_BY.get(k, (name,))}


def schedule_identity(schedule: dict[str, Any]) -> dict[str, Any]:
    """An LR schedule as the fields its shape reads (``schedule.gamma`` under one_cycle changes nothing)."""
    name = schedule.get("name")
    return {
        "name": name,
        **{k: schedule[k] for k in LR_SCHEDULE_KEYS.get(name, tuple(schedule)) if k != "name"},
    }


def device_type(device: str) -> str:
    """cpu or cuda: what ``device`` (auto, cpu, cuda, cuda:N) computes on here (auto asks torch)."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if str(device).startswith("cuda") else "cpu"


def compute_identity(cfg: DictConfig | Config) -> dict[str, Any]:
    """How the numbers are computed, as applied rather than as asked: on a CPU the numerics mode and the
    thread count (the order of float sums); on CUDA bf16 autocast and channels-last, which the CPU ignores;
    and the code's ``COMPUTE_VERSION``. Part of every run's identity and every parent's key."""
    t = cfg.train
    if device_type(cfg.device) == "cuda":
        images = cfg.data.name not in SIGNAL_DATA_SETS  # channels-last acts on 4-D inputs only
        return {
            "version": COMPUTE_VERSION,
            "device": "cuda",
            "autocast": "bfloat16" if t.amp else None,
            "channels_last": bool(t.channels_last and images),
        }
    return {
        "version": COMPUTE_VERSION,
        "device": "cpu",
        "cpu_numerics": t.cpu_numerics,
        "cpu_threads": t.cpu_threads,
    }


@functools.cache
def _content_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def content_sha256(path: str | Path) -> str:
    """A file's SHA-256, computed once per (path, size, mtime) in a process."""
    st = os.stat(path)
    return _content_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def parent_source_identity(path: str | None) -> dict[str, Any]:
    """A brought parent (``parent.path``) as its content, not its path: the same file anywhere is one
    parent, another file at the same path is another."""
    return {} if path is None else {"path_sha256": content_sha256(path)}


def _normalised_prune_every(cfg: DictConfig | Config, every: int) -> int:
    """0 when GMP's period equals the steps per epoch: that is per-epoch pruning (bit-identical), one run."""
    if not every or cfg.method.name != "iterative":
        return every
    from ssa_experiments.data.loaders import training_steps_per_epoch  # reads the data set: only here

    return 0 if every == training_steps_per_epoch(cfg) else every


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus ``NOT_IDENTITY`` and every key the run does not read, plus how it is
    computed (``compute_identity``): two runs with equal identities compute the same numbers, and two runs
    that compute the same numbers have equal identities as far as the config can tell (the dense run at any
    requested sparsity is one run)."""
    ident = to_container(cfg)
    for dotted in NOT_IDENTITY:
        *parents, leaf = dotted.split(".")
        node = ident
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    method = ident.get("method", {})
    reads = METHOD_KEYS.get(method.get("name"), tuple(method))
    if "prune_every_steps" in method:
        method["prune_every_steps"] = _normalised_prune_every(cfg, method["prune_every_steps"])
    ident["method"] = {
        k: v
        for k, v in method.items()
        if (k == "name" or k in reads) and not (k in METHOD_KEY_DEFAULTS and v == METHOD_KEY_DEFAULTS[k])
    }
    if method.get("name") == "iterative" and method.get("schedule") == "cubic":
        ident["method"]["schedule"] = "polynomial"  # two names of one schedule: one run
    ident["data"] = data_identity(ident.get("data", {}))
    ident["sparsity"] = float(ident["sparsity"]) + 0.0  # -0.0 is 0.0
    if method.get("name") == "dense":
        ident["sparsity"] = 0.0
        ident.pop("pruning", None)
        ident.pop("eval", None)  # the dense network is evaluated as trained: nothing to recalibrate
    parent = ident.get("parent", {})
    if parent.get("rewind_epoch") is None:
        parent.pop("rewind_epoch", None)
    parent.update(parent_source_identity(parent.pop("path", None)))
    if "schedule" in parent:
        parent["schedule"] = schedule_identity(parent["schedule"])
    if "schedule" in ident:
        ident["schedule"] = schedule_identity(ident["schedule"])
    ident.update(ensemble_identity(ident.pop("ensemble", None), method.get("name")))
    ident["compute"] = compute_identity(cfg)
    return ident


def derived_seed(seed: int, member: int, stream: str) -> int:
    """A seed in [0, 2**31) that is a pure function of (``seed``, ``member``, ``stream``): independent streams
    (a member's parent, its fine-tuning, its mask) never share draws, and any process re-derives them."""
    digest = hashlib.sha256(f"{stream}:{seed}:{member}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**31


def parent_seed(cfg: DictConfig | Config) -> int:
    """The seed the dense parent is initialised and trained from: ``seed``, or a member's own with
    ``ensemble.independent_parents`` (then the parent cache keys on it, and on nothing else of the member)."""
    e = cfg.ensemble
    if e.member is None or not e.independent_parents:
        return int(cfg.seed)
    return derived_seed(int(cfg.seed), int(e.member), "parent")


def finetune_seed(cfg: DictConfig | Config) -> int:
    """The seed of fine-tuning (batch order, augmentation, mask samples): ``seed`` for an ordinary run, one of
    a member's own otherwise, so members differ in their tuning noise as well as in their masks."""
    if cfg.ensemble.member is None:
        return int(cfg.seed)
    return derived_seed(int(cfg.seed), int(cfg.ensemble.member), "finetune")


def ensemble_identity(ensemble: dict[str, Any] | None, method: str | None) -> dict[str, Any]:
    """The ``ensemble`` entry of a run's identity: none for a non-member (so every identity from before
    ensembles existed is unchanged), else the keys that change a member's numbers or outputs: not ``size``
    (validation only: member 0 of a 4- and of a 6-member ensemble is one run), ``noise`` only for
    magnitude_random, and no mask keys for a dense member (it prunes nothing)."""
    if not ensemble or ensemble.get("member") is None:
        return {}
    # size: validation only; corruptions and severities: evaluations of the finished member, added to a
    # stored one without retraining it (members.py), so asking for one more never recomputes a member
    kept = {k: v for k, v in ensemble.items() if k not in ("size", "corruptions", "severities")}
    if kept.get("masks") != "magnitude_random" or method == "dense":
        kept.pop("noise", None)
    if method == "dense":
        kept.pop("masks", None)
    return {"ensemble": kept}
