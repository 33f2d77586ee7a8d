"""The config schema and every bad-input rule, in one place.

The dataclasses are registered in Hydra's ConfigStore and ``conf/config.yaml`` extends them, so a key that is
not in the schema (a typo) or a value of the wrong type fails at composition, before any compute.
``validate`` adds the rules a type cannot express (ranges, cross-field rules, paths that must exist).
Key names are frozen: renaming one breaks users' sweeps; a rename (``renamed.py``) is refused in one line
naming the new key, and identities keep the old spelling.
"""

from __future__ import annotations

import hashlib
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
    # MIMO (Havasi et al. 2021; models.py MIMO): M > 1 wraps the model with M inputs concatenated on channels
    # and M output heads, trained on M independent examples per input, tested on the input replicated M
    # times with the heads' probabilities averaged; 1: the plain model
    mimo_heads: int = 1
    mimo_batch_repetitions: int = 1  # MIMO: each training batch repeated this many times before shuffling


@dataclass
class CustomModelConfig:
    """``model=custom``: a model of the user's own (docs/extending.md). Every key besides ``arch`` and
    ``_target_`` is a keyword argument of ``_target_``; the data set's shape is passed as the keywords
    ``MODEL_DATA_KEYWORDS`` the callable names. Not registered as the option's schema (a typed node takes no
    new key from a config file): conf/model/custom.yaml is untyped and ``validate`` checks these two keys."""

    arch: str = "custom"
    _target_: str = MISSING  # "package.module.Callable": a class or function returning an nn.Module


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
class LoadedDataConfig:
    """What every data set read from the user's files or code shares: the loader, augmentation, validation
    split and normalisation keys of ``DataConfig`` (same meanings), without the built-in sets' own keys."""

    name: str = MISSING
    pipeline: str = "device"
    crop_padding: int = 0
    flip: bool = False
    num_workers: int = 2
    val_fraction: float = 0.1  # ignored when the data brings its own validation split
    split_seed: int = 0
    # per-channel normalisation in input units (uint8 images: [0, 1]); null: computed from the training split
    mean: list[float] | None = None
    std: list[float] | None = None


@dataclass
class CustomDataConfig(LoadedDataConfig):
    """``data=custom``: ``_target_`` called with every key the schema does not define (``+data.<key>=``)."""

    name: str = "custom"
    _target_: str = MISSING  # "package.module.callable" returning the splits (data/custom.py)


@dataclass
class ImageFolderConfig(LoadedDataConfig):
    """``data=image_folder``: torchvision's ImageFolder layout, ``root/{train,test[,val]}/<class>/<file>``."""

    name: str = "image_folder"
    root: str = MISSING
    image_size: int | None = None  # null: the images' own size (all must share it); else resized to this
    channels: int = 3  # 3: RGB, 1: greyscale


@dataclass
class NpzConfig(LoadedDataConfig):
    """``data=npz``: one ``.npz`` file with x_train, y_train, x_test, y_test [, x_val, y_val]."""

    name: str = "npz"
    path: str = MISSING


@dataclass
class MethodConfig:
    # dense | one_shot | iterative | random_annealing | temperature_annealing; controls (README):
    # stochastic_constant | dropconnect_target | soft_annealing; dynamic sparse training: set | rigl
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
    # set, rigl (dynamic sparse training, pruning/methods/dst.py): every update_every training steps (ΔT) each
    # layer drops drop_fraction (α, at step 0) of its active weights by magnitude and grows as many, α decayed
    # by drop_schedule (cosine | constant) to 0 at end_fraction of the fine-tuning steps (no update after)
    update_every: int = 100
    drop_fraction: float = 0.3
    drop_schedule: str = "cosine"
    end_fraction: float = 0.75


@dataclass
class CustomMethodConfig(MethodConfig):
    """``method=custom``: a ``PruningMethod`` subclass of the user's own; it reads the keys above it declares
    (its ``reads``) and any it adds with ``+method.<key>=...``."""

    name: str = "custom"
    _target_: str = MISSING  # "package.module.Class", a subclass of pruning.methods.base.PruningMethod


@dataclass
class PruningConfig:
    # scores that choose the target: magnitude | random | snip | grasp | synflow (docs/methods-baselines.md)
    criterion: str = "magnitude"
    scope: str = "global"  # global threshold | layerwise (uniform) | erk (Erdős–Rényi-Kernel densities)
    score_batches: int = 1  # snip, grasp: training batches the scores are summed over (the first of epoch 0)
    synflow_rounds: int = 100  # synflow: pruning rounds, density (1 - sparsity)^(k / rounds) after round k
    # sanity controls (Frankle et al. 2021): none | shuffle_layerwise (each layer's kept count at random
    # positions) | reinit (the mask kept, the prunable weights drawn again from the model's initialisation)
    control: str = "none"
    pattern: str = "unstructured"  # unstructured | "n:m": n kept of every m consecutive input weights
    keep_first_layer: bool = False  # paper/authors' code: the first conv IS pruned
    keep_last_layer: bool = True  # paper/authors' code: the classifier is NOT pruned
    allow_layer_collapse: bool = False  # a target that empties a whole layer fails the run unless true


@dataclass
class LrConfig:
    """A learning-rate schedule (``lr``, ``parent.lr``; ``method.schedule`` is the annealing one): ``lr`` is
    the peak (one_cycle) or base LR; the rest shape it."""

    # one_cycle | cosine | constant | step | parent_swa_style; retraining baselines read off the parent's
    # schedule (training/lr.py retraining_lr; their other fields are not read): finetune | lr_rewind
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
    # steps between resumable checkpoints inside an epoch (0: none), for epochs longer than a scheduler's
    # warning before its time limit (a stop always saves one at the next step boundary)
    checkpoint_every_steps: int = 0
    max_steps_per_epoch: int = 0  # >0: cap steps per epoch (smoke tests); 0: full epochs
    save_model: bool = True  # a completed run writes model.pt: the pruned network as a plain state_dict
    # torch's CPU threads in every run, whatever the launcher gives its workers: CPU results depend on the
    # thread count (the order of float sums), so it is fixed here and part of a run's (and parent's) identity.
    # 1: a sweep parallelises over processes (hydra/launcher=joblib, SLURM), and every launcher gives the
    # same numbers; raise it for one large run on a CPU. It does not change what a GPU computes.
    cpu_threads: int = 1
    # portable: CPU kernels capped at AVX2 (numerics.py), so a CPU run gives the same bits on x86-64
    # machines with AVX2 of one CPU vendor, with or without AVX-512; native: torch's own choice for this CPU
    # (faster, its own numbers). Part of a CPU run's (and parent's) identity; a GPU's numbers do not depend
    # on it.
    cpu_numerics: str = "portable"
    # torch.compile the model (training/compile.py): the parent and the fine-tuning. Its numbers differ from
    # eager in the last bits (fused float arithmetic), so true is part of the compute identity. Typed Any so
    # that validate refuses a non-bool in one line (as bool, OmegaConf reads 2 as true and "maybe" as a
    # multi-line composition error).
    compile: Any = False
    # how many jobs of a sweep share one GPU (device=auto, runtime/devices.py): 1, one job per GPU; k > 1
    # runs k small runs on each GPU at once. Where a run executes: not part of its identity.
    runs_per_device: int = 1


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
    lr: LrConfig = field(default_factory=lambda: LrConfig(name="parent_swa_style", lr=0.1))
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
    # per-epoch progress: bar (tqdm on a terminal, counting steps, with an ETA) | lines (one log line per
    # epoch, with its time and an ETA) | none | auto: a bar on a terminal, lines otherwise (SLURM, CI, files)
    # and inside multirun workers (each line names its run); the dense parent's training is shown the same
    progress: str = "auto"
    project: str = "ssa-experiments"  # wandb
    entity: str | None = None  # wandb: your user or team; null: W&B's default
    group: str | None = None  # wandb; null: the sweep's name (docs/wandb.md)
    job_type: str | None = None  # wandb; null: the stage (finetune, ensemble; the parent's run: parent)
    tags: list[str] = field(default_factory=list)  # wandb; method, sparsity, model and data are added
    # wandb: online | offline | disabled; null: W&B decides (WANDB_MODE, else online); online with the W&B
    # host unreachable: one short probe per sweep, then offline
    mode: str | None = None
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
    # each option of the model and data groups brings its own schema (conf/model/*.yaml, conf/data/*.yaml:
    # ``defaults: [/schema/...]``), so a custom model's node holds only what the user wrote
    model: Any = MISSING
    data: Any = MISSING
    method: MethodConfig = MISSING
    lr: LrConfig = MISSING
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
    output_dir: str = "${ssa_output_dir:}"  # Hydra's job directory (job_output_dir); not part of any identity
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

    return f"{name[: max_len - 17]}_{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def job_output_dir() -> str:
    """Hydra's directory for this job (``${hydra:runtime.output_dir}``). Hydra sets it as the job starts, so
    where a config is shown without a job (``--cfg job --resolve``) it is still unset: the directory a run
    would get (``hydra.run.dir``) is shown instead of a failed interpolation."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return hc.run.dir if OmegaConf.is_missing(hc.runtime, "output_dir") else hc.runtime.output_dir


def last_anneal_epoch(finetune_epochs: int) -> int:
    """The largest ``method.anneal_epochs`` a run of ``finetune_epochs`` accepts (validate.py: the target must
    train for at least one epoch): the bound of the ``hparams_search=`` presets' search space, whose
    ``range(a, b)`` the Optuna sweeper reads inclusively (unlike Hydra's basic sweeper)."""
    return max(1, int(finetune_epochs) - 1)


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    for group, name, node in SCHEMAS:
        store.store(group=f"schema/{group}", name=name, node=node)
    OmegaConf.register_new_resolver("ssa_dirname", short_dirname, replace=True)
    OmegaConf.register_new_resolver("ssa_output_dir", job_output_dir, replace=True)
    OmegaConf.register_new_resolver("ssa_last_anneal_epoch", last_anneal_epoch, replace=True)


# the schemas the group options name in their defaults (``- /schema/model/builtin@_here_``)
SCHEMAS = (
    ("model", "builtin", ModelConfig),
    ("data", "builtin", DataConfig),
    ("data", "custom", CustomDataConfig),
    ("data", "image_folder", ImageFolderConfig),
    ("data", "npz", NpzConfig),
    ("method", "custom", CustomMethodConfig),
)
PARENT_DERIVED_SCHEDULES = ("finetune", "lr_rewind")  # retraining baselines: the parent's LR, replayed
LR_SCHEDULES = ("one_cycle", "cosine", "constant", "step", "parent_swa_style", *PARENT_DERIVED_SCHEDULES)
DATA_SETS = ("digits", "synthetic", "mnist1d", "cifar10", "cifar100", "tiny_imagenet")  # data/datasets.py
LOADED_DATA_SETS = ("custom", "image_folder", "npz")  # the user's code or files: data/custom.py, files.py
# what main() may return to a sweeper: validation metrics of the summary only
OBJECTIVES = ("val_acc", "best_val_acc", "val_loss")
SIGNAL_DATA_SETS = ("mnist1d",)  # (N, C, L) signals: only the 1-D models (SIGNAL_ARCHS) take them


def resolve_root(cfg: DataConfig) -> Path:
    """Where a disk data set lives: ``data.root`` if set, else ``$SSA_DATA_DIR``, else ``./data``."""
    root = cfg.root or os.environ.get("SSA_DATA_DIR") or "data"
    return Path(root).expanduser()


ARCHS = ("small_cnn", "mlp", "resnet", "wide_resnet", "vit", "timm", "cnn1d")
# the data set's shape, passed to a custom model's callable under each of these names it takes (models.py)
MODEL_DATA_KEYWORDS = ("in_channels", "num_classes", "image_size", "input_shape")
SIGNAL_ARCHS = ("cnn1d",)


CRITERIA = ("magnitude", "random", "snip", "grasp", "synflow")
DATA_CRITERIA = ("snip", "grasp")  # read pruning.score_batches training batches
SCOPES = ("global", "layerwise", "erk")
CONTROLS = ("none", "shuffle_layerwise", "reinit")


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """(n, m) of an "n:m" pattern, None for "unstructured"; ValueError for anything else (validate names the
    field)."""
    if pattern == "unstructured":
        return None
    n, sep, m = str(pattern).partition(":")
    if not (sep and n.isdigit() and m.isdigit() and 0 < int(n) < int(m)):
        raise ValueError(f"{pattern!r} is not unstructured or n:m with 0 < n < m (e.g. 2:4)")
    return int(n), int(m)


ENSEMBLE_MASKS = ("anti_random", "random", "magnitude_random")
# the choices of ensemble.corruptions and ensemble.severities (their parameters: data/corruptions.py)
CORRUPTIONS = ("gaussian_noise", "shot_noise", "gaussian_blur", "contrast")
SEVERITIES = (1, 2, 3, 4, 5)


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data, for summary.json."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
