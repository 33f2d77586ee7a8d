"""The config schema and every bad-input rule, in one place.

The dataclasses are registered in Hydra's ConfigStore and ``conf/config.yaml`` extends them, so a key that is
not in the schema (a typo) or a value of the wrong type fails at composition, before any compute.
``validate`` adds the rules a type cannot express (ranges, cross-field rules, paths that must exist).
Key names are frozen: renaming one breaks users' sweeps; deprecate instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


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
    name: str = MISSING  # digits | synthetic | cifar10 | cifar100 | tiny_imagenet
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


@dataclass
class MethodConfig:
    # dense | one_shot | iterative | random_annealing | temperature_annealing; controls (README):
    # stochastic_constant | dropconnect_target | soft_annealing
    name: str = MISSING
    anneal_epochs: int = 0  # n: epochs over which iterative pruning / annealing reaches the target
    schedule: str = "linear"  # annealing: linear|cosine|exponential; iterative: linear|polynomial
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

    name: str = MISSING  # one_cycle | cosine | constant | step | parent_swa_style
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


@dataclass
class EvalConfig:
    # Evaluate a pruned network with BatchNorm statistics recalibrated for its own (target) mask: this many
    # training batches through a copy in train mode, no gradient, the training state untouched. 0: use the
    # running statistics accumulated in training (which mix networks: sampled masks, denser earlier masks).
    bn_recalibration_batches: int = 20


@dataclass
class ParentConfig:
    epochs: int = 20
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(name="parent_swa_style", lr=0.1))
    path: str | None = None  # bring your own trained checkpoint (a state_dict file)
    cache_dir: str = "${oc.env:SSA_CACHE_DIR,.cache/parents}"  # relative to the launch directory
    cache: bool = True


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
    sparsity: float = 0.9  # fraction of prunable weights removed in the target subnetwork
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    output_dir: str = "${hydra:runtime.output_dir}"
    store: StoreConfig = field(default_factory=StoreConfig)
    force: bool = False  # recompute a run the store already holds


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
ANNEAL_SCHEDULES = ("linear", "cosine", "exponential")
ITERATIVE_SCHEDULES = ("linear", "polynomial")
LR_SCHEDULES = ("one_cycle", "cosine", "constant", "step", "parent_swa_style")
DATA_SETS = ("digits", "synthetic", "cifar10", "cifar100", "tiny_imagenet")  # readers: data/datasets.py


def resolve_root(cfg: DataConfig) -> Path:
    """Where a disk data set lives: ``data.root`` if set, else ``$SSA_DATA_DIR``, else ``./data``."""
    root = cfg.root or os.environ.get("SSA_DATA_DIR") or "data"
    return Path(root).expanduser()


ARCHS = ("small_cnn", "mlp", "resnet", "wide_resnet", "vit", "timm")


def _choice(value: str, allowed: tuple[str, ...] | list[str], name: str) -> None:
    if value not in allowed:
        raise ConfigError(name, f"unknown value {value!r}; choose one of {', '.join(allowed)}")


def _positive(value: float, name: str, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(name, f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def validate_schedule(s: Any, prefix: str) -> None:
    _choice(s.name, LR_SCHEDULES, f"{prefix}.name")
    _positive(s.lr, f"{prefix}.lr")
    if not 0 < s.pct_start < 1:
        raise ConfigError(f"{prefix}.pct_start", f"must be in (0, 1), got {s.pct_start}")
    if not 0 <= s.decay_start <= s.decay_end <= 1:
        raise ConfigError(f"{prefix}.decay_start", "need 0 <= decay_start <= decay_end <= 1")


def validate(cfg: DictConfig | Config) -> None:
    """Raise ConfigError for the first bad value; called before any data is read or model built."""
    if not 0 <= cfg.sparsity < 1:
        raise ConfigError("sparsity", f"must be in [0, 1), got {cfg.sparsity}")
    m = cfg.method
    _choice(m.name, METHODS, "method.name")
    _choice(cfg.model.arch, ARCHS, "model.arch")
    _choice(cfg.data.name, DATA_SETS, "data.name")
    _choice(cfg.data.pipeline, ("device", "torch"), "data.pipeline")
    _choice(cfg.pruning.criterion, ("magnitude", "random"), "pruning.criterion")
    _choice(cfg.pruning.scope, ("global", "layerwise"), "pruning.scope")
    _choice(cfg.optimizer.name, ("sgd", "adamw"), "optimizer.name")
    _positive(cfg.optimizer.weight_decay, "optimizer.weight_decay", allow_zero=True)
    validate_schedule(cfg.schedule, "schedule")
    validate_schedule(cfg.parent.schedule, "parent.schedule")
    _positive(cfg.train.finetune_epochs, "train.finetune_epochs")
    _positive(cfg.train.batch_size, "train.batch_size")
    _positive(cfg.train.cpu_threads, "train.cpu_threads")
    _positive(cfg.parent.epochs, "parent.epochs", allow_zero=cfg.parent.path is not None)
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
    _choice(cfg.logger.name, ("local", "wandb"), "logger.name")
    _choice(cfg.logger.progress, ("auto", "bar", "lines", "none"), "logger.progress")
    if cfg.logger.mode is not None:
        _choice(cfg.logger.mode, ("online", "offline", "disabled"), "logger.mode")
    _positive(cfg.logger.init_timeout, "logger.init_timeout")
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


# Where a run executes, reads from, logs or is stored, not what it computes (it may resume on another device).
NOT_IDENTITY = (
    "output_dir", "device", "parent.cache_dir", "data.root", "data.num_workers", "logger", "store", "force",
)  # fmt: skip
# The method.* keys each method reads (besides name); the others cannot change its run.
ANNEALING_KEYS = ("anneal_epochs", "schedule", "granularity", "resample", "decay_rate", "decay_sampled_out")
METHOD_KEYS = {
    "dense": (),
    "one_shot": (),
    "iterative": ("anneal_epochs", "schedule"),
    "temperature_annealing": (*ANNEALING_KEYS, "initial_temperature"),
    "random_annealing": (*ANNEALING_KEYS, "max_initial_probability"),
    # P is constant until epoch n: no schedule to follow, nothing to interpolate within an epoch
    "stochastic_constant": ("anneal_epochs", "resample", "decay_sampled_out", "initial_temperature"),
    "dropconnect_target": (*ANNEALING_KEYS, "initial_drop_rate"),
    # nothing is sampled: P(t) itself is the train mask
    "soft_annealing": (*(k for k in ANNEALING_KEYS if k != "resample"), "initial_temperature"),
}


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus ``NOT_IDENTITY`` and the ``method.*`` keys the method does not read: two runs
    with equal identities compute the same thing (the dense run at any requested sparsity is one run)."""
    ident = to_container(cfg)
    for dotted in NOT_IDENTITY:
        *parents, leaf = dotted.split(".")
        node = ident
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    method = ident.get("method", {})
    reads = METHOD_KEYS.get(method.get("name"), tuple(method))
    ident["method"] = {k: v for k, v in method.items() if k == "name" or k in reads}
    if method.get("name") == "dense":
        ident["sparsity"] = 0.0
        ident.pop("pruning", None)
    return ident
