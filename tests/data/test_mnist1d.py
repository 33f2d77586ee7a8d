"""MNIST-1D (``data=mnist1d``) and the 1-D CNN (``model=cnn1d``).

Why these matter: MNIST-1D is kept as its generator's float values (no uint8 rounding), must be the same data
for every run of a sweep (a pure function of the config, cached without changing it), must go through the
same loaders as the image data sets (validation split, both pipelines), and the over-parameterised
``cnn1d`` widths are sized by a formula docs/data-and-models.md quotes.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from mnist1d.data import get_dataset_args, make_dataset

from ssa_experiments.config.schema import ConfigError, DataConfig, ModelConfig
from ssa_experiments.config.validate import validate
from ssa_experiments.data.base import ImageData
from ssa_experiments.data.datasets import MNIST1D_SEED, load_data, mnist1d_cache_dir, mnist1d_cache_file
from ssa_experiments.data.loaders import DeviceBatches, TorchBatches
from ssa_experiments.models import build_model, count_params
from ssa_experiments.pruning.targets import prunable_modules

CPU = torch.device("cpu")
ONE_SHOT = ("method=one_shot", "data=mnist1d", "model=cnn1d")
SMALL = 200  # samples for tests that need no standard split: generated in ~0.3 s


def _load(root: Path, **kwargs: object) -> ImageData:
    return load_data(DataConfig(name="mnist1d", root=str(root), **kwargs))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data root (and so one cache) for the module: the standard set is generated once (~5 s)."""
    return tmp_path_factory.mktemp("mnist1d_root")


@pytest.fixture(scope="module")
def standard(root: Path) -> ImageData:
    return _load(root, val_fraction=0.0)


@pytest.fixture(scope="module")
def split(root: Path, standard: ImageData) -> ImageData:
    return _load(root)  # the default val_fraction (0.1), from the cache the fixture above wrote


def _items(x: torch.Tensor, y: torch.Tensor) -> Counter:
    return Counter((s.numpy().tobytes(), int(label)) for s, label in zip(x, y, strict=True))


# ------------------------------------------------------------------------------------------------ the data


def test_standard_split_shapes_dtype_and_labels(standard: ImageData) -> None:
    assert standard.train_x.shape == (4000, 1, 40) and standard.test_x.shape == (1000, 1, 40)
    assert standard.train_x.dtype == torch.float32 and standard.test_x.dtype == torch.float32
    assert standard.train_y.dtype == torch.int64 and standard.num_classes == 10
    for y in (standard.train_y, standard.test_y):
        assert set(y.tolist()) == set(range(10))
    assert torch.bincount(torch.cat([standard.train_y, standard.test_y])).tolist() == [500] * 10
    assert standard.image_shape == (1, 40) and standard.in_channels == 1 and standard.input_scale == 1.0
    assert (standard.mean, standard.std) == ((0.0,), (1.0,))  # the generator already standardised it


def test_values_are_the_generators_floats_not_uint8(tmp_path: Path) -> None:
    """What a model sees is exactly the generator's output (float32 of its float64), no quantisation."""
    args = get_dataset_args()
    args.num_samples, args.seed = SMALL, MNIST1D_SEED
    ref = make_dataset(args)
    data = _load(tmp_path, num_samples=SMALL, val_fraction=0.0)
    assert torch.equal(data.train_x[:, 0], torch.from_numpy(ref["x"].astype(np.float32)))
    assert torch.equal(data.test_x[:, 0], torch.from_numpy(ref["x_test"].astype(np.float32)))
    assert torch.equal(data.train_y, torch.from_numpy(ref["y"]))
    np.testing.assert_allclose(data.train_x[:, 0].numpy(), ref["x"], rtol=1e-6, atol=1e-6)
    assert len(torch.unique(data.train_x)) > 1000  # 160 x 40 distinct floats, not 256 levels
    batches = DeviceBatches(data, "test", 16, CPU, seed=0)
    inputs = torch.cat([x for x, _ in batches.epoch(0)])
    # undoing the normalisation (x * std + mean, here the identity) gives back the generator's values
    assert torch.equal(inputs * data.std[0] + data.mean[0], data.test_x)


def test_data_is_a_pure_function_of_its_config(tmp_path: Path) -> None:
    """Generated, then read from the cache, then generated again elsewhere: equal. Loading leaves the
    global RNGs alone (``make_dataset`` seeds numpy's and python's)."""
    np.random.seed(7)
    random.seed(7)
    np_state, py_state, torch_state = np.random.get_state(), random.getstate(), torch.get_rng_state()
    first = _load(tmp_path / "a", num_samples=SMALL)
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and random.getstate() == py_state
    assert torch.equal(torch.get_rng_state(), torch_state)
    cached = mnist1d_cache_file(
        mnist1d_cache_dir(DataConfig(name="mnist1d", root=str(tmp_path / "a"))), SMALL
    )
    assert cached.is_file()
    for again in (_load(tmp_path / "a", num_samples=SMALL), _load(tmp_path / "b", num_samples=SMALL)):
        for a, b in (
            (first.train_x, again.train_x),
            (first.val_y, again.val_y),
            (first.test_x, again.test_x),
        ):
            assert torch.equal(a, b)
    bigger = _load(tmp_path / "a", num_samples=300, val_fraction=0.0)
    assert len(bigger.train_y) == 240 and len(bigger.test_y) == 60


def test_a_corrupt_cache_file_is_regenerated(tmp_path: Path) -> None:
    good = _load(tmp_path, num_samples=SMALL, val_fraction=0.0)
    path = mnist1d_cache_file(tmp_path / "mnist1d", SMALL)
    path.write_bytes(b"not an npz")
    again = _load(tmp_path, num_samples=SMALL, val_fraction=0.0)
    assert torch.equal(good.train_x, again.train_x)
    assert path.stat().st_size > 1000  # rewritten


def test_validation_split_is_stratified(standard: ImageData, split: ImageData) -> None:
    assert split.val_x is not None and split.val_y is not None
    assert len(split.val_y) == 400 and len(split.train_y) == 3600
    per_class = torch.bincount(standard.train_y, minlength=10)
    val_counts = torch.bincount(split.val_y, minlength=10)
    for c in range(10):
        assert abs(val_counts[c].item() - 400 * per_class[c].item() / 4000) <= 1
    assert _items(split.train_x, split.train_y) + _items(split.val_x, split.val_y) == _items(
        standard.train_x, standard.train_y
    )
    assert (split.mean, split.std) == (standard.mean, standard.std)  # published constants: no re-stat
    assert torch.equal(split.test_x, standard.test_x)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"num_samples": 95}, "data.num_samples"),  # fewer than 100
        ({"num_samples": 1005}, "data.num_samples"),  # not a multiple of 10: the generator would drop 5
        ({"crop_padding": 2}, "data.crop_padding"),  # no augmentation for signals
        ({"flip": True}, "data.flip"),
    ],
)
def test_bad_data_config_fails_naming_the_field(tmp_path: Path, override: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        _load(tmp_path, **override)


def test_validate_rejects_bad_num_samples_and_model_data_mismatch(make_cfg) -> None:
    with pytest.raises(ConfigError, match=r"^data\.num_samples:"):
        validate(make_cfg(*ONE_SHOT, "data.num_samples=50"))
    with pytest.raises(ConfigError, match=r"^model\.arch:"):
        validate(make_cfg("method=one_shot", "data=mnist1d", "model=small_cnn"))  # a 2-D model on 1-D signals
    with pytest.raises(ConfigError, match=r"^model\.arch:"):
        validate(make_cfg("method=one_shot", "model=cnn1d"))  # a 1-D model on images
    validate(make_cfg(*ONE_SHOT))


# --------------------------------------------------------------------------------------------- the loaders


def test_both_pipelines_give_the_same_batches(tmp_path: Path) -> None:
    """Val and test: identical batches. Train: the same unaugmented samples each epoch (the two pipelines
    shuffle with different draws from the epoch's generator, as for images), and the same batch count."""
    data = _load(tmp_path, num_samples=SMALL)
    for split in ("val", "test"):
        dev = list(DeviceBatches(data, split, 16, CPU, seed=3).epoch(0))
        tor = list(TorchBatches(data, split, 16, CPU, seed=3, num_workers=0).epoch(0))
        assert len(dev) == len(tor)
        for (x1, y1), (x2, y2) in zip(dev, tor, strict=True):
            assert x1.dtype == x2.dtype == torch.float32 and x1.shape[1:] == (1, 40)
            assert torch.equal(x1, x2) and torch.equal(y1, y2)
    dev_b = DeviceBatches(data, "train", 16, CPU, seed=3)
    tor_b = TorchBatches(data, "train", 16, CPU, seed=3, num_workers=0)
    assert len(dev_b) == len(tor_b) == len(data.train_y) // 16
    for epoch in (0, 1):
        dev = list(dev_b.epoch(epoch))
        tor = list(tor_b.epoch(epoch))
        all_train = _items(data.train_x, data.train_y)
        for batches in (dev, tor):
            seen = _items(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))
            assert not seen - all_train  # every sample is a stored one, unchanged
            assert sum(seen.values()) == len(batches) * 16
    assert torch.equal(data.train_x, _load(tmp_path, num_samples=SMALL).train_x)  # batches never wrote it


# ---------------------------------------------------------------------------------------------- the model


def _cnn1d_counts(width: int, depth: int = 3, length: int = 40, classes: int = 10) -> tuple[int, int]:
    """(all parameters, prunable weights) by hand: each block a bias-free kernel-5 conv (5 * c_in * width)
    and a BatchNorm (2 * width); the signal halves (rounded up) per block; the head is flatten + linear."""
    conv = 5 * width * (1 + (depth - 1) * width)
    n = length
    for _ in range(depth):
        n = (n + 1) // 2
    head = width * n * classes + classes
    return conv + 2 * width * depth + head, conv


@pytest.mark.parametrize(("width", "params", "prunable"), [(32, 12_202, 10_400), (128, 171_658, 164_480)])
def test_cnn1d_parameter_counts(width: int, params: int, prunable: int) -> None:
    assert _cnn1d_counts(width) == (params, prunable)
    model = build_model(ModelConfig(arch="cnn1d", width=width, depth=3), 1, 40, 10)
    assert count_params(model) == params
    layers = prunable_modules(model, keep_first_layer=False, keep_last_layer=True)
    assert sum(m.weight.numel() for m in layers.values()) == prunable  # the head stays dense
    assert prunable >= 100_000 or width < 128  # width 128 is over-parameterised for 4000 signals
    assert model.eval()(torch.randn(2, 1, 40)).shape == (2, 10)


def test_one_shot_on_mnist1d_end_to_end(make_cfg, tmp_path: Path) -> None:
    from ssa_experiments.training.run import run

    cfg = make_cfg(
        "data=mnist1d",
        "model=cnn1d",
        f"data.num_samples={SMALL}",
        f"data.root={tmp_path / 'data'}",
        "method=one_shot",
        "sparsity=0.9",
    )
    summary = run(cfg)
    assert summary["status"] == "completed", summary.get("error")
    assert summary["target_sparsity"] == 0.9
    assert summary["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert 0 <= summary["test_acc"] <= 100 and summary["epochs"] == 3


def test_num_samples_is_in_the_identity_of_mnist1d_runs_only() -> None:
    """A key only MNIST-1D reads never changes the store keys or cached parents of the other data sets."""
    from helpers import compose_config

    from ssa_experiments.config.identity import run_identity
    from ssa_experiments.training.parent import parent_key

    digits = [
        compose_config(["data=digits", "output_dir=/tmp/x", f"data.num_samples={n}"]) for n in (5000, 800)
    ]
    signals = [
        compose_config(["data=mnist1d", "model=cnn1d", "output_dir=/tmp/x", f"data.num_samples={n}"])
        for n in (5000, 800)
    ]
    assert (
        run_identity(digits[0]) == run_identity(digits[1])
        and "num_samples" not in run_identity(digits[0])["data"]
    )
    assert parent_key(digits[0]) == parent_key(digits[1])
    assert run_identity(signals[0]) != run_identity(signals[1])
    assert parent_key(signals[0]) != parent_key(signals[1])
