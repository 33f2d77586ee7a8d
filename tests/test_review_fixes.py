"""The expert review of the core (issue 11): one test (or more) per defect, each failing on the old code.

Item numbers follow the issue. The timm-layer item (6) is in test_timm_layers.py, the validation split's
data side and the loaders' RNG (5, 9) in test_data_split.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import assert_resumes_identically, compose_config, killed_run
from torch import nn

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.schema import ConfigError, MethodConfig, PruningConfig
from ssa_experiments.config.validate import validate
from ssa_experiments.data.datasets import load_data
from ssa_experiments.data.loaders import make_batches
from ssa_experiments.models import build_model
from ssa_experiments.pruning.errors import LayerCollapse
from ssa_experiments.pruning.masking import dense_weight
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.store.files import read_metrics, read_summary
from ssa_experiments.training import loop as loop_module
from ssa_experiments.training.loop import Precision, recalibrated
from ssa_experiments.training.optim import make_optimizer
from ssa_experiments.training.parent import parent_key
from ssa_experiments.training.run import run
from ssa_experiments.training.summary import best_by_validation

GRADUAL = ("iterative", "random_annealing", "temperature_annealing")


# -- 1. resume: RNG states on the CPU, device type recorded, a resume across device types refused ----------


def test_checkpoint_keeps_rng_states_on_cpu_and_records_the_device(make_cfg, tmp_path) -> None:
    overrides = ("method=temperature_annealing", "method.anneal_epochs=2", "train.finetune_epochs=3")
    killed_run(make_cfg(*overrides), 2)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["device_type"] == "cpu"
    states = [ckpt["method"]["generator"], ckpt["rng"]["torch"]]
    assert all(s.device.type == "cpu" and s.dtype == torch.uint8 for s in states)
    # What a CUDA run wrote cannot continue on the CPU (and vice versa): one clear error, no crash.
    ckpt["device_type"] = "cuda"
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ConfigError) as info:
        run(make_cfg(*overrides))
    assert info.value.field_name == "device" and "written on cuda" in str(info.value)


def test_method_state_loads_whatever_device_the_tensors_were_mapped_to() -> None:
    """The old run loaded checkpoints with map_location=device, moving the generator state off the CPU."""
    a = make_method(MethodConfig(name="temperature_annealing", anneal_epochs=2), PruningConfig(), 0.5, 0)
    a.start(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)))
    state = a.state_dict()
    assert state["generator"].device.type == "cpu" and state["generator_device"] == "cpu"
    a.load_state_dict({**state, "generator": state["generator"].clone()})
    with pytest.raises(ValueError, match="generator ran on cuda"):
        a.load_state_dict({**state, "generator_device": "cuda"})


# -- 2. evaluation with BatchNorm statistics of the evaluated (target) network -----------------------------


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


# -- 3. anneal_epochs must leave at least one epoch on the target ------------------------------------------


@pytest.mark.parametrize("method", GRADUAL)
def test_anneal_epochs_equal_to_finetune_epochs_is_refused(method: str) -> None:
    cfg = compose_config([f"method={method}", "method.anneal_epochs=10", "train.finetune_epochs=10"])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert info.value.field_name == "method.anneal_epochs"
    validate(compose_config([f"method={method}", "method.anneal_epochs=9", "train.finetune_epochs=10"]))


@pytest.mark.parametrize("method", GRADUAL)
def test_last_possible_anneal_epochs_still_trains_the_target(make_cfg, method: str) -> None:
    summary = run(make_cfg(f"method={method}", "method.anneal_epochs=2", "train.finetune_epochs=3"))
    assert summary["epochs_at_target"] == 1
    assert summary["sparsity"] == pytest.approx(0.9, abs=1e-3)


# -- 4. equal n means equal exposure; equal steps and LR trace for every method ----------------------------


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


# -- 5. no selection on the test set -------------------------------------------------------------------------


def test_best_epoch_is_chosen_by_validation_among_epochs_at_target() -> None:
    history = [  # epoch 1 is denser than the target: highest val and test, never eligible
        {"epoch": 1, "at_target": False, "val_acc": 99.0, "test_acc": 98.0},
        {"epoch": 2, "at_target": True, "val_acc": 80.0, "test_acc": 90.0},  # best test
        {"epoch": 3, "at_target": True, "val_acc": 85.0, "test_acc": 70.0},  # best val
        {"epoch": 4, "at_target": True, "val_acc": 85.0, "test_acc": 75.0},  # a tie: the earlier wins
    ]
    assert best_by_validation(history) == {
        "best_epoch": 3,
        "best_val_acc": 85.0,
        "test_acc_at_best_val": 70.0,
    }
    no_val = [{k: v for k, v in r.items() if k != "val_acc"} for r in history]
    assert best_by_validation(no_val)["best_epoch"] is None


def test_runs_report_validation_numbers(make_cfg) -> None:
    summary = run(make_cfg("method=iterative", "method.anneal_epochs=1", "sparsity=0.9"))
    assert summary["val_acc"] is not None and summary["best_epoch"] in (2, 3)  # epoch 1 is not at target
    assert "val_acc" in summary["parent"]
    assert summary["torch_threads"] == torch.get_num_threads() == 1  # train.cpu_threads, recorded


def test_cpu_threads_come_from_the_config_not_from_the_launcher(make_cfg) -> None:
    """joblib's workers get cores / n_jobs threads, a sequential sweep all of them: the config decides."""
    torch.set_num_threads(2)  # as a process with more cores would start
    one = make_cfg("method=one_shot", "sparsity=0.5")
    assert run(one)["torch_threads"] == 1 and torch.get_num_threads() == 1
    two = make_cfg("method=one_shot", "sparsity=0.5", "train.cpu_threads=2", run_dir="two")
    assert run_identity(two) != run_identity(one)  # the numbers may differ, so the runs do
    assert run(two)["torch_threads"] == 2
    torch.set_num_threads(1)


# -- 7. removed weights stay exactly zero; weight decay on sampled-out weights is a choice -----------------


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("name", ["iterative", "temperature_annealing"])
def test_pruned_weights_stay_zero_under_the_default_optimizer(name: str, optimizer: str) -> None:
    cfg = compose_config([f"method={name}", "method.anneal_epochs=1", f"optimizer.name={optimizer}"])
    net = _mlp()
    m = make_method(cfg.method, cfg.pruning, 0.7, 0)
    m.start(net)
    opt = make_optimizer(net.parameters(), cfg.optimizer, 0.1, m.self_decayed_params())
    m.bind_optimizer(opt)
    x, y = torch.randn(32, 20), torch.randint(0, 4, (32,))

    def steps(epoch: int, n: int) -> None:
        for step in range(n):
            m.before_step(epoch, step, n)
            opt.zero_grad()
            nn.functional.cross_entropy(net.train()(x), y).backward()
            m.before_optimizer_step(0.1)
            opt.step()

    m.begin_epoch(0, 5)
    steps(0, 5)  # momentum builds up on weights the final mask will remove
    m.begin_epoch(1, 5)  # the target becomes final
    steps(1, 5)
    for n, mod in m.modules.items():
        removed = ~m.masks[n].eval_mask
        assert bool(removed.any())
        assert bool((dense_weight(mod)[removed] == 0).all()), n
        for value in opt.state[dense_weight(mod)].values():
            if value.shape == removed.shape:
                assert bool((value[removed] == 0).all()), n


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_decay_of_sampled_out_weights_is_a_config_choice(optimizer: str) -> None:
    results = {}
    for decay in (True, False):
        cfg = compose_config([
            "method=temperature_annealing", "method.anneal_epochs=3", "method.initial_temperature=0.5",
            f"method.decay_sampled_out={decay}", f"optimizer.name={optimizer}", "optimizer.weight_decay=0.1",
        ])  # fmt: skip
        net = _mlp()
        m = make_method(cfg.method, cfg.pruning, 0.7, 0)
        m.start(net)
        opt = make_optimizer(net.parameters(), cfg.optimizer, 0.1, m.self_decayed_params())
        m.bind_optimizer(opt)
        m.begin_epoch(0, 1)
        m.before_step(0, 0, 1)
        before = {n: dense_weight(mod).detach().clone() for n, mod in m.modules.items()}
        opt.zero_grad()
        net.train()(torch.randn(8, 20)).sum().backward()
        m.before_optimizer_step(0.1)
        opt.step()  # the first step: no momentum yet, so only decay can move a sampled-out weight
        out = {n: m.masks[n].train_mask == 0 for n in m.masks}
        results[decay] = all(
            torch.equal(dense_weight(mod)[out[n]], before[n][out[n]]) for n, mod in m.modules.items()
        )
        sampled_in_moved = all(
            not torch.equal(dense_weight(mod)[~out[n]], before[n][~out[n]]) for n, mod in m.modules.items()
        )
        assert sampled_in_moved
    assert results == {True: False, False: True}  # decayed by default, untouched with the option off


# -- 8. the parent cache key ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    # amp and channels-last change a parent on CUDA only (tests/test_identity.py checks both devices)
    "change",
    ["data.pipeline=torch", "train.cpu_threads=2", "train.cpu_numerics=native"],
)
def test_parent_key_covers_fields_that_change_the_weights(change: str) -> None:
    assert parent_key(compose_config([change])) != parent_key(compose_config([]))


@pytest.mark.parametrize(
    "change", ["method=one_shot", "sparsity=0.5", "data.root=/elsewhere", "data.num_workers=0", "device=cpu"]
)
def test_parent_key_ignores_fields_that_do_not(change: str) -> None:
    assert parent_key(compose_config([change])) == parent_key(compose_config([]))


# -- 9. global RNG state in the checkpoint: exact resume mid-annealing with a dropout model ---------------


def test_dropout_model_killed_mid_annealing_resumes_bit_identically(make_cfg, tmp_path) -> None:
    overrides = (
        "method=random_annealing", "method.anneal_epochs=3", "train.finetune_epochs=4", "model.dropout=0.3",
    )  # fmt: skip
    reference = run(make_cfg(*overrides, run_dir="reference"))
    # dies in epoch 2 of 4: annealing is still stochastic then
    assert_resumes_identically(make_cfg, tmp_path, overrides, reference, kill_epoch=2)


# -- 10. layer collapse fails clearly unless allowed, and is recorded ---------------------------------------


def _parent_with_a_tiny_first_layer(make_cfg, tmp_path: Path) -> Path:
    """A parent whose first conv has tiny weights: global magnitude pruning at 50% removes all of it."""
    cfg = make_cfg()
    data = load_data(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg.model, data.in_channels, data.image_shape[-1], data.num_classes)
    state = model.state_dict()
    state["0.weight"] = state["0.weight"] * 1e-6
    torch.save(state, tmp_path / "tiny.pt")
    return tmp_path / "tiny.pt"


def test_layer_collapse_fails_unless_allowed(make_cfg, tmp_path) -> None:
    parent = _parent_with_a_tiny_first_layer(make_cfg, tmp_path)
    with pytest.raises(LayerCollapse, match="allow_layer_collapse") as info:
        run(make_cfg("method=one_shot", "sparsity=0.5", f"parent.path={parent}", run_dir="a"))
    assert info.value.layers == ["0"]
    summary = run(
        make_cfg(
            "method=one_shot", "sparsity=0.5", f"parent.path={parent}", "pruning.allow_layer_collapse=true",
            run_dir="b",
        )
    )  # fmt: skip
    assert summary["status"] == "completed" and summary["collapsed_layers"] == ["0"]
    assert summary["layer_sparsity"]["0"] == 1.0


def test_collapse_seen_by_an_earlier_iterative_step_survives_a_resume(make_cfg, tmp_path) -> None:
    parent = _parent_with_a_tiny_first_layer(make_cfg, tmp_path)
    overrides = (
        "method=iterative",
        "method.anneal_epochs=1",
        "sparsity=0.5",
        f"parent.path={parent}",
        "pruning.allow_layer_collapse=true",
        "lr.lr=1e-6",
    )  # fmt: skip (the tiny layer stays tiny)
    killed_run(
        make_cfg(*overrides), 3
    )  # after the last pruning step (epoch 1): nothing prunes again after resume
    assert run(make_cfg(*overrides))["collapsed_layers"] == ["0"]


@pytest.mark.slow
def test_layer_collapse_cli_one_line_and_recorded(make_cfg, tmp_path) -> None:
    parent = _parent_with_a_tiny_first_layer(make_cfg, tmp_path)
    run_dir = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.train", "data=synthetic", "model.width=8", "device=cpu",
         "method=one_shot", "sparsity=0.5", f"parent.path={parent}", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: the target removes every weight of layer")
    summary = json.loads((run_dir / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["collapsed_layers"] == ["0"]


# -- 11. a completed run saves the pruned model ----------------------------------------------------------


@pytest.mark.parametrize("method", ["one_shot", "temperature_annealing"])
def test_saved_model_is_sparse_and_loads_into_the_plain_architecture(make_cfg, tmp_path, method) -> None:
    cfg = make_cfg(f"method={method}", "method.anneal_epochs=1", "sparsity=0.8")
    summary = run(cfg)
    state = torch.load(tmp_path / "run" / "model.pt")
    assert summary["model_file"] == "model.pt"
    data = load_data(cfg.data)
    plain = build_model(cfg.model, data.in_channels, data.image_shape[-1], data.num_classes)
    plain.load_state_dict(state)  # strict: exactly the architecture's keys, no mask buffers
    prunable = [k for k in summary["layer_sparsity"]]
    weights = torch.cat([state[f"{k}.weight"].flatten() for k in prunable])
    assert int((weights == 0).sum()) / weights.numel() == pytest.approx(summary["sparsity"], abs=1e-12)
    assert (
        run(make_cfg(f"method={method}", "train.save_model=false", "method.anneal_epochs=1", run_dir="n"))[
            "model_file"
        ]
        is None
    )
    assert not (tmp_path / "n" / "model.pt").exists()
