"""Prune in one's own PyTorch training loop with ``ssa_experiments.Pruner`` (docs/library.md).

    python examples/own_training_loop.py                 # digits, an MLP, temperature annealing to 90 %
    python examples/own_training_loop.py --method one_shot --sparsity 0.95 --epochs 4 --anneal-epochs 0

The loop, the model (a plain ``nn.Sequential``), the optimizer, the learning-rate schedule, the dense
parent's training and the evaluation are written here in plain PyTorch; the pruning is three lines:
``Pruner(...)`` on the trained dense network, ``pruner.step()`` before each forward pass, and
``pruner.export()`` for the sparse ``state_dict``. The data are ssa_experiments' digits (scikit-learn's 8x8
digits, upsampled to 16x16, its validation split held out) in its batches (a shuffled order per epoch,
random 1-pixel crops): any iterable of (inputs, labels) batches does.

The same setting through the Hydra runner (``runner_overrides`` prints its command line) computes the same
numbers bit for bit, and ``tests/examples/test_own_loop.py`` checks it: the runner trains the parent from
the same seed with the same optimizer and LR schedule on the same batches, then fine-tunes it through the
same ``Pruner`` (the runner drives every method through it). The check is that the runner adds nothing a
loop of one's own would not compute: the parent here is trained by this file's loop, not loaded from the
runner's cache; the model is this file's, not the runner's builder; the LR is this file's function. What
the two share is the data batches, the Pruner, and torch. Both run on the CPU with one thread and
ssa_experiments' portable numerics (set below before torch starts, as the runner's CLI does), the
conditions under which the runner's CPU numbers are reproducible at all.

The MLP has no BatchNorm. For a network with BatchNorm, evaluate ``pruner.recalibrated(train_inputs)``: a
copy with statistics recalibrated for the target mask, as the runner evaluates (during annealing the running
statistics are accumulated under sampled, denser masks).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from ssa_experiments.repro import numerics

numerics.enter("portable")  # before torch starts: the runner's CPU numbers, on any x86-64 machine with AVX2

import torch  # noqa: E402
from torch import nn  # noqa: E402

from ssa_experiments import Pruner  # noqa: E402
from ssa_experiments.config.schema import DataConfig  # noqa: E402
from ssa_experiments.data.datasets import load_data  # noqa: E402
from ssa_experiments.data.loaders import make_batches  # noqa: E402

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Settings:
    """One setting: the dense parent, then pruning and fine-tuning it."""

    method: str = "temperature_annealing"
    sparsity: float = 0.9
    parent_epochs: int = 20
    epochs: int = 10  # fine-tuning epochs
    anneal_epochs: int = 5  # a gradual method's target is in force from this epoch on (0: not gradual)
    options: dict[str, Any] = field(default_factory=lambda: {"initial_temperature": 0.5})
    width: int = 128  # the MLP's hidden units (two hidden layers)
    batch_size: int = 128
    parent_lr: float = 0.1  # peak of a cosine schedule over the parent's steps
    lr: float = 0.1  # peak of a cosine schedule over the fine-tuning steps
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0


@dataclass
class Result:
    test_acc: float  # %, of the pruned network after the last epoch
    parent_test_acc: float
    report: dict[str, Any]  # the Pruner's: sparsity, per-layer sparsity, ...
    state_dict: dict[str, torch.Tensor]  # the pruned network, pruned weights exactly zero


def mlp(in_features: int, width: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, num_classes),
    )


def cosine_lr(step: int, total: int, peak: float) -> float:
    return peak * (0.5 * (1 + math.cos(math.pi * step / max(total, 1))))


def sgd(model: nn.Module, s: Settings) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        model.parameters(), lr=s.lr, momentum=s.momentum, nesterov=True, weight_decay=s.weight_decay
    )


def train(
    model: nn.Module,
    epochs: Iterator[Batches],
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    peak_lr: float,
    pruner: Pruner | None = None,
) -> None:
    """The training loop: the pruner's only call is ``pruner.step()`` before each forward pass (its hook on
    the optimizer does the rest; the epochs begin by themselves every ``steps_per_epoch`` steps)."""
    step = 0
    model.train()
    for batches in epochs:
        for x, y in batches:
            if pruner is not None:
                pruner.step()
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total_steps, peak_lr)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1


@torch.no_grad()
def accuracy(model: nn.Module, batches: Batches) -> float:
    model.eval()
    correct = seen = 0
    for x, y in batches:
        correct += int((model(x).argmax(1) == y).sum())
        seen += len(y)
    model.train()
    return 100.0 * correct / seen


def main(s: Settings) -> Result:
    torch.set_num_threads(1)  # CPU sums depend on the thread count
    torch.manual_seed(s.seed)
    data = load_data(DataConfig(name="digits", image_size=16, crop_padding=1))
    batches = make_batches(data, "device", s.batch_size, torch.device("cpu"), s.seed)
    steps = len(batches.train)
    in_features = data.in_channels * data.image_shape[-1] * data.image_shape[-2]
    model = mlp(in_features, s.width, data.num_classes)

    # the dense parent
    train(
        model,
        (batches.train.epoch(e) for e in range(s.parent_epochs)),
        sgd(model, s),
        s.parent_epochs * steps,
        s.parent_lr,
    )
    parent_acc = accuracy(model, batches.test.epoch(0))

    # pruning and fine-tuning it
    torch.manual_seed(s.seed)
    gradual = {"anneal_epochs": s.anneal_epochs} if s.anneal_epochs else {}
    pruner = Pruner(
        model,
        s.method,
        s.sparsity,
        epochs=s.epochs,
        steps_per_epoch=steps,
        seed=s.seed,
        **gradual,
        **s.options,
    )
    optimizer = sgd(model, s)
    pruner.bind_optimizer(optimizer)  # or Pruner(..., optimizer=optimizer) when it is built before
    train(model, (batches.train.epoch(e) for e in range(s.epochs)), optimizer, s.epochs * steps, s.lr, pruner)
    return Result(accuracy(model, batches.test.epoch(0)), parent_acc, pruner.report(), pruner.export())


def runner_overrides(s: Settings) -> list[str]:
    """The Hydra runner's overrides for setting ``s`` (``python -m ssa_experiments.cli.train ...``)."""
    method = [f"method.anneal_epochs={s.anneal_epochs}"] if s.anneal_epochs else []
    method += [f"method.{k}={v}" for k, v in s.options.items()]
    return [
        "data=digits",
        "model=mlp",
        f"model.width={s.width}",
        "model.depth=2",
        f"method={s.method}",
        *method,
        f"sparsity={s.sparsity}",
        f"seed={s.seed}",
        f"parent.epochs={s.parent_epochs}",
        "parent.lr.name=cosine",
        f"parent.lr.lr={s.parent_lr}",
        "lr=cosine",
        f"lr.lr={s.lr}",
        f"train.finetune_epochs={s.epochs}",
        f"train.batch_size={s.batch_size}",
        f"optimizer.momentum={s.momentum}",
        f"optimizer.weight_decay={s.weight_decay}",
        "device=cpu",
    ]


def parse(argv: list[str] | None = None) -> Settings:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, value in asdict(defaults).items():
        if name != "options":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument(
        "--tau0", type=float, default=0.5, help="initial_temperature, for the methods that read it"
    )
    args = vars(parser.parse_args(argv))
    tau0 = args.pop("tau0")
    reads_tau0 = args["method"] in ("temperature_annealing", "stochastic_constant", "soft_annealing")
    return Settings(**args, options={"initial_temperature": tau0} if reads_tau0 else {})


if __name__ == "__main__":
    settings = parse()
    result = main(settings)
    print(f"dense parent: test accuracy {result.parent_test_acc:.2f}%")
    print(
        f"{settings.method} at sparsity {settings.sparsity}: test accuracy {result.test_acc:.2f}%, "
        f"sparsity {result.report['sparsity']:.4f}"
    )
    for name, value in result.report["layer_sparsity"].items():
        print(f"  layer {name}: sparsity {value:.4f}")
    zeros = sum(int((v == 0).sum()) for k, v in result.state_dict.items() if k.endswith("weight"))
    print(f"exported state_dict: {len(result.state_dict)} tensors, {zeros} weights exactly zero")
    print(
        "the same setting with the Hydra runner: python -m ssa_experiments.cli.train "
        + " ".join(runner_overrides(settings))
    )
