"""Every CUDA path, on a GPU: what no CPU run can show. Marked ``cuda`` and skipped, with the reason, where
torch sees no GPU; ``make gpu-check`` (scripts/gpu_check.py) runs them as ``pytest -m cuda`` on one GPU.

What they prove: a CUDA run under deterministic settings equals itself on rerun; a run killed mid-annealing on
CUDA resumes bit-identically; bf16 autocast and channels-last are applied and recorded in the summary; the
on-device pipeline gives the same batches on the GPU as on the CPU (same seed); ``device=auto`` claims a GPU;
a CPU checkpoint is refused on CUDA with one line; masks stay effective (pruned weights exactly zero) under
autocast. The runs are the tiny ones of the CPU tests (``helpers.FAST``) moved to ``device=cuda``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import assert_resumes_identically, killed_run

from ssa_experiments.config.identity import compute_identity
from ssa_experiments.config.schema import ConfigError
from ssa_experiments.data.datasets import load_data
from ssa_experiments.data.loaders import make_batches
from ssa_experiments.models import build_model
from ssa_experiments.pruning.masking import export_state_dict
from ssa_experiments.pruning.methods import make_method
from ssa_experiments.runtime.devices import device_for_job, pick_device
from ssa_experiments.runtime.precision import Precision
from ssa_experiments.store.files import read_metrics
from ssa_experiments.training.checkpoint import load_checkpoint
from ssa_experiments.training.optim import make_optimizer
from ssa_experiments.training.run import run

# cuBLAS reads this once, when CUDA starts (after collection): deterministic GEMMs need a fixed workspace.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is false)"
    ),
]

CUDA = ("device=cuda",)
ANNEAL = ("method=temperature_annealing", "method.anneal_epochs=2", "train.finetune_epochs=3")


@pytest.fixture
def deterministic() -> Iterator[None]:
    """Deterministic kernels for the test (warn only where torch has none: the comparison then says if the
    numbers moved), torch's previous settings restored after it."""
    was = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    yield
    torch.use_deterministic_algorithms(was[0])
    torch.backends.cudnn.benchmark = was[1]


def rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in read_metrics(run_dir)]


def same_model_file(a: Path, b: Path) -> bool:
    x, y = torch.load(a / "model.pt"), torch.load(b / "model.pt")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_a_cuda_run_equals_itself_on_rerun(make_cfg, tmp_path: Path, deterministic) -> None:
    # parent.cache=false: the rerun trains its own dense parent too, so the whole run is computed twice
    first = run(make_cfg(*CUDA, *ANNEAL, "parent.cache=false", run_dir="first"))
    again = run(make_cfg(*CUDA, *ANNEAL, "parent.cache=false", run_dir="again"))
    assert first["device"].startswith("cuda") and first["parent"]["source"] == again["parent"]["source"]
    assert rows(tmp_path / "first") == rows(tmp_path / "again")
    assert first["test_acc"] == again["test_acc"]
    assert same_model_file(tmp_path / "first", tmp_path / "again")


def test_a_run_killed_mid_annealing_on_cuda_resumes_bit_identically(
    make_cfg, tmp_path: Path, deterministic
) -> None:
    reference = run(make_cfg(*CUDA, *ANNEAL, run_dir="reference"))
    resumed = assert_resumes_identically(make_cfg, tmp_path, (*CUDA, *ANNEAL), reference, 2)
    assert resumed["device"].startswith("cuda")


def test_bf16_autocast_and_channels_last_are_applied_and_recorded(make_cfg) -> None:
    cfg = make_cfg(*CUDA, "method=one_shot", "train.finetune_epochs=1")
    assert cfg.train.amp and cfg.train.channels_last  # the defaults
    summary = run(cfg)
    assert summary["identity"]["compute"] == compute_identity(cfg)
    assert summary["identity"]["compute"]["autocast"] == "bfloat16"
    assert summary["identity"]["compute"]["channels_last"] is True
    # what the run applies from those keys: bf16 activations, channels-last weights and inputs
    device = pick_device(cfg.device)
    precision = Precision.for_device(device, cfg.train.amp, cfg.train.channels_last)
    model = build_model(cfg.model, 3, cfg.data.image_size, cfg.data.num_classes).to(device)
    model = model.to(memory_format=torch.channels_last)
    x = precision.inputs(torch.randn(4, 3, cfg.data.image_size, cfg.data.image_size, device=device))
    with precision.autocast():
        logits = model(x)
    assert precision.amp and precision.channels_last and logits.dtype == torch.bfloat16
    assert x.is_contiguous(memory_format=torch.channels_last)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_the_device_pipeline_gives_the_same_batches_on_cuda_as_on_cpu(make_cfg) -> None:
    data = load_data(make_cfg("data.crop_padding=4", "data.flip=true").data)  # augmentation on
    on = {d: make_batches(data, "device", 64, torch.device(d), seed=3) for d in ("cpu", "cuda")}
    for epoch in (0, 1):
        pairs = zip(on["cpu"].train.epoch(epoch), on["cuda"].train.epoch(epoch), strict=True)
        for (xc, yc), (xg, yg) in pairs:
            assert xg.device.type == "cuda" and torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu())
    pairs = zip(on["cpu"].test.epoch(0), on["cuda"].test.epoch(0), strict=True)
    assert all(torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu()) for (xc, yc), (xg, yg) in pairs)


def test_device_auto_claims_a_gpu(tmp_path: Path) -> None:
    n = torch.cuda.device_count()
    with device_for_job("auto", n, tmp_path / "locks", env={}) as device:
        assert device == "cuda:0"
        if n > 1:  # a second job meanwhile gets the next GPU
            with device_for_job("auto", n, tmp_path / "locks", env={}) as other:
                assert other == "cuda:1"
    assert pick_device("auto").type == "cuda"


def test_a_cpu_checkpoint_is_refused_on_cuda_with_one_line(make_cfg, tmp_path: Path) -> None:
    killed_run(make_cfg(*ANNEAL), 2)  # helpers.FAST: device=cpu
    path = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(ConfigError) as info:  # the same overrides on CUDA: another run (its identity)
        run(make_cfg(*ANNEAL, *CUDA))
    assert "\n" not in str(info.value) and "checkpoint.pt" in str(info.value)
    # and with the checkpoint's own identity: refused for its device type, in one line
    identity = torch.load(path, weights_only=False)["identity"]
    with pytest.raises(ConfigError) as info:
        load_checkpoint(path, identity, torch.device("cuda"))
    assert info.value.field_name == "device" and "written on cpu" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("method", ["one_shot", "temperature_annealing"])
def test_masks_stay_effective_under_autocast(make_cfg, method: str) -> None:
    cfg = make_cfg(*CUDA, f"method={method}", "method.anneal_epochs=2")
    device = torch.device("cuda")
    precision = Precision.for_device(device, amp=True, channels_last=True)
    model = build_model(cfg.model, 3, cfg.data.image_size, cfg.data.num_classes).to(device)
    model = model.to(memory_format=torch.channels_last)
    pruning = make_method(cfg.method, cfg.pruning, cfg.sparsity, cfg.seed)
    pruning.start(model)
    optimizer = make_optimizer(model.parameters(), cfg.optimizer, 0.1, pruning.self_decayed_params())
    pruning.bind_optimizer(optimizer)
    g = torch.Generator().manual_seed(0)
    pruning.begin_epoch(0, 3)
    for step in range(3):
        x = torch.randn(16, 3, cfg.data.image_size, cfg.data.image_size, generator=g).to(device)
        y = torch.randint(0, cfg.data.num_classes, (16,), generator=g).to(device)
        pruning.before_step(0, step, 3)
        with precision.autocast():
            loss = torch.nn.functional.cross_entropy(model(precision.inputs(x)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        pruning.before_optimizer_step(0.1)
        optimizer.step()
        with precision.autocast():
            for name, mask in pruning.masks.items():
                weight = model.get_submodule(name).weight  # the effective (masked) weight
                assert torch.all(weight[mask.train_mask == 0] == 0), name
    exported = export_state_dict(model.eval())
    for name, mask in pruning.masks.items():
        assert torch.all(exported[f"{name}.weight"][~mask.eval_mask] == 0), name
