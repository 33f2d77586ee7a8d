"""Annealing and iterative schedules against hand-computed values."""

from __future__ import annotations

import itertools
import math

import pytest

from ssa_experiments.pruning.sparsity_schedules import anneal_factor, anneal_progress, iterative_sparsity


@pytest.mark.parametrize("schedule", ["linear", "cosine", "exponential", "cubic"])
def test_anneal_factor_endpoints_and_monotone(schedule: str) -> None:
    assert anneal_factor(0.0, schedule) == pytest.approx(1.0)
    assert anneal_factor(1.0, schedule) == pytest.approx(0.0, abs=1e-12)
    values = [anneal_factor(i / 20, schedule) for i in range(21)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert anneal_factor(1.7, schedule) == anneal_factor(1.0, schedule)  # clamped past the end


def test_anneal_factor_hand_values() -> None:
    assert anneal_factor(0.25, "linear") == pytest.approx(0.75)
    assert anneal_factor(0.5, "cosine") == pytest.approx(0.5)
    assert anneal_factor(0.25, "cosine") == pytest.approx((1 + math.cos(math.pi / 4)) / 2)  # 0.853553
    k = 5.0
    assert anneal_factor(0.5, "exponential", k) == pytest.approx(
        (math.exp(-2.5) - math.exp(-5)) / (1 - math.exp(-5))
    )  # 0.0766
    with pytest.raises(ValueError):
        anneal_factor(0.5, "bogus")


def test_anneal_progress() -> None:
    assert anneal_progress(2, 5, 10, 4, "epoch") == 0.5
    assert anneal_progress(2, 5, 10, 4, "step") == pytest.approx(2.5 / 4)


def test_iterative_linear_hand_values() -> None:
    # epoch 0 dense, the target from epoch n = 4 on (the same epoch annealing reaches it)
    assert [iterative_sparsity(e, 4, 0.8, "linear") for e in range(6)] == pytest.approx(
        [0.0, 0.2, 0.4, 0.6, 0.8, 0.8]
    )


def test_iterative_polynomial_hand_values() -> None:
    # Zhu & Gupta: s_t = s_f (1 - (1 - t/n)^3), t = epoch
    expected = [0.0, 0.8 * (1 - 0.75**3), 0.8 * (1 - 0.5**3), 0.8 * (1 - 0.25**3), 0.8, 0.8]
    assert [iterative_sparsity(e, 4, 0.8, "polynomial") for e in range(6)] == pytest.approx(expected)
    assert expected[1:4] == pytest.approx([0.4625, 0.7, 0.7875])
