"""Re-scoring as a separate axis (issue 16): ``method.rescore`` re-chooses annealing's target from the current
weights at the start of each epoch 1 .. n-1.

On a 12-weight model with hand-set weights: the target follows the magnitudes at each update (a weight may
leave it and come back: nothing is removed before epoch n), the final mask is the magnitude top-k of the
weights at epoch n-1's update, P is rebuilt around each new target (random annealing: a leaving weight gets
its own p_i), the expected density follows the schedule whatever the re-scoring, a checkpoint continues
identically, and ``rescore=false`` ignores the weights' movement. Then the config rules and one real run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import TINY_TARGET as PARENT_TARGET
from helpers import (
    assert_resumes_identically,
    compose_config,
    fixed_batches,
    same_state,
    small,
    start_with_optimizer,
    tiny,
    train_epochs,
)
from torch import nn

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.schema import ConfigError, MethodConfig, PruningConfig
from ssa_experiments.config.validate import validate
from ssa_experiments.pruning.masking import dense_weight
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.pruning.methods.annealing import RandomAnnealing
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.store.files import read_metrics
from ssa_experiments.training.checkpoint import load_checkpoint, restore, save_checkpoint
from ssa_experiments.training.run import run

SEED = 0
# The tiny model (conftest): |w| all distinct; at sparsity 0.5 the parent's target (PARENT_TARGET) removes
# 0.1, 0.15, 0.2, 0.25, 0.3, 0.35.


def method(name: str = "temperature_annealing", **kw: object) -> PruningMethod:
    kw = {"anneal_epochs": 3, "rescore": True, **kw}
    return make_method(MethodConfig(name=name, **kw), PruningConfig(keep_last_layer=False), 0.5, SEED)


def set_weight(m: PruningMethod, layer: str, index: tuple[int, int], value: float) -> None:
    """What training might do to one weight between two updates."""
    with torch.no_grad():
        dense_weight(m.modules[layer])[index] = value


def top_k(m: PruningMethod, k: int = 6) -> dict[str, torch.Tensor]:
    """The k largest |w| over both layers, computed independently of the pruning code."""
    flat = torch.cat([dense_weight(m.modules[n]).detach().abs().flatten() for n in ("0", "2")])
    keep = torch.zeros(12, dtype=torch.bool)
    keep[torch.topk(flat, k).indices] = True
    return {"0": keep[:6].view(3, 2), "2": keep[6:].view(2, 3)}


def assert_target(m: PruningMethod, expected: dict[str, torch.Tensor]) -> None:
    for n, k in expected.items():
        assert torch.equal(m.keep[n], k), n
        assert torch.equal(m.masks[n].eval_mask, k), n  # evaluation sees the re-chosen target


# Epoch 1: w0[0,0] 0.1 -> 0.9 enters, w2[1,0] -0.45 -> 0.05 leaves. |w| sorted: 0.05 0.15 0.2 0.25 0.3 0.35
# (removed) | 0.4 0.5 0.55 0.6 0.65 0.9 (kept).
EPOCH1 = {
    "0": torch.tensor([[True, False], [False, True], [True, True]]),
    "2": torch.tensor([[False, False, False], [False, True, True]]),
}
# Epoch 2 (= n-1): w2[1,0] 0.05 -> -0.7 comes back, w0[2,0] 0.5 -> 0.01 leaves. Removed: 0.01 0.15 0.2 0.25
# 0.3 0.35; kept: 0.4 0.55 0.6 0.65 0.7 0.9.
EPOCH2 = {
    "0": torch.tensor([[True, False], [False, True], [False, True]]),
    "2": torch.tensor([[False, False, False], [True, True, True]]),
}


def test_rescore_follows_the_current_magnitudes_and_ends_at_epoch_n_minus_1s_top_k() -> None:
    m = method(initial_temperature=0.6)
    m.start(tiny())
    m.begin_epoch(0, 2)
    assert_target(m, PARENT_TARGET)
    set_weight(m, "0", (0, 0), 0.9)
    set_weight(m, "2", (1, 0), 0.05)
    m.begin_epoch(1, 2)
    assert_target(m, EPOCH1)
    assert_target(m, top_k(m))
    for n, k in EPOCH1.items():  # P rebuilt: 1 on the new target, tau0 * (1 - 1/3) = 0.4 elsewhere
        assert torch.allclose(m.prob[n], torch.where(k, 1.0, 0.4))
    assert float(dense_weight(m.modules["2"]).detach()[1, 0]) == pytest.approx(0.05)  # annealed, not zeroed
    assert m.report()["sparsity"] == 0.5 and m.expected_train_sparsity() == pytest.approx(0.5 * (1 - 0.4))
    m.before_step(1, 0, 2)
    for n, k in EPOCH1.items():  # a sample contains the whole new target
        assert bool(m.masks[n].train_mask[k].all())

    set_weight(m, "2", (1, 0), -0.7)
    set_weight(m, "0", (2, 0), 0.01)
    m.begin_epoch(2, 2)
    assert_target(m, EPOCH2)  # w2[1, 0] re-entered: a weight outside the target is not removed before n
    final = top_k(m)  # the magnitude top-k at epoch n-1's update
    assert_target(m, final)

    set_weight(m, "0", (2, 0), 5.0)  # moves after the last update: not re-scored at epoch n
    m.begin_epoch(3, 2)
    assert m.at_target
    for n, k in final.items():
        assert torch.equal(m.masks[n].eval_mask, k) and torch.equal(m.masks[n].train_mask, k.float())
        assert bool((dense_weight(m.modules[n])[~k] == 0).all())  # removed for good, as in one-shot
    m.begin_epoch(4, 2)
    assert_target(m, final)


def test_without_rescore_the_parents_target_holds() -> None:
    m = method(rescore=False)
    m.start(tiny())
    for epoch in range(3):
        set_weight(m, "0", (0, 0), 0.9 + epoch)
        set_weight(m, "2", (1, 0), 0.05)
        m.begin_epoch(epoch, 2)
        assert_target(m, PARENT_TARGET)
    m.begin_epoch(3, 2)
    assert all(torch.equal(m.masks[n].eval_mask, k) for n, k in PARENT_TARGET.items())


def test_with_step_granularity_rescoring_stays_at_epoch_boundaries() -> None:
    m = method(granularity="step")
    m.start(tiny())
    m.begin_epoch(0, 4)
    set_weight(m, "0", (0, 0), 0.9)
    set_weight(m, "2", (1, 0), 0.05)
    for step in range(4):
        m.before_step(0, step, 4)
        assert_target(m, PARENT_TARGET)
    m.begin_epoch(1, 4)
    assert_target(m, EPOCH1)
    m.before_step(1, 2, 4)  # t = 1.5 of 3: factor 0.5
    assert torch.allclose(m.prob["2"], torch.where(EPOCH1["2"], 1.0, 0.25))


def test_random_annealing_rescore_gives_a_leaving_weight_its_own_p() -> None:
    """Every weight drew p_i ~ U(0, 1) at start (one flat group of 12, in layer order); the parent's target
    masks its draws to 0. After re-scoring, the weight that left has its own draw, the one that entered 0."""
    m = method("random_annealing")
    m.start(tiny())
    assert isinstance(m, RandomAnnealing)
    raw = torch.rand(12, generator=torch.Generator().manual_seed(SEED + RandomAnnealing.P0_SEED_OFFSET))
    (group,) = m.groups
    parent_keep = torch.cat([PARENT_TARGET["0"].flatten(), PARENT_TARGET["2"].flatten()])
    assert torch.equal(group.p0, raw.masked_fill(parent_keep, 0.0))  # the replay is the start's draws
    m.begin_epoch(0, 2)
    set_weight(m, "0", (0, 0), 0.9)
    set_weight(m, "2", (1, 0), 0.05)
    m.begin_epoch(1, 2)
    new_keep = torch.cat([EPOCH1["0"].flatten(), EPOCH1["2"].flatten()])
    assert torch.equal(group.p0, raw.masked_fill(new_keep, 0.0))
    left, entered = 6 + 3, 0  # w2[1, 0] and w0[0, 0] in the flat order
    assert float(group.p0[left]) == float(raw[left]) > 0 and float(group.p0[entered]) == 0.0
    assert float(m.prob["2"][1, 0]) == pytest.approx(float(raw[left]) * (1 - 1 / 3))
    assert float(m.prob["0"][0, 0]) == 1.0


def test_a_weight_with_p_zero_for_good_cannot_enter_the_target() -> None:
    """The support of P only shrinks: a weight outside the target with p(0) = 0 is never sampled, so
    re-scoring does not bring it in, however large it grows (the next largest enters instead)."""
    m = method("random_annealing")
    m.start(tiny())
    (group,) = m.groups
    raw = m.raw_probabilities()[0]
    raw[0] = 0.0  # as if w0[0, 0] (outside the parent's target) had drawn p_i = 0: out of the support
    m.raw_probabilities = lambda: [raw.clone()]
    group.p0[0] = 0.0
    m.begin_epoch(0, 2)
    set_weight(m, "0", (0, 0), 0.9)
    set_weight(m, "2", (0, 2), 0.95)  # w2[0, 2] 0.35 -> 0.95, in the support
    m.begin_epoch(1, 2)
    assert not bool(m.keep["0"][0, 0]) and bool(m.keep["2"][0, 2])
    assert float(m.prob["0"][0, 0]) == 0.0


@pytest.mark.parametrize("name", ["temperature_annealing", "soft_annealing"])
def test_expected_density_follows_the_schedule_whatever_the_rescoring(name: str) -> None:
    densities = []
    for rescore in (False, True):
        m = method(name, rescore=rescore, schedule="geometric", initial_temperature=0.5)
        m.start(tiny())
        seen = []
        for epoch in range(3):
            set_weight(m, "0", (0, 0), 0.9 * (epoch % 2))
            m.begin_epoch(epoch, 2)
            seen.append(m.report()["expected_train_sparsity"])
        densities.append(seen)
    d0, dt = 0.5 + 0.5 * 0.5, 0.5
    assert densities[1] == pytest.approx(densities[0], rel=1e-6)  # float32 sums over a different layout of P
    assert [1 - s for s in densities[1]] == pytest.approx(
        [d0 ** (1 - e / 3) * dt ** (e / 3) for e in range(3)]
    )


def test_soft_annealing_rescore_moves_its_deterministic_mask() -> None:
    m = method("soft_annealing", initial_temperature=0.6)
    m.start(tiny())
    m.begin_epoch(0, 2)
    set_weight(m, "0", (0, 0), 0.9)
    set_weight(m, "2", (1, 0), 0.05)
    m.begin_epoch(1, 2)
    for n, k in EPOCH1.items():
        assert torch.allclose(m.masks[n].train_mask, torch.where(k, 1.0, 0.4))
        assert torch.equal(m.masks[n].eval_mask, k)


@pytest.mark.parametrize("name", ["stochastic_constant", "dropconnect_target"])
def test_controls_that_fix_the_target_refuse_rescore(name: str) -> None:
    with pytest.raises(ValueError, match=r"method\.rescore"):
        method(name).start(tiny())


@pytest.mark.parametrize("name", ["temperature_annealing", "random_annealing"])
def test_checkpoint_after_a_rescore_continues_identically(name: str, tmp_path: Path) -> None:
    """Written after epoch 1 (a re-chosen target in the model's masks) and loaded into a fresh model and
    method: every later step's masks, the targets and the final weights are those of the uninterrupted run
    (random annealing's p(0) follows the restored target)."""
    steps, epochs, device = 3, 5, torch.device("cpu")
    batches = fixed_batches(steps, epochs)

    def setup() -> tuple[nn.Module, PruningMethod, torch.optim.Optimizer]:
        net = small()
        m = make_method(
            MethodConfig(name=name, anneal_epochs=4, rescore=True),
            PruningConfig(keep_last_layer=False),
            0.7,
            SEED,
        )
        return net, m, start_with_optimizer(m, net, 0.5)

    def train(net, m, opt, epoch_range) -> list[torch.Tensor]:
        return train_epochs(net, m, opt, batches, epoch_range, 0.5, record_target=True)

    net_a, m_a, opt_a = setup()
    first_target = torch.cat([k.flatten() for k in m_a.keep.values()]).clone()
    train(net_a, m_a, opt_a, range(2))
    assert not torch.equal(torch.cat([k.flatten() for k in m_a.keep.values()]), first_target)  # it moved
    path, identity = tmp_path / "ckpt.pt", {"run": name}
    save_checkpoint(
        path, model=net_a, optimizer=opt_a, method=m_a, epoch=1, global_step=2 * steps, identity=identity,
        device=device,
    )  # fmt: skip
    after_a = train(net_a, m_a, opt_a, range(2, epochs))
    net_b, m_b, opt_b = setup()
    first, _ = restore(load_checkpoint(path, identity, device), net_b, opt_b, m_b)
    assert first == 2
    if name == "random_annealing":  # before any update: p(0) already fits the restored target
        (g_b,) = m_b.groups
        assert torch.equal(g_b.p0, RandomAnnealing.raw_probabilities(m_b)[0].masked_fill_(g_b.keep, 0.0))
    after_b = train(net_b, m_b, opt_b, range(first, epochs))
    assert all(torch.equal(a, b) for a, b in zip(after_a, after_b, strict=True))
    assert same_state(net_a, net_b)


# -- config ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        ["method=one_shot", "method.rescore=true"],
        ["method=iterative", "method.rescore=true"],
        ["method=stochastic_constant", "method.rescore=true"],
        ["method=dropconnect_target", "method.rescore=true"],
        ["method=temperature_annealing", "method.rescore=true", "pruning.criterion=random"],
    ],
)
def test_rescore_where_it_is_not_read_is_refused(overrides: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        validate(compose_config(["output_dir=/tmp/unused", *overrides]))
    assert info.value.field_name == "method.rescore"


@pytest.mark.parametrize("name", ["temperature_annealing", "random_annealing", "soft_annealing"])
def test_rescore_is_in_the_identity_of_the_methods_that_read_it(name: str) -> None:
    base = compose_config(["output_dir=/tmp/unused", f"method={name}"])
    validate(compose_config(["output_dir=/tmp/unused", f"method={name}", "method.rescore=true"]))
    on = run_identity(compose_config(["output_dir=/tmp/unused", f"method={name}", "method.rescore=true"]))
    assert on["method"]["rescore"] is True and on != run_identity(base)
    # rescore=false computes what runs did before the key existed: their identity (and store key) holds
    assert "rescore" not in run_identity(base)["method"]


def test_rescore_is_not_in_the_identity_of_other_methods() -> None:
    for name in ("one_shot", "iterative", "stochastic_constant", "dropconnect_target"):
        ident = run_identity(
            compose_config(["output_dir=/tmp/unused", f"method={name}", "method.rescore=true"])
        )
        assert "rescore" not in ident["method"], name


# -- one real run ------------------------------------------------------------------------------------------


def test_rescore_end_to_end_killed_mid_annealing_resumes_identically(make_cfg, tmp_path: Path) -> None:
    overrides = (
        "method=random_annealing", "method.rescore=true", "method.anneal_epochs=2", "sparsity=0.8",
        "train.max_steps_per_epoch=3", "parent.epochs=1", "data.num_train=256",
        "eval.bn_recalibration_batches=2",
    )  # fmt: skip
    reference = run(make_cfg(*overrides, run_dir="reference"))
    assert reference["status"] == "completed" and reference["epochs_at_target"] == 1
    assert reference["identity"]["method"]["rescore"] is True
    rows = read_metrics(tmp_path / "reference")
    assert [r["at_target"] for r in rows] == [False, False, True]
    # dies in epoch 2 of 3, after epoch 1's re-scoring was checkpointed
    assert_resumes_identically(make_cfg, tmp_path, overrides, reference, kill_epoch=2)


def test_rescore_on_a_channels_last_model_keeps_the_layout() -> None:
    """The CUDA path makes convolutions channels-last before masks attach: the re-chosen target lands in the
    same flat storage, with the layers' layout, at the right logical positions."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)).to(
        memory_format=torch.channels_last
    )
    m = make_method(
        MethodConfig(name="temperature_annealing", anneal_epochs=3, rescore=True),
        PruningConfig(keep_last_layer=False),
        0.5,
        SEED,
    )
    m.start(net)
    m.begin_epoch(0, 1)
    pointers = {n: k.data_ptr() for n, k in m.keep.items()}
    with torch.no_grad():
        for mod in m.modules.values():
            dense_weight(mod).mul_(
                torch.rand(dense_weight(mod).shape, generator=torch.Generator().manual_seed(3))
            )
    m.begin_epoch(1, 1)
    flat = torch.cat([dense_weight(m.modules[n]).detach().abs().flatten() for n in m.keep])
    expected = torch.zeros_like(flat, dtype=torch.bool)
    expected[torch.topk(flat, flat.numel() // 2).indices] = True
    assert torch.equal(torch.cat([m.keep[n].flatten() for n in m.keep]), expected)
    for n, k in m.keep.items():
        assert k.data_ptr() == pointers[n] and m.masks[n].eval_mask.data_ptr() == pointers[n]
        assert k.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(m.prob[n] == 1, k)
