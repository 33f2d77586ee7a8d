"""The ensemble combiner: probability averaging, the metrics against hand-computed values, the size curve,
grouping members from run directories written in the ``logits.pt`` contract format, and the command."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ssa_experiments.cli.ensemble import main as ensemble_main
from ssa_experiments.ensembles import combine as ens
from ssa_experiments.store.files import atomic_torch_save, atomic_write_json
from ssa_experiments.store.runs import link

SPLITS = ("test", "val", "corrupt/gaussian_noise/1", "corrupt/gaussian_noise/3", "corrupt/contrast/1")


def random_logits(m: int, n: int = 60, c: int = 5, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, generator=g) * 3 for _ in range(m)], torch.randint(0, c, (n,), generator=g)


def write_member(
    run_dir: Path,
    index: int,
    *,
    method: str = "one_shot",
    seed: int = 0,
    size: int = 4,
    status: str = "completed",
    n: int = 40,
    classes: int = 4,
    logits_seed: int | None = None,
    identity: bool = True,
    method_keys: dict | None = None,
) -> Path:
    """A member run directory in the contract format: ``summary.json`` (status, identity, config with
    ``ensemble.member``/``size``/``masks``) and ``logits.pt`` (float16 logits, int64 targets per split)."""
    g = torch.Generator().manual_seed(1000 * seed + index if logits_seed is None else logits_seed)
    targets = torch.arange(n) % classes  # the same targets for every member
    splits = {
        name: {"logits": (torch.randn(n, classes, generator=g) * 2).half(), "targets": targets.clone()}
        for name in SPLITS
    }
    atomic_torch_save(run_dir / "logits.pt", {"format": 1, "splits": splits})
    config = {
        "seed": seed,
        "sparsity": 0.5,
        "method": {"name": method, **(method_keys or {})},
        "ensemble": {"member": index, "size": size, "masks": "anti_random"},
        "output_dir": str(run_dir),
        "device": "cpu",
    }
    summary = {"status": status, "method": method, "seed": seed, "sparsity": 0.5, "config": config}
    if identity:
        summary["identity"] = {k: v for k, v in config.items() if k not in ("output_dir", "device")}
        summary["identity"]["ensemble"] = {"member": index, "masks": "anti_random"}
    atomic_write_json(run_dir / "summary.json", summary)
    return run_dir


def test_identical_members_equal_the_single_member() -> None:
    (logits,), targets = random_logits(1)
    single = ens.evaluate_split([logits], targets)["ensemble"]
    three = ens.evaluate_split([logits, logits.clone(), logits.clone()], targets)["ensemble"]
    assert three["acc"] == single["acc"]
    assert three["nll"] == pytest.approx(single["nll"], abs=1e-5)
    assert three["ece"] == pytest.approx(single["ece"], abs=1e-5)
    assert three["brier"] == pytest.approx(single["brier"], abs=1e-6)
    assert three["disagreement"] == 0.0
    assert three["kl"] == 0.0
    assert "disagreement" not in single  # one member: no pair to disagree


def test_averages_probabilities_not_logits() -> None:
    a = torch.tensor([[4.2, -10.0, 3.0]])
    b = torch.tensor([[-10.0, 4.0, 3.0]])
    assert int(((a + b) / 2).argmax()) == 2  # averaged logits would predict class 2
    target = torch.tensor([0])
    result = ens.evaluate_split([a, b], target)["ensemble"]
    assert result["acc"] == 100.0  # averaged probabilities predict class 0
    mean_p = (a.softmax(-1) + b.softmax(-1)) / 2
    assert result["nll"] == pytest.approx(-math.log(float(mean_p[0, 0])), rel=1e-5)


def hand_example() -> tuple[torch.Tensor, torch.Tensor]:
    """4 samples, 2 classes. Confidences 0.95 (right), 0.94 (wrong): bin 14 of 15; 0.75 (right): bin 11;
    0.55 (wrong): bin 8."""
    probs = torch.tensor([[0.95, 0.05], [0.94, 0.06], [0.25, 0.75], [0.55, 0.45]])
    return probs, torch.tensor([0, 1, 1, 1])


def test_ece_matches_hand_binning() -> None:
    probs, targets = hand_example()
    # bin 14: acc 1/2, conf 0.945, weight 2/4; bin 11: acc 1, conf 0.75; bin 8: acc 0, conf 0.55 (1/4 each)
    expected = 0.5 * abs(0.5 - 0.945) + 0.25 * abs(1 - 0.75) + 0.25 * abs(0 - 0.55)
    assert expected == pytest.approx(0.4225)
    assert ens.ece(probs, targets) == pytest.approx(expected, abs=1e-6)
    # through the combiner, from logits (softmax of log p gives p back)
    result = ens.evaluate_split([probs.log()], targets)["ensemble"]
    assert result["ece"] == pytest.approx(expected, abs=1e-5)
    assert result["acc"] == 50.0


def test_brier_matches_hand_computation() -> None:
    probs, targets = hand_example()
    per_sample = [2 * 0.05**2, 2 * 0.94**2, 2 * 0.25**2, 2 * 0.55**2]
    assert ens.brier(probs, targets) == pytest.approx(sum(per_sample) / 4, abs=1e-6)


def test_confidence_and_its_gap_to_accuracy_by_hand() -> None:
    """Two members, two samples, both of class 0; members given by their probabilities (logits = log p).

    sample 1: a (0.9, 0.1), b (0.5, 0.5) -> averaged (0.7, 0.3): predicts 0 (right), confidence 0.7
    sample 2: a (0.2, 0.8), b (0.6, 0.4) -> averaged (0.4, 0.6): predicts 1 (wrong), confidence 0.6
    ensemble: confidence (0.7 + 0.6) / 2 = 65 %, accuracy 50 %: gap +15 points (over-confident)
    a: confidences 0.9, 0.8 -> 85 %, predicts 0, 1 -> 50 %: gap +35
    b: confidences 0.5, 0.6 -> 55 %, predicts 0 (the tie's lower class), 0 -> 100 %: gap -45
    mean member: confidence 70 %, accuracy 75 %, gap -5: averaging lowered the confidence below the
    members' mean (65 < 70) while the accuracy fell more (50 < 75)."""
    a = torch.tensor([[0.9, 0.1], [0.2, 0.8]]).log()
    b = torch.tensor([[0.5, 0.5], [0.6, 0.4]]).log()
    result = ens.evaluate_split([a, b], torch.tensor([0, 0]))
    e, (ma, mb), mean = result["ensemble"], result["members"], result["mean_member"]
    assert e["acc"] == 50.0 and e["confidence"] == pytest.approx(65.0, abs=1e-4)
    assert e["confidence_gap"] == pytest.approx(15.0, abs=1e-4)
    assert (ma["confidence"], ma["acc"], ma["confidence_gap"]) == pytest.approx((85.0, 50.0, 35.0), abs=1e-4)
    assert (mb["confidence"], mb["acc"], mb["confidence_gap"]) == pytest.approx(
        (55.0, 100.0, -45.0), abs=1e-4
    )
    assert mean["confidence"] == pytest.approx(70.0, abs=1e-4)
    assert mean["confidence_gap"] == pytest.approx(-5.0, abs=1e-4)
    assert mean["confidence_gap"] == pytest.approx(mean["confidence"] - mean["acc"], abs=1e-9)


def test_disagreement_and_kl_of_two_members() -> None:
    a = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 0.0]])
    result = ens.evaluate_split([a, b], torch.tensor([0, 1, 0]))["ensemble"]
    assert result["disagreement"] == pytest.approx(1 / 3)
    pa, pb = a.softmax(-1), b.softmax(-1)
    kl_ab = (pa * (pa.log() - pb.log())).sum(-1).mean()
    kl_ba = (pb * (pb.log() - pa.log())).sum(-1).mean()
    assert result["kl"] == pytest.approx(float(kl_ab + kl_ba) / 2, rel=1e-5)


def test_size_curve_ends_at_mean_member_and_full_ensemble() -> None:
    logits, targets = random_logits(4)
    result = ens.evaluate_split(logits, targets, max_k=4)
    curve = result["curve"]
    assert [p["k"] for p in curve] == [1, 2, 3, 4]
    assert [p["n_subsets"] for p in curve] == [4, 6, 4, 1]
    for metric in ens.SCORES:
        assert curve[0][metric] == pytest.approx(result["mean_member"][metric], abs=1e-6)
        assert curve[-1][metric] == pytest.approx(result["ensemble"][metric], abs=1e-6)
    assert curve[-1]["acc_std"] == 0.0
    assert curve[-1]["disagreement"] == pytest.approx(result["ensemble"]["disagreement"])


def test_subsets_all_when_few_else_a_fixed_seeded_sample() -> None:
    assert len(ens.subsets(6, 3, max_subsets=50)) == 20
    drawn = ens.subsets(12, 6, max_subsets=30, seed=1)
    assert len(drawn) == len(set(drawn)) == 30
    assert drawn == ens.subsets(12, 6, max_subsets=30, seed=1)
    assert drawn != ens.subsets(12, 6, max_subsets=30, seed=2)
    assert len(ens.subsets(12, 1, max_subsets=5)) == 12  # k = 1 (and N - 1): every member, always


def test_members_grouped_into_one_ensemble_per_method_and_seed(tmp_path: Path) -> None:
    runs = tmp_path / "store" / "runs"
    for method in ("one_shot", "temperature_annealing"):
        for seed in (0, 1):
            for i in (2, 0, 1):  # written out of order
                write_member(runs / f"{method}-seed{seed}-m{i}", i, method=method, seed=seed, size=3)
    write_member(runs / "failed-m0", 0, method="iterative", status="failed")
    not_member = write_member(runs / "plain", 0, method="dense")
    summary = json.loads((not_member / "summary.json").read_text())
    summary["config"]["ensemble"]["member"] = None
    atomic_write_json(not_member / "summary.json", summary)

    members, skipped = ens.find_members([tmp_path / "store"])
    groups = ens.group_members(members)
    assert len(groups) == 4
    assert all([m.index for m in g.members] == [0, 1, 2] for g in groups)
    keys = {(g.key["method"]["name"], g.key["seed"]) for g in groups}
    assert keys == {(m, s) for m in ("one_shot", "temperature_annealing") for s in (0, 1)}
    assert all("member" not in g.key["ensemble"] for g in groups)
    assert sorted(r for _, r in skipped) == ["not an ensemble member", "status failed"]
    assert sorted(ens.settings(groups)) == ["one_shot"] * 2 + ["temperature_annealing"] * 2


def test_settings_label_only_keys_varying_within_a_method(tmp_path: Path) -> None:
    write_member(tmp_path / "one_shot", 0, size=1)
    for t in (0.25, 0.5):
        keys = {"initial_temperature": t, "anneal_epochs": 5}
        write_member(tmp_path / f"ta{t}", 0, size=1, method="temperature_annealing", method_keys=keys)
    groups = ens.group_members(ens.find_members([tmp_path])[0])
    assert sorted(ens.settings(groups)) == [
        "one_shot",
        "temperature_annealing method.initial_temperature=0.25",
        "temperature_annealing method.initial_temperature=0.5",
    ]


def test_grouping_ignores_where_members_ran_without_an_identity(tmp_path: Path) -> None:
    for i in range(2):
        write_member(tmp_path / f"m{i}", i, identity=False, size=2)
    groups = ens.group_members(ens.find_members([tmp_path])[0])
    assert len(groups) == 1 and len(groups[0].members) == 2  # output_dir differs, ensemble.size dropped


def test_report_has_every_split_and_corruption_means(tmp_path: Path) -> None:
    for i in range(3):
        write_member(tmp_path / f"m{i}", i, size=3)
    report = ens.combine([tmp_path])
    (e,) = report["ensembles"]
    assert e["n_members"] == 3 and e["complete"]
    names = list(e["splits"])
    assert names[:2] == ["test", "val"]
    assert {"corrupt/gaussian_noise/mean", "corrupt/contrast/mean", "corrupt/mean"} <= set(names)
    for metric in ("acc", "confidence", "confidence_gap"):
        corrupt = [e["splits"][n]["ensemble"][metric] for n in SPLITS[2:]]
        assert e["splits"]["corrupt/mean"]["ensemble"][metric] == pytest.approx(sum(corrupt) / 3), metric
    # the per-ensemble frame Table 2 and the figures read has them too, for the ensemble and its mean member
    from ssa_experiments.ensembles.report import ensemble_rows

    (row,) = ensemble_rows(report).to_dict("records")
    for prefix in ("", "corrupt_"):
        for metric in ("confidence", "confidence_gap"):
            split = e["splits"]["corrupt/mean" if prefix else "test"]
            assert row[f"{prefix}{metric}"] == pytest.approx(split["ensemble"][metric])
            assert row[f"{prefix}member_{metric}"] == pytest.approx(split["mean_member"][metric])
    # the members' accuracies are those of their own logits
    logits = ens.load_logits(tmp_path / "m1")["test"]
    assert e["splits"]["test"]["members"][1]["acc"] == pytest.approx(ens.accuracy(*logits))


def test_short_ensemble_is_flagged(tmp_path: Path) -> None:
    for i in range(2):
        write_member(tmp_path / f"m{i}", i, size=4)
    (e,) = ens.combine([tmp_path])["ensembles"]
    assert e["n_members"] == 2 and e["requested_size"] == 4 and not e["complete"]


def test_cli_writes_json_and_tidy_csv(tmp_path: Path) -> None:
    """A sweep laid out as the store makes it: job directories linking to stored member runs."""
    sweep, runs = tmp_path / "sweep", tmp_path / "store" / "runs"
    for i in range(4):
        target = write_member(runs / f"m{i}", i, size=4)
        job = sweep / f"ensemble.member={i}"
        link(job, target)
        (job / ".hydra").mkdir()
        (job / ".hydra" / "config.yaml").write_text(f"ensemble:\n  member: {i}\n  size: 4\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.ensemble", str(sweep), "--size", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((sweep / "ensemble.json").read_text())
    (e,) = report["ensembles"]
    assert e["n_members"] == 4 and e["complete"]
    assert [p["k"] for p in e["splits"]["test"]["curve"]] == [1, 2, 3]
    df = pd.read_csv(sweep / "ensemble.csv")
    assert list(df.columns) == ens.CSV_COLUMNS
    test = df[df["split"] == "test"]
    # acc, nll, ece, brier, confidence, confidence_gap, disagreement, kl
    assert sorted(test[test["kind"] == "ensemble"]["metric"]) == sorted([*ens.SCORES, *ens.DIVERSITY])
    assert len(ens.SCORES) == 6
    for kind in ("member", "mean_member", "curve"):
        assert {"confidence", "confidence_gap"} <= set(test[test["kind"] == kind]["metric"]), kind
    conf = df[(df["kind"] == "ensemble") & (df["metric"] == "confidence")].set_index("split")["value"]
    assert conf["corrupt/mean"] == pytest.approx(e["splits"]["corrupt/mean"]["ensemble"]["confidence"])
    assert conf["test"] == pytest.approx(e["splits"]["test"]["ensemble"]["confidence"])
    assert sorted(test[test["kind"] == "member"]["member"].unique()) == [0, 1, 2, 3]
    curve = test[(test["kind"] == "curve") & (test["metric"] == "acc")]
    assert list(curve["k"]) == [1, 2, 3] and list(curve["n_subsets"]) == [4, 6, 4]
    full = test[(test["kind"] == "ensemble") & (test["metric"] == "acc")]["value"].item()
    assert full == pytest.approx(e["splits"]["test"]["ensemble"]["acc"])


def test_cli_without_members_fails(tmp_path: Path) -> None:
    assert ensemble_main([str(tmp_path)]) == 1


def test_cli_names_splits_some_members_lack_and_the_remedy(tmp_path: Path, capsys) -> None:
    for i in range(2):
        write_member(tmp_path / f"m{i}", i, size=2)
    payload = torch.load(tmp_path / "m1" / "logits.pt", weights_only=True)
    del payload["splits"]["corrupt/contrast/1"]  # member 1 was not asked for it
    atomic_torch_save(tmp_path / "m1" / "logits.pt", payload)
    assert ensemble_main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "left out corrupt/contrast/1" in printed and "without retraining" in printed
    (e,) = json.loads((tmp_path / "out" / "ensemble.json").read_text())["ensembles"]
    assert e["splits_missing_in_some_members"] == ["corrupt/contrast/1"]
    assert "corrupt/contrast/1" not in e["splits"] and "corrupt/contrast/mean" not in e["splits"]
