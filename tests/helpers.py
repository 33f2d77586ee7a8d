"""What several test files share: the real configs (conf/) composed and shrunk as a user's overrides would
shrink them, a killed and resumed run, the 12-weight model of the hand-computed tests, and small models
trained step by step. A module of its own (not conftest, which pytest owns): tests import it by name, as
``from helpers import ...`` (tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import nn

from ssa_experiments.config.paths import conf_dir
from ssa_experiments.config.schema import OptimizerConfig
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.training.callbacks import Callback, RunContext
from ssa_experiments.training.optim import make_optimizer

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = str(conf_dir())  # the configs the package itself reads (config/paths.py)
TRAIN = ["-m", "ssa_experiments.cli.train"]  # after sys.executable: the training CLI in a subprocess

# A tiny, fast configuration: synthetic data, the small CNN, a few epochs.
FAST = [
    "data=synthetic",
    "model=small_cnn",
    "model.width=8",
    "parent.epochs=2",
    "train.finetune_epochs=3",
    "train.batch_size=64",
    "device=cpu",
]
# The gradual methods, spelled out here rather than read from config.methods: a method dropped from that
# table must fail the tests that run every one of these.
GRADUAL = ("iterative", "random_annealing", "temperature_annealing")


class KillInEpoch(Callback):
    """Dies like a kill (``KeyboardInterrupt``: no summary written) as fine-tuning epoch ``n`` (1-based)
    starts; the dense parent's epochs do not count."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_epoch_start(self, epoch: int, ctx: RunContext) -> None:
        if epoch + 1 == self.n:
            raise KeyboardInterrupt


def killed_run(cfg: DictConfig, n: int) -> None:
    """Run ``cfg`` and kill it in fine-tuning epoch ``n``: the epochs before it are in metrics.jsonl, and in
    checkpoint.pt as far as ``train.checkpoint_every`` saved them."""
    from ssa_experiments.training.run import run

    with pytest.raises(KeyboardInterrupt):
        run(cfg, callbacks=[KillInEpoch(n)])


def assert_resumes_identically(
    make_cfg: Callable[..., DictConfig],
    tmp_path: Path,
    overrides: tuple[str, ...],
    reference: dict,
    kill_epoch: int,
) -> dict:
    """Kill a run of ``overrides`` (in tmp_path/"killed") in fine-tuning epoch ``kill_epoch``, resume it:
    every metrics row but the epoch time, the test accuracy and the saved model are those of ``reference``,
    the summary of the uninterrupted run in tmp_path/"reference". Returns the resumed run's summary."""
    from ssa_experiments.store.files import read_metrics
    from ssa_experiments.training.run import run

    killed_run(make_cfg(*overrides, run_dir="killed"), kill_epoch)
    assert len(read_metrics(tmp_path / "killed")) == kill_epoch - 1  # the epochs before the kill
    resumed = run(make_cfg(*overrides, run_dir="killed"))

    def rows(run_dir: str) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in read_metrics(tmp_path / run_dir)]

    assert rows("killed") == rows("reference")  # every epoch's losses, accuracies and sparsities
    assert resumed["test_acc"] == reference["test_acc"]
    a, b = torch.load(tmp_path / "killed" / "model.pt"), torch.load(tmp_path / "reference" / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # weights and masks
    return resumed


# -- the 12-weight model of the hand-computed tests ----------------------------------------------------------

# |w| all distinct, so at sparsity 0.5 (6 of 12 weights, one global threshold, both layers pruned) the
# magnitude target removes 0.1, 0.15, 0.2, 0.25, 0.3, 0.35: the first three of layer 0, row 0 of layer 2.
TINY_W0 = [[0.1, -0.2], [0.3, -0.4], [0.5, -0.6]]
TINY_W2 = [[0.15, -0.25, 0.35], [-0.45, 0.55, -0.65]]
TINY_TARGET = {
    "0": torch.tensor([[False, False], [False, True], [True, True]]),
    "2": torch.tensor([[False, False, False], [True, True, True]]),
}


def tiny(b0: list[float] | None = None) -> nn.Sequential:
    """2 -> 3 -> 2 with the weights TINY_W0, TINY_W2; the biases b0 and 0 where b0 is given, else as
    initialised."""
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(TINY_W0))
        net[2].weight.copy_(torch.tensor(TINY_W2))
        if b0 is not None:
            net[0].bias.copy_(torch.tensor(b0))
            net[2].bias.zero_()
    return net


# -- step-level training of a small model, for the methods' own tests ---------------------------------------


def small() -> nn.Sequential:
    """An 8 -> 16 -> 4 MLP, the same weights at every call."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def fixed_batches(steps: int, epochs: int, seed: int = 2) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """batches[epoch][step]: 16 random inputs for ``small`` and their labels, drawn in order from ``seed``."""
    data = torch.Generator().manual_seed(seed)
    return [
        [
            (torch.randn(16, 8, generator=data), torch.randint(0, 4, (16,), generator=data))
            for _ in range(steps)
        ]
        for _ in range(epochs)
    ]


def start_with_optimizer(m: PruningMethod, net: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Start ``m`` on ``net`` and bind it the default optimizer (SGD: Nesterov, weight decay) at ``lr``."""
    m.start(net)
    opt = make_optimizer(net.parameters(), OptimizerConfig(), lr, m.self_decayed_params())
    m.bind_optimizer(opt)
    return opt


def optimizer_step(
    net: nn.Module, m: PruningMethod, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, lr: float
) -> None:
    """One training step on (x, y) after ``m.before_step``: cross-entropy, the method's hook, the update."""
    opt.zero_grad()
    nn.functional.cross_entropy(net.train()(x), y).backward()
    m.before_optimizer_step(lr)
    opt.step()


def train_epochs(
    net: nn.Module,
    m: PruningMethod,
    opt: torch.optim.Optimizer,
    batches: list[list[tuple[torch.Tensor, torch.Tensor]]],
    epochs: range,
    lr: float,
    record_target: bool = False,
) -> list[torch.Tensor]:
    """Train on ``batches[epoch]`` for each of ``epochs``; returns every step's train masks (flattened, in
    layer order), each epoch's preceded by the target after ``begin_epoch`` where ``record_target``."""
    seen = []
    for epoch in epochs:
        steps = len(batches[epoch])
        m.begin_epoch(epoch, steps)
        if record_target:
            seen.append(torch.cat([k.flatten() for k in m.keep.values()]).float())
        for step, (x, y) in enumerate(batches[epoch]):
            m.before_step(epoch, step, steps)
            seen.append(torch.cat([mk.train_mask.flatten() for mk in m.masks.values()]))
            optimizer_step(net, m, opt, x, y, lr)
    return seen


def lockstep(
    nets: dict[str, nn.Module],
    methods: dict[str, PruningMethod],
    batches: list[list[tuple[torch.Tensor, torch.Tensor]]],
    lr: float,
) -> Iterator[tuple[int, int]]:
    """Start each method on its net with the default optimizer at ``lr``, then train all of them on the same
    ``batches[epoch][step]``, one step at a time: yields (epoch, step) after each step, for the caller's
    checks."""
    opts = {k: start_with_optimizer(m, nets[k], lr) for k, m in methods.items()}
    for epoch, epoch_batches in enumerate(batches):
        steps = len(epoch_batches)
        for m in methods.values():
            m.begin_epoch(epoch, steps)
        for step, (x, y) in enumerate(epoch_batches):
            for k, m in methods.items():
                m.before_step(epoch, step, steps)
                optimizer_step(nets[k], m, opts[k], x, y, lr)
            yield epoch, step


def same_state(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models' state dicts hold the same tensors, exactly, in the same order."""
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


# -- subprocess sweeps: the CLI as a user runs it ------------------------------------------------------------

# Four tiny runs (two methods x two seeds): one dense parent per seed, the rest is process start-up.
TINY_SWEEP = [
    "data=synthetic", "model.width=8", "parent.epochs=2", "train.finetune_epochs=2", "train.batch_size=64",
    "device=cpu", "method=one_shot,temperature_annealing", "seed=0,1", "method.anneal_epochs=1",
]  # fmt: skip


def compose_hydra(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def without_keys(base: list[str], args: list[str]) -> list[str]:
    """``base`` less the overrides of keys that ``args`` sets: the CLI refuses a key given twice."""
    from ssa_experiments.config.overrides import override_key

    given = {override_key(a) for a in args}
    return [b for b in base if override_key(b) not in given]


def isolated(root: Path) -> list[str]:
    """Overrides that keep a sweep's every output under ``root`` (sweep dir, parent cache, run store), so that
    two sweeps compared with each other each compute their runs instead of finding the other's."""
    cfg = compose_hydra()
    out = [f"hydra.sweep.dir={root / 'sweep'}", f"parent.cache_dir={root / 'parents'}"]
    if "store" in cfg:
        out.append(f"store.root={root / 'store'}")
    if "progress" in cfg.logger:
        out.append("logger.progress=none")
    return out


def sweep(*overrides: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m ssa_experiments.cli.train -m ...`` from the repo root, bounded by ``timeout`` seconds."""
    return subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.train", "-m", *overrides],
        cwd=REPO,
        env={**os.environ, "WANDB_MODE": "offline", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def accuracies(sweep_dir: Path) -> dict[tuple[str, int], float]:
    """test_acc per (method, seed) of the completed runs under ``sweep_dir``, read as the analysis does."""
    from ssa_experiments.analysis.aggregate import collect

    df = collect(sweep_dir)
    done = df[df["status"] == "completed"]
    return {(r.method, int(r.seed)): float(r.test_acc) for r in done.itertuples()}


# -- the user's own code (docs/extending.md): a module outside the repository, on sys.path ----------------

USER_MODULE = "byo_user"
USER_CODE = '''
"""A researcher's own model, data set and method, in a file outside the repository."""
import math

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ssa_experiments.pruning.methods.iterative import Iterative
from ssa_experiments.pruning.methods.oneshot import OneShot

NOT_CALLABLE = 3


class Net(nn.Module):
    """conv 3 -> width (3x3) + linear head: 27 * width prunable weights (the head is kept dense)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def mlp(input_shape: tuple, num_classes: int, hidden: int = 20) -> nn.Module:
    """A function, not a class: flatten, one hidden layer (prod(input_shape) * hidden prunable weights)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


def needs_depth(depth: int, num_classes: int) -> nn.Module:
    return nn.Linear(depth, num_classes)


class NoWeights(nn.Module):
    """Logits from a bias only: nothing a mask can prune."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :1] * 0 + self.bias


def wrong_shape(in_channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes + 1))


def make_data(n: int = 240, classes: int = 3, size: int = 8):
    """(train, test): uint8 prototypes + noise, fixed seed."""
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(classes, 3, size, size, generator=g) * 255

    def draw(k: int):
        y = torch.arange(k) % classes
        x = protos[y] + torch.randn(k, 3, size, size, generator=g) * 40
        return x.round().clamp(0, 255).to(torch.uint8), y

    return draw(n), draw(n // 2)


def make_datasets(n: int = 240):
    """The same data as torch Datasets, with a validation split of its own."""
    (x, y), (xt, yt) = make_data(n)
    return {"train": TensorDataset(x[24:], y[24:]), "test": TensorDataset(xt, yt),
            "val": TensorDataset(x[:24], y[:24])}


def bad_data():
    return 5


class LayerNormalised(OneShot):
    """One-shot pruning with a score of my own: |w| / max |w| of its layer."""

    reads = ()

    def scores(self):
        return {n: s / s.max() for n, s in super().scores().items()}


class PowerMagnitude(Iterative):
    """Iterative pruning by |w| ** method.power, reaching the target at method.anneal_epochs."""

    reads = ("anneal_epochs", "schedule")
    gradual = True

    def scores(self):
        return {n: s ** float(self.cfg.power) for n, s in super().scores().items()}


class NotAMethod:
    pass


class ReadsATypo(OneShot):
    reads = ("anneal_epoch",)
'''
# FAST without its model and data (a custom config names its own), gradual methods reach the target at 1
FAST_CUSTOM = [*(o for o in FAST if not o.startswith(("model", "data"))), "method.anneal_epochs=1"]


def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Write ``USER_CODE`` as ``byo_user.py`` in a directory outside the repository and put it on sys.path
    (and PYTHONPATH, for subprocesses); returns the directory."""
    import importlib

    folder = tmp_path / "user_code"
    folder.mkdir(exist_ok=True)
    (folder / f"{USER_MODULE}.py").write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, USER_MODULE, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(folder)]))
    importlib.invalidate_caches()
    return str(folder)


def custom_cfg(tmp_path: Path, *overrides: str, run_dir: str = "run") -> DictConfig:
    """A tiny config (``FAST`` but the model and data) writing under tmp_path, plus ``overrides``."""
    return compose_config(
        [
            *FAST_CUSTOM,
            f"output_dir={tmp_path / run_dir}",
            f"parent.cache_dir={tmp_path / 'cache'}",
            *overrides,
        ]
    )
