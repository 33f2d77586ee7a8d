"""Ensemble members as ordinary runs (issue 14, the training side): member masks from (parent, index, seed),
their own fine-tuning seeds and parents, the ``logits.pt`` contract the combiner reads, and non-member runs
left exactly as they were."""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import compose_config

from ssa_experiments.config.identity import run_identity
from ssa_experiments.config.schema import ConfigError, MethodConfig, ModelConfig, PruningConfig
from ssa_experiments.config.seeds import derived_seed, finetune_seed, parent_seed
from ssa_experiments.config.validate import validate
from ssa_experiments.ensembles.members import with_parent_seed
from ssa_experiments.ensembles.targets import MemberMasks, member_scores
from ssa_experiments.models import build_model
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.store.files import LOGITS, read_summary
from ssa_experiments.store.runs import run_key
from ssa_experiments.training.parent import parent_key
from ssa_experiments.training.run import run

REPO = Path(__file__).resolve().parents[2]
MEMBER = ["ensemble.size=2", "ensemble.corruptions=[gaussian_noise,contrast]", "ensemble.severities=[1,3]"]


def parent_model(seed: int = 0) -> torch.nn.Module:
    """A small CNN with 1368 prunable weights (even: a 50% target splits them exactly in two)."""
    torch.manual_seed(seed)
    return build_model(ModelConfig(arch="small_cnn", width=8, depth=2), 3, 8, 4)


def eval_masks(
    model: torch.nn.Module,
    spec: MemberMasks | None,
    method: str = "one_shot",
    sparsity: float = 0.5,
    scope: str = "global",
) -> dict[str, torch.Tensor]:
    """The target (evaluation) masks ``method`` reaches on a copy of ``model`` for member ``spec``."""
    net = copy.deepcopy(model)
    scorer = None if spec is None else functools.partial(member_scores, spec=spec)
    m = make_method(
        MethodConfig(name=method, anneal_epochs=2), PruningConfig(scope=scope), sparsity, 123, scorer
    )
    m.start(net)
    for epoch in range(3):
        m.begin_epoch(epoch, 1)
    assert m.at_target
    return {n: mask.eval_mask.bool().clone() for n, mask in m.masks.items()}


# ---- masks ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("pair", [0, 1, 2])
def test_anti_random_pairs_are_complements_at_half_sparsity(pair: int, scope: str) -> None:
    model = parent_model()
    even = eval_masks(model, MemberMasks("anti_random", 2 * pair, seed=7), scope=scope)
    odd = eval_masks(model, MemberMasks("anti_random", 2 * pair + 1, seed=7), scope=scope)
    for name in even:
        assert torch.equal(even[name], ~odd[name]), name  # each prunable weight in exactly one of the two
    kept = sum(int(k.sum()) for k in even.values())
    assert kept == sum(k.numel() for k in even.values()) // 2


def test_complements_hold_with_many_tied_weights() -> None:
    """Ranks, not values, choose anti-random targets: a parent full of equal weights changes nothing."""
    model = parent_model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    a, b = (eval_masks(model, MemberMasks("anti_random", i, seed=0)) for i in (0, 1))
    assert all(torch.equal(a[n], ~b[n]) for n in a)


@pytest.mark.parametrize("kind", ["anti_random", "random", "magnitude_random"])
def test_member_masks_are_reproducible_and_differ_between_members(kind: str) -> None:
    model = parent_model()
    masks = [eval_masks(model, MemberMasks(kind, i, seed=3, noise=0.5)) for i in range(4)]
    again = [eval_masks(parent_model(), MemberMasks(kind, i, seed=3, noise=0.5)) for i in range(4)]
    for first, second in zip(masks, again, strict=True):  # rebuilt from (parent, index, seed) alone
        assert all(torch.equal(first[n], second[n]) for n in first)
    for i in range(4):
        for j in range(i + 1, 4):
            assert any(not torch.equal(masks[i][n], masks[j][n]) for n in masks[i]), (i, j)
    other_seed = eval_masks(model, MemberMasks(kind, 0, seed=4, noise=0.5))
    assert any(not torch.equal(masks[0][n], other_seed[n]) for n in other_seed)


def test_magnitude_random_stays_near_magnitude_and_noise_zero_is_magnitude() -> None:
    model = parent_model()
    magnitude = eval_masks(model, None)
    assert all(
        torch.equal(magnitude[n], m[n])
        for m in [eval_masks(model, MemberMasks("magnitude_random", 5, seed=0, noise=0.0))]
        for n in m
    )
    noisy = eval_masks(model, MemberMasks("magnitude_random", 0, seed=0, noise=0.5))
    shared = sum(int((noisy[n] & magnitude[n]).sum()) for n in noisy) / sum(
        int(k.sum()) for k in noisy.values()
    )
    assert 0.6 < shared < 0.98  # a perturbed magnitude target: mostly, not entirely, the magnitude one


@pytest.mark.parametrize("method", ["iterative", "temperature_annealing", "random_annealing"])
def test_every_method_reaches_the_members_target(method: str) -> None:
    """The member spec only replaces the scores, so gradual methods end on one-shot's member target."""
    model = parent_model()
    spec = MemberMasks("anti_random", 1, seed=5)
    target, reached = eval_masks(model, spec), eval_masks(model, spec, method=method)
    assert all(torch.equal(target[n], reached[n]) for n in target)


def test_member_scores_are_a_pure_function_of_weights_and_spec() -> None:
    weights = {n: p.detach() for n, p in parent_model().named_parameters() if p.dim() > 1}
    spec = MemberMasks("random", 2, seed=1)
    a, b = member_scores(weights, spec), member_scores(weights, spec)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert all(a[n].shape == w.shape for n, w in weights.items())


# ---- config: seeds, identity, validation ------------------------------------------------------------------


def test_non_member_identity_and_seeds_are_unchanged() -> None:
    plain = compose_config(["output_dir=x"])
    other = compose_config(["output_dir=x", "ensemble.masks=random", "ensemble.size=3", "ensemble.noise=2"])
    assert "ensemble" not in run_identity(plain)
    assert run_identity(plain) == run_identity(other)  # no ensemble key reaches a non-member's identity
    assert parent_seed(plain) == finetune_seed(plain) == plain.seed
    assert with_parent_seed(plain) is plain


def test_member_identity_keeps_what_changes_its_numbers_only() -> None:
    def ident(*overrides: str) -> dict:
        return run_identity(compose_config(["output_dir=x", "sparsity=0.5", *overrides]))

    member = ident("ensemble.member=1")
    assert member["ensemble"]["member"] == 1 and "size" not in member["ensemble"]
    assert "noise" not in member["ensemble"]  # anti_random does not read it
    assert ident("ensemble.member=1", "ensemble.size=4") == member  # size only validates
    assert ident("ensemble.member=2") != member
    assert ident("ensemble.member=1", "ensemble.masks=magnitude_random")["ensemble"]["noise"] == 0.5
    dense = ident("ensemble.member=1", "method=dense", "ensemble.independent_parents=true")
    assert "masks" not in dense["ensemble"] and dense["ensemble"]["independent_parents"] is True


def test_member_seeds_are_derived_and_distinct() -> None:
    cfgs = [compose_config(["output_dir=x", "seed=4", f"ensemble.member={i}"]) for i in range(6)]
    tune = [finetune_seed(c) for c in cfgs]
    assert len(set(tune)) == 6 and 4 not in tune
    assert all(parent_seed(c) == 4 for c in cfgs)  # one shared parent: Prune and Tune
    assert tune[2] == derived_seed(4, 2, "finetune")
    own = [
        compose_config(
            ["output_dir=x", "seed=4", f"ensemble.member={i}", "ensemble.independent_parents=true"]
        )
        for i in range(6)
    ]
    assert len({parent_seed(c) for c in own}) == 6


def test_independent_parents_enter_the_parent_key_only_through_the_seed() -> None:
    plain = compose_config(["output_dir=x", "seed=4"])
    member = compose_config(
        ["output_dir=x", "seed=4", "ensemble.member=3", "ensemble.independent_parents=true"]
    )
    shared = compose_config(["output_dir=x", "seed=4", "ensemble.member=3"])
    assert parent_key(with_parent_seed(member)) == {**parent_key(plain), "seed": derived_seed(4, 3, "parent")}
    assert parent_key(with_parent_seed(shared)) == parent_key(plain)
    assert member.seed == 4  # the run's own config is not changed


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["ensemble.member=6"], "ensemble.member"),
        (["ensemble.member=-1"], "ensemble.member"),
        (["ensemble.size=5"], "ensemble.size"),  # anti_random pairs
        (["ensemble.size=0", "ensemble.masks=random"], "ensemble.size"),
        (["ensemble.masks=magnitude"], "ensemble.masks"),
        (["ensemble.noise=-0.1"], "ensemble.noise"),
        (["ensemble.corruptions=[fog]"], "ensemble.corruptions"),
        (["ensemble.severities=[0]"], "ensemble.severities"),
    ],
)
def test_bad_ensemble_values_name_their_field(overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(compose_config(["output_dir=x", *overrides]))
    assert err.value.field_name == field
    validate(
        compose_config(["output_dir=x", "ensemble.size=5", "ensemble.masks=random", "ensemble.member=4"])
    )


# ---- runs -------------------------------------------------------------------------------------------------


def test_member_run_writes_logits_in_the_contract_format(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(
        "method=temperature_annealing", "method.anneal_epochs=1", "sparsity=0.5", "ensemble.member=1", *MEMBER
    )
    summary = run(cfg)
    out = tmp_path / "run"
    payload = torch.load(out / LOGITS, weights_only=True)
    assert payload["format"] == 1
    names = ["test", "val"] + [f"corrupt/{c}/{s}" for c in ("gaussian_noise", "contrast") for s in (1, 3)]
    assert list(payload["splits"]) == names
    n_test, classes = 128, 4  # data=synthetic
    for name, split in payload["splits"].items():
        logits, targets = split["logits"], split["targets"]
        assert logits.dtype == torch.float16 and targets.dtype == torch.int64, name
        assert logits.shape == (len(targets), classes) and torch.isfinite(logits).all(), name
        if name.startswith(("test", "corrupt/")):
            assert len(targets) == n_test and torch.equal(targets, payload["splits"]["test"]["targets"])
    test = payload["splits"]["test"]
    acc = 100.0 * float((test["logits"].float().argmax(1) == test["targets"]).float().mean())
    assert acc == pytest.approx(summary["test_acc"], abs=100.0 / n_test)  # float16 may flip a near tie
    on_disk = read_summary(out)
    assert on_disk["logits_file"] == LOGITS and on_disk["ensemble"]["member"] == 1
    assert set(on_disk["corrupt_acc"]) == {"gaussian_noise", "contrast"}
    assert set(on_disk["corrupt_acc"]["contrast"]) == {"1", "3"}
    means = on_disk["corrupt_acc_by_corruption"]
    assert on_disk["corrupt_acc_mean"] == pytest.approx(sum(means.values()) / 2)
    assert not list(out.glob(".logits.pt.*"))  # written atomically: no temp file left


def test_members_share_the_parent_and_differ_in_tuning(make_cfg, tmp_path: Path) -> None:
    summaries = [
        run(make_cfg("method=one_shot", "sparsity=0.5", f"ensemble.member={i}", *MEMBER, run_dir=f"m{i}"))
        for i in (0, 1)
    ]
    plain = run(make_cfg("method=one_shot", "sparsity=0.5", run_dir="plain"))
    assert [s["parent"]["source"] for s in summaries] == ["trained", "cache"]
    assert summaries[0]["parent"]["hash"] == summaries[1]["parent"]["hash"] == plain["parent"]["hash"]
    seeds = [s["ensemble"]["finetune_seed"] for s in summaries]
    assert seeds[0] != seeds[1] and all(s["seed"] == 0 for s in summaries)
    assert "ensemble" not in plain and not (tmp_path / "plain" / LOGITS).exists()  # non-members: unchanged
    models = [torch.load(tmp_path / f"m{i}" / "model.pt", weights_only=True) for i in (0, 1)]
    prunable = [k for k in models[0] if k.endswith("weight") and models[0][k].dim() > 1][:-1]  # not the head
    for k in prunable:  # complementary targets: no weight is non-zero in both children
        assert not bool(((models[0][k] != 0) & (models[1][k] != 0)).any()), k


def test_independent_parents_train_one_parent_per_member(make_cfg) -> None:
    hashes = {
        run(make_cfg("method=dense", "ensemble.independent_parents=true", f"ensemble.member={i}", *MEMBER,
                     run_dir=f"d{i}"))["parent"]["hash"]
        for i in (0, 1)
    }  # fmt: skip
    assert len(hashes) == 2


def test_a_non_member_run_has_the_same_numbers_whatever_the_ensemble_keys(make_cfg, tmp_path: Path) -> None:
    base = ["method=temperature_annealing", "method.anneal_epochs=1", "sparsity=0.9"]
    a = run(make_cfg(*base, run_dir="a"))
    b = run(make_cfg(*base, "ensemble.masks=random", "ensemble.size=3", "ensemble.noise=1", run_dir="b"))
    assert run_key(a["identity"]) == run_key(b["identity"])
    for key in ("test_acc", "val_acc", "test_loss", "steps", "lr_trace_sha256"):
        assert a[key] == b[key], key


# ---- end to end: a Hydra sweep of members, then the combiner ----------------------------------------------


@pytest.mark.slow
def test_four_member_ensemble_through_the_sweep_and_the_combiner(tmp_path: Path) -> None:
    """4 annealed children of one parent, swept by Hydra, then ``python -m ssa_experiments.cli.ensemble``."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            sys.executable, "-m", "ssa_experiments.cli.train", "-m", "data=synthetic", "model.width=8",
            "parent.epochs=2", "train.finetune_epochs=2", "train.batch_size=64", "device=cpu",
            "method=temperature_annealing", "method.anneal_epochs=1", "sparsity=0.5", "ensemble.size=4",
            "ensemble.member=0,1,2,3", "ensemble.corruptions=[gaussian_noise]", "ensemble.severities=[2]",
            f"hydra.sweep.dir={sweep}", f"parent.cache_dir={tmp_path / 'parents'}",
            f"store.root={tmp_path / 'store'}", "logger.progress=none",
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/run/summary.json"))]
    assert sorted(s["ensemble"]["member"] for s in summaries) == [0, 1, 2, 3]
    assert sorted(s["parent"]["source"] for s in summaries) == ["cache", "cache", "cache", "trained"]
    assert all((p.parent / LOGITS).exists() for p in sweep.glob("*/run/summary.json"))
    out = tmp_path / "combined"
    combined = subprocess.run(
        [sys.executable, "-m", "ssa_experiments.cli.ensemble", str(sweep), "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert combined.returncode == 0, combined.stderr[-3000:]
    report = json.loads((out / "ensemble.json").read_text())  # its own tests check its numbers
    (ensemble,) = report["ensembles"]  # the four members form one ensemble
    assert ensemble["n_members"] == 4 and ensemble["complete"]
    assert {"test", "val", "corrupt/gaussian_noise/2"} <= set(ensemble["splits"])
    assert (out / "ensemble.csv").exists()


# ---- Table 2 and the ensemble-size figure from a combiner report -------------------------------------------


def fake_member(root: Path, method: str, seed: int, member: int, independent: bool) -> None:
    """A completed member run as the combiner finds it: summary (with FLOPs) and logits.pt (random, but
    better than chance, so the metrics are not degenerate)."""
    g = torch.Generator().manual_seed(1000 * seed + 10 * member + len(method))
    targets = torch.arange(60) % 3
    splits = {}
    for name in ("test", "val", "corrupt/contrast/1"):
        logits = torch.randn(60, 3, generator=g) + 2.0 * torch.nn.functional.one_hot(targets, 3)
        splits[name] = {"logits": logits.half(), "targets": targets}
    ensemble = {"member": member, "size": 4, "masks": "anti_random", "independent_parents": independent}
    config = {
        "method": {"name": method}, "seed": seed, "sparsity": 0.5, "data": {"name": "synthetic"},
        "model": {"arch": "small_cnn"}, "ensemble": ensemble,
    }  # fmt: skip
    run_dir = root / f"{method}-{seed}-{member}"
    run_dir.mkdir(parents=True)
    torch.save({"format": 1, "splits": splits}, run_dir / LOGITS)
    parent_id = f"{seed}-{member}" if independent else f"{seed}"
    summary = {
        "status": "completed", "method": method, "seed": seed, "target_sparsity": 0.5, "test_acc": 50.0,
        "config": config, "identity": config,
        "flops": {"parent": 100.0, "finetune": 10.0 if method == "dense" else 5.0, "parent_id": parent_id},
    }  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_table2_and_ensemble_size_from_a_combiner_report(tmp_path: Path) -> None:
    from ssa_experiments.cli.figures import main as figures
    from ssa_experiments.ensembles.combine import combine

    for method, independent in (("dense", True), ("one_shot", False), ("temperature_annealing", False)):
        for seed in (0, 1):
            for member in range(4):
                fake_member(tmp_path / "sweep", method, seed, member, independent)
    report = tmp_path / "ensemble.json"
    report.write_text(json.dumps(combine([tmp_path / "sweep"], max_k=0)))
    out = tmp_path / "results"
    figures(["table2", "--runs", str(report), "--out", str(out)])
    md = (out / "table2.md").read_text()
    for row in ("Dense ensemble", "Prune and Tune", "Prune and Tune + temperature annealing"):
        assert f"| {row} |" in md
    assert "| FreeTickets | paper's numbers, not rerun" in md and "MIMO" in (out / "table2.tex").read_text()
    numbers = pd.read_csv(out / "table2.csv")
    cost = numbers[numbers["metric"] == "training FLOPs / dense ensemble"].set_index("setting")["mean"]
    # dense: 4 parents + 4 x 10; Prune and Tune: one parent + 4 x 5
    assert cost["Dense ensemble"] == pytest.approx(1.0)
    assert cost["Prune and Tune"] == pytest.approx((100 + 4 * 5) / (4 * 100 + 4 * 10))
    assert set(numbers["n"]) == {2}  # two seeds, one ensemble each
    assert "**" in md  # best per column in bold
    # redrawn from the committed CSVs alone
    figures(["ensemble_size", "--runs", str(out / "ensembles.csv"), "--out", str(out)])
    assert (out / "ensemble_size.png").stat().st_size > 0
    curve = pd.read_csv(out / "ensemble_curve.csv")
    assert sorted(curve["k"].unique()) == [1, 2, 3, 4]
