"""The W&B mirror, offline, read back with W&B's own reader (``wandb leet inspect --json``): group, job_type,
name, tags, the identity as config, the step metrics and namespaces, the summary, the artifacts, the parent's
own run; runs never mix, a resumed run is one W&B run, a run in the store is published (once) from its files,
online without a network costs one bounded probe per sweep, a W&B failure never costs a run, and no API key
lands in any file a run writes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import TINY_SWEEP, isolated, killed_run, sweep

from ssa_experiments.cli import wandb_publish
from ssa_experiments.store.files import flatten, read_metrics
from ssa_experiments.store.runs import run_dir
from ssa_experiments.training import wandb_mirror as wm
from ssa_experiments.training.callbacks import Callback
from ssa_experiments.training.run import run
from ssa_experiments.training.wandb_mirror import wandb_run_id

WANDB = ("logger=wandb", "logger.mode=offline")


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def records(offline_dir: Path) -> list[dict]:
    """Every record of an offline run's .wandb transaction log, read back with W&B's own CLI."""
    (log_file,) = offline_dir.glob("*.wandb")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(log_file)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def read_history(offline_dir: Path) -> list[dict]:
    return [r["history"]["item"] for r in records(offline_dir) if r.get("type") == "history"]


def read_run(offline_dir: Path) -> SimpleNamespace:
    """What W&B's UI shows of a run: its header (group, job_type, name, tags, config), history, defined
    metrics, final summary and the artifacts it logged."""
    recs = records(offline_dir)
    (header,) = [r["run"] for r in recs if r.get("type") == "run"]
    summary: dict = {}
    for r in recs:
        if r.get("type") == "summary":
            summary.update(r["summary"].get("update", {}))
    config = {k: v for k, v in header["config"]["update"].items() if k != "_wandb"}
    return SimpleNamespace(
        group=header.get("run_group"), job_type=header.get("job_type"), name=header.get("display_name"),
        tags=header.get("tags", []), config=config, summary=summary,
        history=[r["history"]["item"] for r in recs if r.get("type") == "history"],
        metrics=[r["metric"] for r in recs if r.get("type") == "metric"],
        artifacts=[r["artifact"] for r in recs if r.get("type") == "artifact"],
        output=[r for r in recs if r.get("type") in ("output_raw", "output")],
    )  # fmt: skip


class Printer(Callback):
    """Prints a line per epoch, as a user's code would: W&B's console capture must hold it."""

    def on_epoch_end(self, row: dict, ctx) -> None:
        print(f"printed in epoch {row['epoch']}", flush=True)


def artifact_files(artifact: dict) -> set[str]:
    return {c["path"] for c in artifact["manifest"]["contents"]}


def test_offline_run_mirrors_metrics_jsonl(make_cfg, tmp_path) -> None:
    summary = run(make_cfg("method=temperature_annealing", "method.anneal_epochs=1", *WANDB))
    (offline,) = offline_runs(tmp_path / "run")
    assert offline.name.endswith(wandb_run_id(summary["identity"], tmp_path / "run"))
    local = read_metrics(tmp_path / "run")
    mirrored = read_history(offline)
    assert [r["epoch"] for r in mirrored] == [r["epoch"] for r in local]
    assert [r["global_step"] for r in mirrored] == [r["step"] for r in local]
    for ours, theirs in zip(local, mirrored, strict=True):
        for key, name in [("train_loss", "train/loss"), ("train_acc", "train/acc"), ("lr", "train/lr"),
                          ("val_acc", "val/acc"), ("test_acc", "test/acc"), ("test_loss", "test/loss"),
                          ("sparsity", "pruning/sparsity"),
                          ("expected_train_sparsity", "pruning/expected_train_sparsity")]:  # fmt: skip
            assert theirs[name] == pytest.approx(ours[key])
        assert theirs["pruning/layer_sparsity/0"] == pytest.approx(ours["layer_sparsity"]["0"])
        assert not {"train_loss", "val_acc", "test_acc", "step"} & set(theirs)  # no flat duplicates


def test_a_run_as_w_and_b_users_expect_it(make_cfg, tmp_path) -> None:
    """job_type the stage, name the store name, tags the setting, epoch and global_step as step metrics with
    every namespace on the epoch, the config the run's identity, the summary final + best by validation,
    model.pt and the masks as an artifact, the console captured, the parent its own run with artifacts."""
    summary = run(make_cfg("method=one_shot", "sparsity=0.75", *WANDB, "logger.tags=[mine]"), [Printer()])
    (offline,) = offline_runs(tmp_path / "run")
    r = read_run(offline)
    assert r.job_type == "finetune" and r.name == "run" and r.group == tmp_path.name
    assert {"mine", "method:one_shot", "sparsity:0.75", "model:small_cnn", "data:synthetic"} <= set(r.tags)
    steps = {m["name"] for m in r.metrics if "name" in m}
    assert steps == {"epoch", "global_step"}
    assert {m["glob_name"]: m["step_metric"] for m in r.metrics if "glob_name" in m} == {
        "train/*": "epoch", "val/*": "epoch", "test/*": "epoch", "pruning/*": "epoch",
    }  # fmt: skip
    # the config is what the run computes: its identity, flat; no runtime plumbing, no key one-shot ignores
    assert r.config == {k: v for k, v in flatten(summary["identity"]).items()}
    assert not {k for k in r.config if k.split(".")[0] in ("output_dir", "store", "force", "logger")}
    assert "method.initial_temperature" not in r.config and "ensemble.size" not in r.config
    # summary: the final epoch's numbers and the best epoch chosen by validation, as summary.json has them
    for key in ("test_acc", "val_acc", "best_val_acc", "sparsity"):
        assert r.summary[key] == pytest.approx(summary[key]), key
    assert r.summary["best_epoch"] == summary["best_epoch"]
    assert r.summary["status"] == "completed" and r.summary["parent/artifact"].startswith("parent-")
    (model,) = r.artifacts
    assert model["name"] == "model-run" and model["type"] == "model" and "latest" in model["aliases"]
    assert artifact_files(model) == {"model.pt", "masks.pt"}
    # the console (W&B's Logs tab) is captured
    printed = "".join(o.get("output_raw", o.get("output", {})).get("line", "") for o in r.output)
    assert "printed in epoch 3" in printed
    # the dense parent: its own run, job_type parent, per-epoch metrics, its weights as artifact "final"
    entry = Path(make_cfg().parent.cache_dir) / summary["parent"]["hash"]
    rows = [json.loads(line) for line in (entry / "parent_metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2] and all(
        "val_acc" in row and "test_acc" in row for row in rows
    )
    assert rows[-1]["test_acc"] == pytest.approx(
        summary["parent"]["test_acc"]
    )  # the last epoch is the parent
    (parent_run,) = sorted((entry / "wandb").glob("offline-run-*"))
    p = read_run(parent_run)
    assert p.job_type == "parent" and p.name == f"parent-{entry.name}" and p.group == tmp_path.name
    assert [h["epoch"] for h in p.history] == [1, 2]
    assert p.history[-1]["val/acc"] == pytest.approx(rows[-1]["val_acc"])
    (final,) = [a for a in p.artifacts if "final" in a["aliases"]]
    assert final["name"] == f"parent-{entry.name}" and artifact_files(final) == {"parent.pt"}


def test_rewinding_checkpoints_are_parent_artifact_versions(make_cfg, tmp_path) -> None:
    run(make_cfg("method=one_shot", "parent.rewind_epoch=1", *WANDB))
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    (parent_run,) = sorted((entry / "wandb").glob("offline-run-*"))
    arts = read_run(parent_run).artifacts  # W&B adds "latest" to the version logged last of each
    files = {a for art in arts for a in art["aliases"] if a != "latest"}
    assert files == {"epoch1", "final"}
    by_alias = {a: artifact_files(art) for art in arts for a in art["aliases"]}
    assert by_alias["epoch1"] == {"epoch_1.pt"} and by_alias["final"] == {"parent.pt"}


def test_two_runs_in_one_process_stay_separate(make_cfg, tmp_path) -> None:
    a = run(make_cfg("method=one_shot", "sparsity=0.5", *WANDB, run_dir="a"))
    b = run(make_cfg("method=one_shot", "sparsity=0.9", *WANDB, run_dir="b"))
    (oa,), (ob,) = offline_runs(tmp_path / "a"), offline_runs(tmp_path / "b")
    assert oa.name.endswith(wandb_run_id(a["identity"], tmp_path / "a"))
    assert ob.name.endswith(wandb_run_id(b["identity"], tmp_path / "b"))
    assert read_history(oa)[-1]["pruning/sparsity"] == pytest.approx(a["sparsity"])
    assert read_history(ob)[-1]["pruning/sparsity"] == pytest.approx(b["sparsity"])


def test_resumed_run_is_one_wandb_run(make_cfg, tmp_path) -> None:
    overrides = ("method=iterative", "method.anneal_epochs=1", *WANDB)
    killed_run(make_cfg(*overrides), 2)
    summary = run(make_cfg(*overrides))
    sessions = offline_runs(tmp_path / "run")  # offline-run-<date>_<time>-<id>[-<n>]
    assert len(sessions) == 2
    run_id = wandb_run_id(summary["identity"], tmp_path / "run")
    assert {p.name.split("-")[3] for p in sessions} == {run_id}  # one run id
    # The same config run again into another directory (a new sweep) is a new W&B run, not a resumed one.
    assert wandb_run_id(summary["identity"], tmp_path / "elsewhere") != run_id


def test_a_stored_run_has_one_id_per_store_key_wherever_the_store_is(make_cfg, tmp_path) -> None:
    identity = {"method": {"name": "one_shot"}, "sparsity": 0.9, "seed": 0}
    a, b = run_dir(tmp_path / "store", identity), run_dir(tmp_path / "copy" / "store", identity)
    assert wandb_run_id(identity, a) == wandb_run_id(identity, b)
    assert wandb_run_id(identity, a) != wandb_run_id(
        {**identity, "seed": 1}, run_dir(tmp_path, {**identity, "seed": 1})
    )
    assert wm.group_of(a, identity) == "store"  # outside Hydra: a stored run's group is its store's name


def test_group_is_the_sweep_or_logger_group(make_cfg, monkeypatch, tmp_path) -> None:
    """In a multirun the group is Hydra's sweep directory's name (never the store's ``runs`` folder); an
    explicit ``logger.group`` wins; a single run is grouped by its experiment preset."""
    from hydra.types import RunMode

    cfg = make_cfg("method=one_shot")
    out = tmp_path / "store" / "runs" / "one_shot-s0.9-seed0-abc"
    hydra = SimpleNamespace(
        mode=RunMode.MULTIRUN, sweep=SimpleNamespace(dir=str(tmp_path / "my_sweep")),
        runtime=SimpleNamespace(choices={"experiment": None}, output_dir=str(tmp_path / "my_sweep/0")),
    )  # fmt: skip
    monkeypatch.setattr(wm, "_hydra", lambda: hydra)
    assert wm.sweep_group(cfg, out, {}) == "my_sweep"
    assert wm.sweep_group(make_cfg("method=one_shot", "logger.group=mine"), out, {}) == "mine"
    hydra.mode = RunMode.RUN
    hydra.runtime.choices["experiment"] = "quickstart"
    assert wm.sweep_group(cfg, out, {}) == "quickstart"
    hydra.runtime.choices["experiment"] = None
    assert wm.sweep_group(cfg, out, {}) == "0"  # a single run without a preset: its job directory


def test_job_type_is_the_stage(make_cfg) -> None:
    assert wm.stage(make_cfg("method=one_shot")) == "finetune"
    assert wm.stage(make_cfg("method=one_shot", "ensemble.member=1")) == "ensemble"


def test_a_sweep_is_one_group_with_a_line_per_run(tmp_path) -> None:
    """The CLI as a user runs it: a 4-run sweep into the store, every W&B run grouped by the sweep (not
    ``runs``), the parents logged as job_type parent, one summary line per completed run."""
    proc = sweep(*TINY_SWEEP, *isolated(tmp_path), *WANDB, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = sorted((tmp_path / "store" / "runs").glob("*/wandb/offline-run-*"))
    assert len(found) == 4
    assert {read_run(p).group for p in found} == {"sweep"}
    assert {read_run(p).job_type for p in found} == {"finetune"}
    parents = sorted((tmp_path / "parents").glob("*/wandb/offline-run-*"))
    assert len(parents) == 2 and {read_run(p).job_type for p in parents} == {"parent"}
    text = proc.stdout + proc.stderr
    assert sum(" completed: test_acc " in line and "[job " in line for line in text.splitlines()) == 4


def test_publish_a_store_once(make_cfg, tmp_path, caplog) -> None:
    """Runs computed with logger=local are published from their files: the same history, summary and model;
    publishing again is a no-op (one line), and a completed run asked for with logger=wandb says so."""
    store_root = tmp_path / "store"
    cfg = make_cfg("method=one_shot")
    from ssa_experiments.config.identity import run_identity

    out = run_dir(store_root, run_identity(cfg))
    cfg.output_dir = str(out)
    summary = run(cfg)
    assert not (out / "wandb").exists()
    assert wandb_publish.main([str(store_root), "--mode", "offline", "--project", "p"]) == 0
    (offline,) = offline_runs(out)
    assert offline.name.endswith(wandb_run_id(summary["identity"], out))
    r = read_run(offline)
    assert r.group == "store" and r.job_type == "finetune" and r.name == out.name
    assert [h["epoch"] for h in r.history] == [1, 2, 3]
    assert r.history[-1]["test/acc"] == pytest.approx(summary["test_acc"])
    assert r.summary["test_acc"] == pytest.approx(summary["test_acc"])
    assert [artifact_files(a) for a in r.artifacts] == [{"model.pt"}]
    with caplog.at_level(logging.INFO):
        assert wandb_publish.main([str(store_root), "--mode", "offline"]) == 0
    assert len(offline_runs(out)) == 1 and "already mirrored to W&B" in caplog.text
    caplog.clear()
    again = make_cfg("method=one_shot", *WANDB)
    again.output_dir = str(out)
    with caplog.at_level(logging.INFO):
        run(again)
    assert len(offline_runs(out)) == 1
    assert [m for m in caplog.messages if "already mirrored to W&B" in m]


def test_a_completed_run_asked_for_with_wandb_is_mirrored_from_its_files(make_cfg, tmp_path, caplog) -> None:
    summary = run(make_cfg("method=one_shot"))
    with caplog.at_level(logging.INFO):
        run(make_cfg("method=one_shot", *WANDB))
    (offline,) = offline_runs(tmp_path / "run")
    assert read_run(offline).summary["test_acc"] == pytest.approx(summary["test_acc"])
    assert [m for m in caplog.messages if "mirrored to W&B from its files" in m]


def test_publish_refuses_a_missing_path(tmp_path, capsys) -> None:
    assert wandb_publish.main([str(tmp_path / "nothing")]) == 2
    assert "no such path" in capsys.readouterr().err


def test_online_without_a_network_probes_once_per_sweep(make_cfg, tmp_path, monkeypatch, caplog) -> None:
    """An unreachable W&B host (loopback port 9: refused at once) is probed once for a whole sweep, said in
    one line, and its runs log offline; another worker process of the sweep reads the cached answer."""
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(wm, "_probed", {})
    probes = []
    real = wm._probe
    monkeypatch.setattr(wm, "_probe", lambda *a: probes.append(a) or real(*a))
    monkeypatch.setattr(wm, "sweep_dir", lambda: tmp_path / "sweep")
    with caplog.at_level(logging.WARNING):
        for sparsity in ("0.5", "0.75", "0.9"):
            run(make_cfg("method=one_shot", f"sparsity={sparsity}", "logger=wandb", "logger.mode=online",
                         run_dir=f"r{sparsity}"))  # fmt: skip
    assert len(probes) == 1 and probes[0][:2] == ("127.0.0.1", 9)
    assert sum("unreachable" in m for m in caplog.messages) == 1
    for sparsity in ("0.5", "0.75", "0.9"):
        assert len(offline_runs(tmp_path / f"r{sparsity}")) == 1
    cached = json.loads((tmp_path / "sweep" / wm.PROBE_FILE).read_text())
    assert cached["host"] == "127.0.0.1:9" and cached["reachable"] is False
    monkeypatch.setattr(wm, "_probed", {})  # another worker process of the same sweep
    assert wm.effective_mode("online", tmp_path / "sweep") == "offline" and len(probes) == 1


def test_the_probe_is_bounded(monkeypatch) -> None:
    """A host that never answers costs the probe's few seconds, not W&B's 60 s init timeout per run."""
    asked = []

    def no_answer(address, timeout):
        asked.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(wm, "_probed", {})
    monkeypatch.setattr(wm.socket, "create_connection", no_answer)
    assert not wm.reachable("https://api.wandb.ai", None)
    assert asked == [(("api.wandb.ai", 443), wm.PROBE_TIMEOUT_S)] and wm.PROBE_TIMEOUT_S <= 5
    assert not wm.reachable("https://api.wandb.ai", None) and len(asked) == 1  # once per process


def test_a_failing_wandb_never_costs_the_run(make_cfg, tmp_path, monkeypatch, caplog) -> None:
    import wandb

    def broken(*args, **kwargs):
        raise wandb.errors.CommError("init timed out")

    monkeypatch.setattr(wandb, "init", broken)
    summary = run(make_cfg("method=one_shot", *WANDB))
    assert summary["status"] == "completed" and len(read_metrics(tmp_path / "run")) == 3
    assert "W&B init failed" in caplog.text


def test_no_api_key_in_any_file_a_run_writes(make_cfg, tmp_path, monkeypatch) -> None:
    key = "0123456789abcdef0123456789abcdef01234567"  # key-shaped: 40 hex characters
    monkeypatch.setenv("WANDB_API_KEY", key)
    run(make_cfg("method=one_shot", *WANDB))
    assert wandb_publish.main([str(tmp_path), "--mode", "offline", "--force"]) == 0
    for path in tmp_path.rglob("*"):  # the run, its parent's cache entry and W&B folders, the publication
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_flatten_gives_the_keys_users_override() -> None:
    assert flatten({"method": {"name": "x", "initial_temperature": 0.5}, "seed": 1}) == {
        "method.name": "x", "method.initial_temperature": 0.5, "seed": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("key", "name"),
    [("train_loss", "train/loss"), ("val_acc", "val/acc"), ("test_loss", "test/loss"), ("lr", "train/lr"),
     ("step", "global_step"), ("epoch", "epoch"), ("sparsity", "pruning/sparsity"),
     ("layer_sparsity/conv1", "pruning/layer_sparsity/conv1"), ("at_target", "pruning/at_target")],
)  # fmt: skip
def test_metric_names(key: str, name: str) -> None:
    assert wm.metric_name(key) == name


def test_aggregate_reads_the_mirror_back_as_the_files(make_cfg, tmp_path) -> None:
    """``aggregate --wandb`` builds its frame from W&B's config and summary: from what the mirror wrote it
    gives the rows and the settings (a τ0 sweep: one per τ0) the runs' own files give, the identity's
    ``schedule`` read back as ``lr``."""
    from ssa_experiments.analysis.aggregate import collect, from_wandb, settings

    dirs = []
    for t0 in ("0.25", "0.5"):
        run(make_cfg("method=temperature_annealing", "method.anneal_epochs=1",
                     f"method.initial_temperature={t0}", *WANDB, run_dir=f"t{t0}"))  # fmt: skip
        dirs.append(tmp_path / f"t{t0}")
    shown = [read_run(offline_runs(d)[0]) for d in dirs]
    api_runs = [
        SimpleNamespace(
            id=str(i), path=["me", "p", str(i)], state="finished", config=r.config, summary=r.summary
        )
        for i, r in enumerate(shown)
    ]
    mirrored = from_wandb(api_runs)
    local = collect(dirs)
    for key in ("status", "method", "target_sparsity", "seed", "test_acc", "best_val_acc", "steps"):
        assert list(mirrored[key]) == list(local[key]), key
    assert [c["lr"]["name"] for c in mirrored["config"]] == [c["lr"]["name"] for c in local["config"]]
    assert list(settings(mirrored)) == list(settings(local))
    assert sorted(settings(mirrored)) == [
        "temperature_annealing method.initial_temperature=0.25",
        "temperature_annealing method.initial_temperature=0.5",
    ]
