"""Paired statistics: the seeded percentile bootstrap against exact enumeration and known coverage, and the
pairing of runs with the reference run of the same seed, sparsity and config."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from ssa_experiments.analysis.paired import Bootstrap, bootstrap_ci, cell, paired, pairs, summarize


def exact_quantile(diffs: list[float], p: float) -> float:
    """The p-quantile (inverse CDF: the smallest mean whose CDF reaches p) of the exact bootstrap distribution
    of the mean, from all n^n equally likely resamples."""
    means = sorted(float(np.mean(r)) for r in itertools.product(diffs, repeat=len(diffs)))
    return means[max(math.ceil(p * len(means)) - 1, 0)]


def test_the_exact_distribution_by_hand() -> None:
    """diffs 1, 2, 6: the 27 resamples have means 1 (1 of 27), 4/3 (3), 5/3 (3), 2 (1), 8/3 (3), 3 (6),
    10/3 (3), 13/3 (3), 14/3 (3), 6 (1); cumulated: 1, 4, 7, 8, 11, 17, 20, 23, 26, 27. The 25% quantile is
    5/3 (7/27 = 0.259 is the first to reach 0.25), the 75% one 13/3 (20/27 = 0.741 < 0.75 <= 23/27)."""
    assert exact_quantile([1.0, 2.0, 6.0], 0.25) == pytest.approx(5 / 3)
    assert exact_quantile([1.0, 2.0, 6.0], 0.75) == pytest.approx(13 / 3)
    assert exact_quantile([1.0, 2.0, 6.0], 0.10) == pytest.approx(4 / 3)  # 4/27 = 0.148 >= 0.1
    assert exact_quantile([1.0, 2.0, 6.0], 0.90) == pytest.approx(14 / 3)  # 23/27 = 0.85 < 0.9 <= 26/27


@pytest.mark.parametrize(
    ("diffs", "level"), [([1.0, 2.0, 6.0], 0.5), ([1.0, 2.0, 6.0], 0.8), ([0.0, 1.0, 3.0, 8.0], 0.95)]
)
def test_bootstrap_matches_the_exact_enumeration(diffs: list[float], level: float) -> None:
    """With n_boot = 200 000 the Monte-Carlo quantile is the exact one up to sampling error: the empirical CDF
    of 200 000 draws is within 4 standard errors, 4 * sqrt(p(1-p)/n_boot) <= 0.0045, of the exact CDF, so the
    estimated p-quantile lies between the exact (p - 0.0045)- and (p + 0.0045)-quantiles. That bracket is
    the tolerance; for 1, 2, 6 the bracket is one atom (no CDF step within 0.0045 of the targets), so the
    interval is exactly (5/3, 13/3) at 50% and (4/3, 14/3) at 80%. A wrong resampling scheme (fewer or more
    values per resample, quantiles of the values rather than of the means, the wrong tail) lands outside."""
    n_boot, slack = 200_000, 4 * math.sqrt(0.25 / 200_000)
    mean, lo, hi = bootstrap_ci(diffs, level=level, n_boot=n_boot, seed=1)
    assert mean == pytest.approx(np.mean(diffs))  # the sample mean, not the mean of the resamples
    for got, p in ((lo, (1 - level) / 2), (hi, (1 + level) / 2)):
        assert exact_quantile(diffs, p - slack) - 1e-12 <= got <= exact_quantile(diffs, p + slack) + 1e-12
    if diffs == [1.0, 2.0, 6.0]:
        assert (lo, hi) == pytest.approx((5 / 3, 13 / 3) if level == 0.5 else (4 / 3, 14 / 3))


def test_constant_diffs_one_seed_and_no_seed() -> None:
    assert bootstrap_ci([0.7, 0.7, 0.7, 0.7]) == (0.7, 0.7, 0.7)  # zero width: every resample is the same
    mean, lo, hi = bootstrap_ci([1.5])
    assert mean == 1.5 and math.isnan(lo) and math.isnan(hi)  # one seed: no interval, not a zero-width one
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])


def test_the_bootstrap_is_reproducible_by_its_seed() -> None:
    diffs = list(np.random.default_rng(7).normal(size=15))  # many distinct resample means: seeds differ
    a, b, c = bootstrap_ci(diffs, seed=0), bootstrap_ci(diffs, seed=0), bootstrap_ci(diffs, seed=1)
    assert a == b
    assert a[0] == c[0] and (a[1], a[2]) != (c[1], c[2])
    assert Bootstrap(seed=1).interval([*diffs, float("nan")]) == c  # missing values left out


def test_coverage_of_the_95_percent_interval() -> None:
    """400 samples of n = 20 draws from N(1, 2²): how often the 95% interval contains the true mean 1.

    The percentile bootstrap of a mean is about mean ± 1.96 · sd·sqrt((n-1)/n)/sqrt(n), with no t correction,
    so it undercovers at small n: P(|t_19| < 1.96·sqrt(19/20)) ≈ 0.93 (at n = 10 it would be ≈ 0.905, too
    close to a 0.90 bound). 400 repetitions have a standard error of sqrt(0.93·0.07/400) ≈ 0.013, so
    [0.89, 0.97] is about ± 3 standard errors around the expected 0.93; a 50% or a 99.9% interval, or
    quantiles of the values instead of the means, falls far outside."""
    rng = np.random.default_rng(2024)
    hits = 0
    for rep in range(400):
        _, lo, hi = bootstrap_ci(rng.normal(1.0, 2.0, size=20), n_boot=4000, seed=rep)
        hits += lo <= 1.0 <= hi
    assert 0.89 <= hits / 400 <= 0.97


def run(method: str, seed: int, acc: float, sparsity: float = 0.9, **config: object) -> dict:
    """One completed run as ``collect`` reads it: flat fields and the nested config."""
    keys = {k: v for k, v in config.items() if k not in ("lr", "criterion")}
    return {
        "status": "completed", "method": method, "target_sparsity": 0.0 if method == "dense" else sparsity,
        "seed": seed, "test_acc": acc,
        "config": {
            "method": {"name": method, **keys}, "seed": seed, "sparsity": sparsity, "output_dir": f"o{seed}",
            "lr": {"name": config.get("lr", "one_cycle")},
            "pruning": {"criterion": config.get("criterion", "magnitude")},
        },
    }  # fmt: skip


def frame() -> pd.DataFrame:
    """Temperature annealing (τ0 = 0.5) and random annealing at 90% over seeds 0-2; one-shot at seeds 0 and
    1 only, plus a one-shot run of seed 2 with another LR schedule (not a pair: another config)."""
    rows = [
        run("one_shot", 0, 80.0), run("one_shot", 1, 82.0), run("one_shot", 2, 50.0, lr="constant"),
        run("temperature_annealing", 0, 81.0, initial_temperature=0.5),  # +1
        run("temperature_annealing", 1, 85.0, initial_temperature=0.5),  # +3
        run("temperature_annealing", 2, 99.0, initial_temperature=0.5),  # no one-shot of seed 2: skipped
        run("random_annealing", 0, 80.0), run("random_annealing", 1, 81.0), run("random_annealing", 2, 70.0),
        run("dense", 0, 90.0), run("dense", 1, 91.0), run("dense", 2, 92.0),
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_pairs_share_seed_sparsity_and_config() -> None:
    out = paired(frame()).set_index("setting")
    assert list(out.index) == ["random_annealing", "temperature_annealing"]  # aggregate's order, no dense
    ta = out.loc["temperature_annealing"]
    assert (ta["n_pairs"], ta["mean_diff"], ta["wins"], ta["ties"]) == (2, 2.0, 2, 0)
    assert (ta["ci_lo"], ta["ci_hi"]) == pytest.approx((1.0, 3.0))  # n = 2: the resample means 1, 2, 3
    ra = out.loc["random_annealing"]
    assert (ra["n_pairs"], ra["mean_diff"], ra["wins"], ra["ties"]) == (2, -0.5, 0, 1)  # 0 (tie), -1
    # the matched reference setting: the LR schedule is swept among the one-shot runs, so it names them
    assert ta["reference"] == "one_shot lr.name=one_cycle" and ta["target_sparsity"] == 0.9
    one = pairs(frame().assign(setting=frame()["method"]))
    assert set(one["seed"]) == {0, 1} and "dense" not in set(one["setting"])  # dense: no pair at 90%


def test_against_dense_every_sparsity_pairs_with_the_dense_run_of_its_seed() -> None:
    df = pd.concat([frame(), pd.DataFrame([run("one_shot", 0, 60.0, sparsity=0.5, criterion="random")])])
    out = paired(df.reset_index(drop=True), reference="dense").set_index(["setting", "target_sparsity"])
    # one-shot at 50% with another pruning criterion still pairs: dense reads no pruning.* key
    random = "one_shot lr.name=one_cycle pruning.criterion=random"
    assert out.loc[(random, 0.5), "mean_diff"] == -30.0
    assert (out.loc[(random, 0.5), "n_pairs"], out.loc[(random, 0.5), "reference"]) == (1, "dense")
    # seed 2's one-shot has another LR schedule than dense: no pair
    assert ("one_shot lr.name=constant pruning.criterion=magnitude", 0.9) not in out.index
    assert out.loc[("one_shot lr.name=one_cycle pruning.criterion=magnitude", 0.9), "n_pairs"] == 2
    ta = out.loc[("temperature_annealing", 0.9)]
    assert (ta["n_pairs"], ta["mean_diff"], ta["wins"]) == (3, (-9 - 6 + 7) / 3, 1)


def test_a_reference_with_several_settings_is_refused_and_one_setting_can_be_named() -> None:
    df = frame()
    more = pd.DataFrame([run("temperature_annealing", s, 70.0, initial_temperature=1.0) for s in range(3)])
    df = pd.concat([df, more], ignore_index=True)
    with pytest.raises(SystemExit, match="several settings"):
        paired(df, reference="temperature_annealing")
    label = "temperature_annealing method.initial_temperature=0.5"
    out = paired(df, reference=label).set_index("setting")
    other = out.loc["temperature_annealing method.initial_temperature=1.0"]
    assert (other["n_pairs"], other["mean_diff"], other["wins"]) == (3, (-11 - 15 - 29) / 3, 0)
    assert label not in out.index  # never compared with itself


def test_a_reference_named_by_its_keys_pairs_other_criteria_on_the_keys_given() -> None:
    """Other criteria against one-shot magnitude: the reference is a method with key=value words, a pair the
    same seed, sparsity and ``match`` keys (here the LR schedule); without ``match`` a SNIP run has no pair
    (its criterion is part of the config it shares)."""
    df = pd.concat([frame(), pd.DataFrame([
        run("one_shot", 0, 83.0, criterion="snip"), run("one_shot", 1, 79.0, criterion="snip"),  # +3, -3
        run("one_shot", 2, 55.0, criterion="snip", lr="constant"),  # pairs with seed 2's constant-LR run: +5
    ])], ignore_index=True)  # fmt: skip
    ref = "one_shot pruning.criterion=magnitude"
    out = paired(df, reference=ref, match=["lr.name"]).set_index("setting")
    snip = out.loc["one_shot lr.name=one_cycle pruning.criterion=snip"]
    assert (snip["n_pairs"], snip["mean_diff"], snip["wins"]) == (2, 0.0, 1)
    constant = out.loc["one_shot lr.name=constant pruning.criterion=snip"]
    assert (constant["n_pairs"], constant["mean_diff"], constant["reference"]) == (
        1, 5.0, "one_shot lr.name=constant pruning.criterion=magnitude",
    )  # fmt: skip
    assert out.loc["temperature_annealing", "n_pairs"] == 2 and not any("magnitude" in i for i in out.index)
    assert paired(df, reference=ref).set_index("setting").index.str.contains("snip").sum() == 0
    assert paired(df, reference="one_shot pruning.criterion=MAGNITUDE", match=["lr.name"]).equals(
        paired(df, reference=ref, match=["lr.name"])
    )  # values compare as text, whatever the case


def test_summary_cells() -> None:
    p = pd.DataFrame({"setting": ["a", "a", "b"], "target_sparsity": [0.9] * 3, "diff": [1.0, 0.0, -2.0],
                      "reference": ["one_shot"] * 3})  # fmt: skip
    s = summarize(p).set_index("setting")
    assert cell(s.loc["a"]) == "+0.50 [+0.00, +1.00] 1/2 (1 tie)"
    assert cell(s.loc["b"]) == "-2.00 [1 seed: no CI] 0/1"
