"""The epoch loop (training/loop.py): training steps, evaluation, and the BatchNorm statistics of the
network that is evaluated (the target, not the sampled masks it was trained under)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import GRADUAL
from torch import nn

from ssa_experiments.data.datasets import load_data
from ssa_experiments.data.loaders import make_batches
from ssa_experiments.models import build_model
from ssa_experiments.pruning.masking import dense_weight
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.runtime.precision import Precision
from ssa_experiments.store.files import read_metrics, read_summary
from ssa_experiments.training import loop as loop_module
from ssa_experiments.training.loop import evaluate, recalibrated
from ssa_experiments.training.run import run


def _annealing_setup(make_cfg):
    cfg = make_cfg("method=temperature_annealing", "method.anneal_epochs=2", "sparsity=0.9")
    data = load_data(cfg.data)
    batches = make_batches(data, "device", 32, torch.device("cpu"), 0)
    torch.manual_seed(0)
    model = build_model(cfg.model, data.in_channels, data.image_shape[-1], data.num_classes)
    method = make_method(cfg.method, cfg.pruning, cfg.sparsity, cfg.seed)
    method.start(model)
    method.begin_epoch(0, 4)
    model.train()
    with torch.no_grad():
        for x, _ in batches.train.epoch(0):  # BN running stats accumulate under sampled, denser masks
            method.before_step(0, 0, 4)
            model(x)
    return model, method, batches


def test_recalibrated_statistics_are_the_target_networks_own(make_cfg) -> None:
    model, method, batches = _annealing_setup(make_cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    net = recalibrated(model, batches.train, 3, Precision(torch.device("cpu")))
    # The training state is untouched: weights, masks, BN buffers, the global RNG.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state()) and model.training
    # Independent reference: the target network (eval masks) in train mode; BN 0 sees conv 0 output.
    target_conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    target_conv.weight.data = dense_weight(model[0]) * method.keep["0"]
    inputs = [x for i, (x, _) in enumerate(batches.train.epoch(0)) if i < 3]
    with torch.no_grad():
        means = torch.stack([target_conv(x).mean(dim=(0, 2, 3)) for x in inputs])
    assert torch.allclose(net[1].running_mean, means.mean(0), atol=1e-6)
    assert not torch.allclose(model[1].running_mean, means.mean(0), atol=1e-3)  # the stale statistics


def test_metrics_say_which_statistics_were_used(make_cfg, tmp_path) -> None:
    run(make_cfg("method=temperature_annealing", "method.anneal_epochs=1", "sparsity=0.8", run_dir="a"))
    run(make_cfg("method=dense", run_dir="b"))
    run(make_cfg("method=one_shot", "eval.bn_recalibration_batches=0", run_dir="c"))
    assert {r["bn_recalibration_batches"] for r in read_metrics(tmp_path / "a")} == {20}
    assert {r["bn_recalibration_batches"] for r in read_metrics(tmp_path / "b")} == {0}  # nothing to mix
    assert read_summary(tmp_path / "c")["bn_recalibration_batches"] == 0


def test_equal_n_equal_epochs_at_target_steps_and_lr_trace(make_cfg, tmp_path, monkeypatch) -> None:
    """Real runs of every method: the same optimizer steps, the same LR at every step, and at the same n the
    same number of epochs on the final mask (one-shot: all of them)."""
    traces: dict[str, list[float]] = {}
    real_set_lr = loop_module.set_lr
    summaries = {}
    run(make_cfg("method=dense", run_dir="parent"))  # trains and caches the parent: its steps are not traced
    for method in ("dense", "one_shot", *GRADUAL):
        trace: list[float] = []
        monkeypatch.setattr(
            loop_module, "set_lr", lambda opt, lr, t=trace: (t.append(lr), real_set_lr(opt, lr))
        )
        extra = ["method.anneal_epochs=2"] if method in GRADUAL else []
        summaries[method] = run(
            make_cfg(f"method={method}", "train.finetune_epochs=4", *extra, run_dir=method)
        )
        traces[method] = trace
    assert len({len(t) for t in traces.values()}) == 1 and len({tuple(t) for t in traces.values()}) == 1
    assert {s["steps"] for s in summaries.values()} == {len(traces["dense"])}
    assert len({s["lr_trace_sha256"] for s in summaries.values()}) == 1
    assert {summaries[m]["epochs_at_target"] for m in GRADUAL} == {2}
    assert summaries["one_shot"]["epochs_at_target"] == 4
    # The target is in force from the start of epoch n (0-based) for every gradual method.
    for m in GRADUAL:
        assert [r["at_target"] for r in read_metrics(tmp_path / m)] == [False, False, True, True]


class ListBatches:
    """Fixed batches, the same every epoch: what ``evaluate`` reads of a loader."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def epoch(self, epoch: int):
        return iter(self.batches)


def test_evaluate_is_per_sample_accuracy_and_cross_entropy_in_eval_mode() -> None:
    # logits = x (identity weights); dropout would scramble them unless evaluate switches to eval mode
    model = nn.Sequential(nn.Dropout(0.9), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
    batches = ListBatches([
        (torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])),  # right, wrong
        (torch.tensor([[0.0, 2.0]]), torch.tensor([1])),  # right
    ])  # fmt: skip
    out = evaluate(model.train(), batches, Precision(torch.device("cpu")), split="val")
    # cross-entropy of the true class: log(1 + e^-1), log(1 + e), log(1 + e^-2), averaged over 3 samples
    # (not over the 2 batches, which would give 0.4701)
    loss = (math.log1p(math.exp(-1)) + math.log1p(math.e) + math.log1p(math.exp(-2))) / 3
    assert out == {"val_loss": pytest.approx(loss, rel=1e-6), "val_acc": pytest.approx(200 / 3)}
    assert loss == pytest.approx(0.5844838, abs=1e-7)
    assert not model.training
