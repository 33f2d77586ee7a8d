"""The controls of issue 15: stochastic_constant, dropconnect_target, soft_annealing.

Each isolates one ingredient of temperature annealing (noise, extra weights, the gradual schedule). Masks and
probabilities are checked against values computed by hand on a 12-weight model whose target is known; the
sampled ones against an independent replay of the method's generator. Then: the target exactly from epoch
n, the one-shot limit (tau0 or r0 -> 0), checkpoint round trips, config validation, and one real run.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import TINY_TARGET as TARGET
from helpers import (
    TINY_W0,
    TINY_W2,
    assert_resumes_identically,
    compose_config,
    fixed_batches,
    lockstep,
    same_state,
    small,
    start_with_optimizer,
    train_epochs,
)
from helpers import tiny as tiny_weights
from torch import nn

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.schema import MethodConfig, OptimizerConfig, PruningConfig
from ssa_experiments.config.validate import validate
from ssa_experiments.pruning.masking import dense_weight
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.pruning.methods.base import PruningMethod
from ssa_experiments.pruning.methods.controls import DropConnectTarget, SoftAnnealing, StochasticConstant
from ssa_experiments.store.files import read_metrics
from ssa_experiments.training.checkpoint import load_checkpoint, restore, save_checkpoint
from ssa_experiments.training.optim import make_optimizer
from ssa_experiments.training.run import run

CONTROLS = ["stochastic_constant", "dropconnect_target", "soft_annealing"]
SEED = 0
GENERATOR_OFFSET = 7919  # Annealing seeds its mask generator with seed + 7919

# The tiny model (conftest): |w| are all distinct, so at sparsity 0.5 the target is TARGET; biases B0 and 0.
B0 = [0.01, 0.02, 0.03]


def tiny() -> nn.Sequential:
    return tiny_weights(B0)


def method(name: str, sparsity: float = 0.5, **kw: object) -> PruningMethod:
    return make_method(MethodConfig(name=name, **kw), PruningConfig(keep_last_layer=False), sparsity, SEED)


def replay(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The U of one sampling step, drawn independently: one torch.rand per layer, in layer order."""
    return {n: torch.rand(t.shape, generator=generator) for n, t in TARGET.items()}


def hand_forward(x: torch.Tensor, m0: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    """The tiny model's output with weight multipliers m0, m2, written out without the masking code."""
    h = torch.relu(x @ (torch.tensor(TINY_W0) * m0).T + torch.tensor(B0))
    return h @ (torch.tensor(TINY_W2) * m2).T


def test_the_tiny_models_target_is_the_hand_computed_one() -> None:
    for name in CONTROLS:
        m = method(name, anneal_epochs=4)
        m.start(tiny())
        assert all(torch.equal(m.keep[n], TARGET[n]) for n in TARGET), name
        assert all(torch.equal(m.masks[n].eval_mask, TARGET[n]) for n in TARGET), name
        assert m.report()["sparsity"] == 0.5


# -- stochastic_constant ---------------------------------------------------------------------------------


def test_stochastic_constant_hand_values_start_middle_end() -> None:
    """P = 1 on the target and tau0 = 0.3 elsewhere in epochs 0, 2 (middle) and 3 alike; the target at 4."""
    m = method("stochastic_constant", initial_temperature=0.3, anneal_epochs=4)
    m.start(tiny())
    g = torch.Generator().manual_seed(SEED + GENERATOR_OFFSET)
    for epoch in (0, 1, 2, 3):
        m.begin_epoch(epoch, steps_per_epoch=2)
        for n in TARGET:
            expected = torch.where(TARGET[n], 1.0, 0.3)
            assert torch.allclose(m.prob[n], expected), (epoch, n)
        assert m.report()["anneal_factor"] == 1.0  # not annealed
        assert m.expected_train_sparsity() == pytest.approx(0.5 * (1 - 0.3), abs=1e-6)
        for step in range(2):
            m.before_step(epoch, step, 2)
            u = replay(g)
            for n in TARGET:  # M = 1[U < P]: the target always, a removed weight when U < 0.3
                assert torch.equal(m.masks[n].train_mask, (TARGET[n] | (u[n] < 0.3)).float()), (epoch, step)
    m.begin_epoch(4, 2)
    m.before_step(4, 0, 2)
    assert m.at_target and m.report()["anneal_factor"] == 0.0
    assert m.report()["expected_train_sparsity"] == pytest.approx(0.5)
    for n in TARGET:
        assert torch.equal(m.masks[n].train_mask, TARGET[n].float())
        assert bool((dense_weight(m.modules[n])[~TARGET[n]] == 0).all())  # removed for good


def test_stochastic_constant_keep_rate_stays_tau0_until_n() -> None:
    """Empirical rate of the removed weights in the LAST epoch before n: tau0 (temperature annealing would be
    at tau0 / 4 by then), within 4 standard errors over 6 weights x 2000 steps."""
    m = method("stochastic_constant", initial_temperature=0.3, anneal_epochs=4)
    m.start(tiny())
    m.begin_epoch(3, 2000)
    kept = []
    for step in range(2000):
        m.before_step(3, step, 2000)
        kept.append(torch.cat([m.masks[n].train_mask[~TARGET[n]] for n in TARGET]))
    rate = float(torch.stack(kept).mean())
    assert abs(rate - 0.3) < 4 * (0.3 * 0.7 / 12000) ** 0.5


def test_stochastic_constant_ignores_schedule_and_granularity() -> None:
    masks = []
    for kw in ({}, {"schedule": "cosine", "granularity": "step"}):
        m = method("stochastic_constant", initial_temperature=0.4, anneal_epochs=2, **kw)
        m.start(tiny())
        seen = []
        for epoch in range(3):
            m.begin_epoch(epoch, 3)
            for step in range(3):
                m.before_step(epoch, step, 3)
                seen.append(torch.cat([m.masks[n].train_mask.flatten() for n in TARGET]))
        masks.append(torch.stack(seen))
    assert torch.equal(masks[0], masks[1])


# -- dropconnect_target ------------------------------------------------------------------------------------


def test_dropconnect_target_hand_values_start_middle_end() -> None:
    """r0 = 0.4, n = 4, linear: target weights kept with 1 - r = 0.6, 0.8 (middle), 0.9, then 1 (the target);
    kept ones carry 1 / (1 - r); removed weights are zero in storage before the first step."""
    net = tiny()
    m = method("dropconnect_target", initial_drop_rate=0.4, anneal_epochs=4)
    m.start(net)
    assert isinstance(m, DropConnectTarget)
    w0, w2 = torch.tensor(TINY_W0), torch.tensor(TINY_W2)
    assert torch.equal(dense_weight(net[0]), w0 * TARGET["0"]) and torch.equal(
        dense_weight(net[2]), w2 * TARGET["2"]
    )
    assert all(torch.equal(m.masks[n].train_mask, TARGET[n].float()) for n in TARGET)  # the target at step 0
    g = torch.Generator().manual_seed(SEED + GENERATOR_OFFSET)
    for epoch, keep_p in [(0, 0.6), (2, 0.8), (3, 0.9)]:
        m.begin_epoch(epoch, 1)
        for n in TARGET:
            assert torch.allclose(m.prob[n], torch.where(TARGET[n], keep_p, 0.0)), (epoch, n)
        assert m.drop_rate == pytest.approx(1 - keep_p)
        # expected sparsity of a training step: the removed half plus r of the target half
        assert m.expected_train_sparsity() == pytest.approx(0.5 + 0.5 * (1 - keep_p), abs=1e-6)
        m.before_step(epoch, 0, 1)
        u = replay(g)
        for n in TARGET:
            expected = torch.where(TARGET[n] & (u[n] < keep_p), 1 / keep_p, 0.0)
            assert torch.allclose(m.masks[n].train_mask, expected, rtol=1e-6, atol=0), (epoch, n)
        x = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
        train_out = hand_forward(x, m.masks["0"].train_mask, m.masks["2"].train_mask)
        assert torch.allclose(net.train()(x), train_out, atol=1e-6)
        assert torch.allclose(
            net.eval()(x), hand_forward(x, TARGET["0"].float(), TARGET["2"].float()), atol=1e-6
        )
        assert not m.at_target
    m.begin_epoch(4, 1)
    m.before_step(4, 0, 1)
    assert m.at_target and m.drop_rate == 0.0
    assert all(torch.equal(m.masks[n].train_mask, TARGET[n].float()) for n in TARGET)


def test_dropconnect_target_is_unbiased_on_the_target() -> None:
    """E[M] = 1 on every target weight (the 1 / (1 - r) rescaling), 0 off it: 6 x 4000 samples at r = 0.4,
    Var(M) = 1 / 0.6 - 1, within 4 standard errors."""
    m = method("dropconnect_target", initial_drop_rate=0.4, anneal_epochs=4)
    m.start(tiny())
    m.begin_epoch(0, 4000)
    on, off = [], []
    for step in range(4000):
        m.before_step(0, step, 4000)
        on.append(torch.cat([m.masks[n].train_mask[TARGET[n]] for n in TARGET]))
        off.append(torch.cat([m.masks[n].train_mask[~TARGET[n]] for n in TARGET]))
    assert abs(float(torch.stack(on).mean()) - 1.0) < 4 * ((1 / 0.6 - 1) / 24000) ** 0.5
    assert float(torch.stack(off).abs().max()) == 0.0


def test_dropconnect_cosine_schedule_and_step_granularity() -> None:
    m = method("dropconnect_target", initial_drop_rate=0.4, anneal_epochs=4, schedule="cosine")
    m.start(tiny())
    m.begin_epoch(1, 10)  # s(1/4) = (1 + cos(pi/4)) / 2
    assert m.drop_rate == pytest.approx(0.4 * (1 + math.cos(math.pi / 4)) / 2)
    m = method("dropconnect_target", initial_drop_rate=0.4, anneal_epochs=2, granularity="step")
    m.start(tiny())
    m.begin_epoch(1, 4)
    m.before_step(1, 2, 4)  # t = 1.5 of 2: s = 0.25
    assert m.drop_rate == pytest.approx(0.1)
    assert torch.allclose(m.prob["2"], torch.where(TARGET["2"], 0.9, 0.0))


# -- soft_annealing ----------------------------------------------------------------------------------------


def test_soft_annealing_hand_values_start_middle_end() -> None:
    """The train mask is P(t) itself: tau0 = 0.6, n = 4, linear: 0.6, 0.45, 0.3 (middle), 0.15, the target."""
    net = tiny()
    m = method("soft_annealing", initial_temperature=0.6, anneal_epochs=4)
    m.start(net)
    assert isinstance(m, SoftAnnealing)
    state = m.generator.get_state()
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    for epoch, p in [(0, 0.6), (1, 0.45), (2, 0.3), (3, 0.15)]:
        m.begin_epoch(epoch, 3)
        for step in range(3):
            m.before_step(epoch, step, 3)
            for n in TARGET:
                assert torch.allclose(m.masks[n].train_mask, torch.where(TARGET[n], 1.0, p)), (epoch, step, n)
                assert torch.equal(m.masks[n].eval_mask, TARGET[n])  # evaluation: the boolean target
        assert m.masks["0"].eval_mask.dtype == torch.bool
        expected = hand_forward(x, torch.where(TARGET["0"], 1.0, p), torch.where(TARGET["2"], 1.0, p))
        assert torch.allclose(net.train()(x), expected, atol=1e-6)
        assert torch.allclose(
            net.eval()(x), hand_forward(x, TARGET["0"].float(), TARGET["2"].float()), atol=1e-6
        )
        # 1 - mean(P): temperature annealing's expected sparsity at the same tau0 and t
        assert m.report()["expected_train_sparsity"] == pytest.approx(0.5 * (1 - p), abs=1e-6)
        assert not m.at_target
    assert torch.equal(m.generator.get_state(), state)  # nothing was sampled
    m.begin_epoch(4, 3)
    assert m.at_target and m.report()["expected_train_sparsity"] == pytest.approx(0.5)
    for n in TARGET:
        assert torch.equal(m.masks[n].train_mask, TARGET[n].float())
        assert bool((dense_weight(m.modules[n])[~TARGET[n]] == 0).all())


@pytest.mark.parametrize(
    ("kw", "epoch", "step", "p"),
    [
        ({"schedule": "cosine"}, 1, 0, 0.6 * (1 + math.cos(math.pi / 4)) / 2),
        (
            {"schedule": "exponential", "decay_rate": 5.0},
            2,
            0,
            0.6 * (math.exp(-2.5) - math.exp(-5)) / (1 - math.exp(-5)),
        ),
        ({"granularity": "step"}, 1, 2, 0.6 * (1 - 1.5 / 4)),  # t = 1 + 2/4 of n = 4
        ({"granularity": "epoch"}, 1, 2, 0.6 * (1 - 1 / 4)),  # per epoch: the step does not count
    ],
)
def test_soft_annealing_follows_schedules_and_granularity(kw: dict, epoch: int, step: int, p: float) -> None:
    m = method("soft_annealing", initial_temperature=0.6, anneal_epochs=4, **kw)
    m.start(tiny())
    m.begin_epoch(epoch, 4)
    m.before_step(epoch, step, 4)
    assert torch.allclose(m.masks["2"].train_mask, torch.where(TARGET["2"], 1.0, p))


@pytest.mark.parametrize("name", ["soft_annealing", "dropconnect_target"])
def test_masked_weight_decay_with_fractional_masks(name: str) -> None:
    """decay_sampled_out=false adds wd * w * D to the gradient: D = P(t) for soft annealing (annealing's decay
    in expectation), D = 1[M != 0] for DropConnect (not its 1 / (1 - r) forward scale)."""
    net = tiny()
    kw = {"initial_drop_rate": 0.4} if name == "dropconnect_target" else {"initial_temperature": 0.6}
    m = method(name, anneal_epochs=4, decay_sampled_out=False, **kw)
    m.start(net)
    wd = 0.1
    opt = make_optimizer(net.parameters(), OptimizerConfig(weight_decay=wd), 0.05, m.self_decayed_params())
    m.bind_optimizer(opt)
    m.begin_epoch(1, 10)
    m.before_step(1, 0, 10)
    opt.zero_grad()
    net.train()(torch.tensor([[1.0, -2.0], [0.5, 3.0]])).square().sum().backward()
    grads = {n: dense_weight(m.modules[n]).grad.clone() for n in TARGET}
    m.before_optimizer_step(0.05)
    for n in TARGET:
        mask = m.masks[n].train_mask
        d = mask if name == "soft_annealing" else (mask != 0).float()
        if name == "soft_annealing":
            assert torch.allclose(d, torch.where(TARGET[n], 1.0, 0.45))
        w = dense_weight(m.modules[n]).detach()
        assert torch.allclose(dense_weight(m.modules[n]).grad - grads[n], wd * w * d, atol=1e-7)


# -- shared behaviour ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["epoch", "step"])
@pytest.mark.parametrize("name", CONTROLS)
def test_at_target_exactly_from_epoch_n(name: str, granularity: str) -> None:
    m = method(name, anneal_epochs=3, granularity=granularity)
    m.start(tiny())
    for epoch in range(6):
        m.begin_epoch(epoch, 4)
        assert m.at_target == (epoch >= 3), (epoch, "begin")
        for step in range(4):
            m.before_step(epoch, step, 4)
            assert m.at_target == (epoch >= 3), (epoch, step)  # epoch n - 1's last step is still annealing
        is_target = all(torch.equal(m.masks[n].train_mask, TARGET[n].float()) for n in TARGET)
        if epoch >= 3:
            assert is_target
        elif name == "soft_annealing":
            assert not is_target  # deterministic: P(t) > 0 off the target until n


ONE_SHOT_LIMIT = {
    "stochastic_constant": {"initial_temperature": 1e-9},
    "dropconnect_target": {"initial_drop_rate": 1e-9},
    "soft_annealing": {"initial_temperature": 1e-9},
}


@pytest.mark.parametrize("name", CONTROLS)
def test_tau0_to_zero_reduces_to_one_shot(name: str) -> None:
    """Same train masks every step and the same trajectory (default SGD: Nesterov, weight decay) as one-shot.

    Exact for the sampled controls (P is 1 - 1e-9 -> 1.0 or 1e-9 in float32 and U < 1e-9 does not occur);
    soft annealing multiplies the removed weights by 1e-9 * s, not 0, so it agrees to ~1e-9 until epoch n.
    """
    nets = {"control": small(), "one_shot": small()}
    methods = {
        "control": method(name, anneal_epochs=2, **ONE_SHOT_LIMIT[name]),
        "one_shot": method("one_shot"),
    }
    exact = name != "soft_annealing"
    same = torch.equal if exact else (lambda a, b: torch.allclose(a, b, rtol=0, atol=1e-7))
    ctrl, one = methods["control"], methods["one_shot"]
    for epoch, step in lockstep(nets, methods, fixed_batches(3, 4, seed=1), 0.1):
        for n in one.masks:
            assert same(ctrl.masks[n].train_mask, one.masks[n].train_mask), (epoch, step, n)
            assert same(ctrl.modules[n].weight, one.modules[n].weight), (epoch, step, n)  # W * M in training
            keep = one.masks[n].eval_mask
            assert same(dense_weight(ctrl.modules[n])[keep], dense_weight(one.modules[n])[keep])
            if name == "dropconnect_target":  # the removed weights are zero in storage from step 0, too
                assert torch.equal(dense_weight(ctrl.modules[n]), dense_weight(one.modules[n]))
        if step == 2:  # the epoch's last
            assert ctrl.at_target == (epoch >= 2)
    for (ka, a), (kb, b) in zip(
        nets["control"].state_dict().items(), nets["one_shot"].state_dict().items(), strict=True
    ):
        assert ka == kb and same(a.float(), b.float()), (
            ka
        )  # stored weights (removed ones zero), biases, masks


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("stochastic_constant", {"initial_temperature": 0.5}),
        ("stochastic_constant", {"initial_temperature": 0.5, "resample": "epoch"}),
        ("dropconnect_target", {"initial_drop_rate": 0.5}),
        ("dropconnect_target", {"initial_drop_rate": 0.5, "granularity": "step", "schedule": "cosine"}),
        ("soft_annealing", {"initial_temperature": 0.5}),
        ("soft_annealing", {"initial_temperature": 0.5, "granularity": "step"}),
    ],
)
def test_checkpoint_round_trip_continues_identically(name: str, kw: dict, tmp_path: Path) -> None:
    """A checkpoint written by the real code (train masks stored as bool) after epoch 0 of n = 3, loaded into
    a fresh model and method, continues bit-identically: every step's masks and the final weights."""
    steps, epochs, device = 3, 5, torch.device("cpu")
    batches = fixed_batches(steps, epochs)

    def setup() -> tuple[nn.Module, PruningMethod, torch.optim.Optimizer]:
        net = small()
        m = method(name, anneal_epochs=3, **kw)
        return net, m, start_with_optimizer(m, net, 0.1)

    def train(net, m, opt, epoch_range) -> list[torch.Tensor]:
        return train_epochs(net, m, opt, batches, epoch_range, 0.1)

    net_a, m_a, opt_a = setup()
    train(net_a, m_a, opt_a, range(1))
    path, identity = tmp_path / "ckpt.pt", {"run": name}
    save_checkpoint(
        path,
        model=net_a,
        optimizer=opt_a,
        method=m_a,
        epoch=0,
        global_step=steps,
        identity=identity,
        device=device,
    )
    masks_a = train(net_a, m_a, opt_a, range(1, epochs))
    net_b, m_b, opt_b = setup()
    first, global_step = restore(load_checkpoint(path, identity, device), net_b, opt_b, m_b)
    assert (first, global_step) == (1, steps)
    masks_b = train(net_b, m_b, opt_b, range(first, epochs))
    assert all(torch.equal(a, b) for a, b in zip(masks_a, masks_b, strict=True))
    assert same_state(net_a, net_b)
    if name != "soft_annealing":  # the generator state is what makes the stochastic ones continue
        net_c, m_c, opt_c = setup()
        net_c.load_state_dict(net_b.state_dict())
        assert not all(
            torch.equal(a, b)
            for a, b in zip(masks_a, train(net_c, m_c, opt_c, range(1, epochs)), strict=True)
        )


# -- config --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("stochastic_constant", StochasticConstant),
        ("dropconnect_target", DropConnectTarget),
        ("soft_annealing", SoftAnnealing),
    ],
)
def test_each_control_is_selectable_with_valid_defaults(name: str, cls: type) -> None:
    cfg = compose_config(["output_dir=/tmp/unused", f"method={name}"])
    validate(cfg)
    assert cfg.method.name == name and cfg.method.anneal_epochs == 5
    assert type(make_method(cfg.method, cfg.pruning, cfg.sparsity, cfg.seed)) is cls


@pytest.mark.parametrize(
    ("name", "ignored", "read"),
    [
        (
            "stochastic_constant",
            ["method.schedule=cosine", "method.granularity=step", "method.decay_rate=2"],
            "method.resample=epoch",
        ),
        ("dropconnect_target", ["method.initial_temperature=0.25"], "method.initial_drop_rate=0.25"),
        (
            "soft_annealing",
            ["method.resample=epoch", "method.initial_drop_rate=0.1"],
            "method.schedule=cosine",
        ),
    ],
)
def test_run_identity_holds_only_the_keys_each_control_reads(
    name: str, ignored: list[str], read: str
) -> None:
    """A key the control does not read cannot change its run, so it does not make a new one in the store."""
    base = run_identity(compose_config(["output_dir=/tmp/unused", f"method={name}"]))
    assert run_identity(compose_config(["output_dir=/tmp/unused", f"method={name}", *ignored])) == base
    assert run_identity(compose_config(["output_dir=/tmp/unused", f"method={name}", read])) != base


# -- one real run per control: BN-recalibrated evaluation, reporting, kill and resume ------------------------


@pytest.mark.parametrize("name", CONTROLS)
def test_control_end_to_end_killed_mid_annealing_resumes_identically(
    name: str, make_cfg, tmp_path: Path
) -> None:
    overrides = (
        f"method={name}", "method.anneal_epochs=2", "sparsity=0.8", "train.max_steps_per_epoch=3",
        "parent.epochs=1", "data.num_train=256", "eval.bn_recalibration_batches=2",
    )  # fmt: skip
    reference = run(make_cfg(*overrides, run_dir="reference"))
    assert reference["status"] == "completed" and reference["epochs_at_target"] == 1
    rows = read_metrics(tmp_path / "reference")
    assert [r["at_target"] for r in rows] == [False, False, True]
    assert all(r["sparsity"] == pytest.approx(0.8, abs=1e-3) for r in rows)  # evaluation: the target
    # dies in epoch 2 of 3: still annealing
    assert_resumes_identically(make_cfg, tmp_path, overrides, reference, kill_epoch=2)
