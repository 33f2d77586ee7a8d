"""MIMO (Havasi et al. 2021): the wrapper's two forward passes against hand computations on its base, the
training batch's independent examples per head, the loss summed over heads, and the identity of plain
models left unchanged."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ssa_experiments.config.schema import ConfigError, ModelConfig
from ssa_experiments.config.validate import validate
from ssa_experiments.models import MIMO, build_model
from ssa_experiments.training.loop import Precision, train_epoch


def mimo(heads: int = 3, repetitions: int = 2) -> MIMO:
    torch.manual_seed(0)
    cfg = ModelConfig(
        arch="small_cnn", width=4, depth=1, mimo_heads=heads, mimo_batch_repetitions=repetitions
    )
    model = build_model(cfg, 2, 8, 5)
    assert isinstance(model, MIMO)
    return model


def test_base_takes_m_inputs_and_gives_m_heads() -> None:
    model = mimo()
    first = next(m for m in model.base.modules() if isinstance(m, nn.Conv2d))
    last = [m for m in model.base.modules() if isinstance(m, nn.Linear)][-1]
    assert first.in_channels == 6 and last.out_features == 15


def test_prediction_is_the_heads_mean_probability_of_the_replicated_input() -> None:
    model = mimo().eval()
    x = torch.randn(4, 2, 8, 8)
    heads = model.base(torch.cat([x, x, x], dim=1)).view(4, 3, 5)
    mean_p = torch.softmax(heads, -1).mean(1)  # by hand: head m's probabilities, averaged
    out = model(x)
    assert torch.allclose(torch.softmax(out, -1), mean_p, atol=1e-6)
    assert torch.allclose(out.exp().sum(-1), torch.ones(4), atol=1e-6)  # log-probabilities already


def test_training_batch_gives_each_head_its_own_shuffle_of_the_repeated_batch() -> None:
    model = mimo(heads=3, repetitions=2)
    x = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 2, 8, 8).contiguous()  # image i is all i
    y = torch.arange(5)
    torch.manual_seed(1)
    inputs, targets = model.training_batch(x, y)
    assert inputs.shape == (10, 6, 8, 8) and targets.shape == (30,)
    per_head = targets.view(10, 3)
    for m in range(3):
        shown = inputs[:, 2 * m, 0, 0]  # the value of the image head m sees, per sample
        assert torch.equal(shown.long(), per_head[:, m])  # its target is that image's
        assert sorted(per_head[:, m].tolist()) == sorted([*range(5), *range(5)])  # every example, r times
    assert not torch.equal(per_head[:, 0], per_head[:, 1])  # independent shuffles


def test_training_loss_is_summed_over_heads() -> None:
    model = mimo(heads=3, repetitions=1)
    x, y = torch.randn(6, 2, 8, 8), torch.randint(0, 5, (6,))

    class One:
        def __len__(self) -> int:
            return 1

        def epoch(self, epoch: int):
            return iter([(x, y)])

    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    torch.manual_seed(3)
    metrics, _ = train_epoch(
        model, One(), opt, nn.CrossEntropyLoss(), 0, 0, lambda s: 0.0, Precision(torch.device("cpu"))
    )
    torch.manual_seed(3)
    inputs, targets = model.training_batch(x, y)
    by_hand = 3 * nn.functional.cross_entropy(model.train()(inputs), targets).item()
    assert metrics["train_loss"] == pytest.approx(by_hand, rel=1e-6)


def test_plain_models_keep_their_identity_and_parent_key(make_cfg) -> None:
    from ssa_experiments.config.identity import run_identity
    from ssa_experiments.training.parent import parent_key

    cfg = make_cfg("method=one_shot")
    assert "mimo_heads" not in run_identity(cfg)["model"] and "mimo_heads" not in parent_key(cfg)["model"]
    m = make_cfg("method=dense", "model.mimo_heads=3")
    assert run_identity(m)["model"]["mimo_heads"] == 3 and parent_key(m)["model"]["mimo_heads"] == 3


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["model.mimo_heads=0"], "model.mimo_heads"),
        (["model.mimo_batch_repetitions=2"], "model.mimo_batch_repetitions"),
        (["model.mimo_heads=2", "model.mimo_batch_repetitions=0"], "model.mimo_batch_repetitions"),
    ],
)
def test_bad_mimo_values_name_their_field(make_cfg, overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("method=dense", *overrides))
    assert err.value.field_name == field


def test_log_of_mean_probability_is_stable_for_confident_heads() -> None:
    model = mimo(heads=2, repetitions=1).eval()
    with torch.no_grad():
        last = [m for m in model.base.modules() if isinstance(m, nn.Linear)][-1]
        last.bias.copy_(torch.tensor([1000.0, 0, 0, 0, 0, 0, 1000.0, 0, 0, 0]))
    out = model(torch.randn(2, 2, 8, 8))
    assert torch.isfinite(out).all()
    assert torch.allclose(out[:, 0], torch.full((2,), math.log(0.5)), atol=1e-4)  # half the mass each
