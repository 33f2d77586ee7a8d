"""The validation split carved from the training set, and loaders that leave the global RNGs alone.

Why these matter: model selection ("best epoch") must not look at the test set, every run of a sweep must
select on the same validation images, and a data loader must not change the random draws of the training code
around it (dropout, stochastic masks) by reseeding or consuming the global generator.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import make_cifar10

from ssa_experiments.config.schema import DataConfig
from ssa_experiments.data.base import CIFAR10_STATS, ImageData
from ssa_experiments.data.datasets import channel_stats, load_data, split_validation
from ssa_experiments.data.loaders import DeviceBatches, TorchBatches, make_batches

CPU = torch.device("cpu")


def _digits(val_fraction: float, split_seed: int = 0) -> ImageData:
    return load_data(DataConfig(name="digits", val_fraction=val_fraction, split_seed=split_seed))


def _items(x: torch.Tensor, y: torch.Tensor) -> Counter:
    """The multiset of (image bytes, label): compares image sets without trusting any index bookkeeping."""
    return Counter((img.numpy().tobytes(), int(label)) for img, label in zip(x, y, strict=True))


def _val_items(data: ImageData) -> Counter:
    assert data.val_x is not None and data.val_y is not None
    return _items(data.val_x, data.val_y)


@pytest.fixture(scope="module")
def full_digits() -> ImageData:
    return _digits(0.0)


@pytest.fixture(scope="module")
def split_digits() -> ImageData:
    return _digits(0.1)


# ----------------------------------------------------------------------------------------------- the split


def test_digits_split_partitions_the_training_set(full_digits: ImageData, split_digits: ImageData) -> None:
    """Train and val are disjoint and together are exactly the training set without a split; 10% of the
    1437 training images, rounded half up, is 144 in val."""
    assert len(full_digits.train_y) == 1437
    assert len(split_digits.val_y) == 144 and len(split_digits.train_y) == 1437 - 144
    train, val = _items(split_digits.train_x, split_digits.train_y), _val_items(split_digits)
    assert train + val == _items(
        full_digits.train_x, full_digits.train_y
    )  # as multisets: no image lost or added
    train_idx, val_idx = split_validation(full_digits.train_y, 0.1, 0)
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(1437))
    assert torch.equal(split_digits.train_x, full_digits.train_x[train_idx])  # training order is kept
    assert torch.equal(split_digits.val_x, full_digits.train_x[val_idx])


def test_digits_split_is_stratified(full_digits: ImageData, split_digits: ImageData) -> None:
    n_val, n = len(split_digits.val_y), len(full_digits.train_y)
    per_class = torch.bincount(full_digits.train_y, minlength=10)
    val_counts = torch.bincount(split_digits.val_y, minlength=10)
    for c in range(10):
        assert abs(val_counts[c].item() - n_val * per_class[c].item() / n) <= 1, (c, val_counts.tolist())


def test_split_depends_on_split_seed_only(split_digits: ImageData) -> None:
    """The run's seed reaches the code as the global RNG state: the split must not follow it."""
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    again = _digits(0.1)
    torch.manual_seed(2)
    np.random.seed(2)
    random.seed(2)
    other_run = _digits(0.1)
    for d in (again, other_run):
        assert torch.equal(d.val_x, split_digits.val_x) and torch.equal(d.val_y, split_digits.val_y)
        assert torch.equal(d.train_x, split_digits.train_x)
    other_split = _digits(0.1, split_seed=1)
    assert len(other_split.val_y) == len(split_digits.val_y)
    assert _val_items(other_split) != _val_items(split_digits)


def test_split_is_pinned_across_processes_and_versions() -> None:
    """Golden values: the split comes from numpy's frozen legacy RandomState stream, so a sweep launched on
    another machine or after an upgrade selects on the same images. A change here changes every sweep."""
    labels = torch.arange(20) % 4  # 5 images per class
    train_idx, val_idx = split_validation(labels, 0.25, seed=0)
    assert val_idx.tolist() == GOLDEN_VAL_IDX
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(20))
    assert torch.bincount(labels[val_idx], minlength=4).tolist() == [
        2,
        1,
        1,
        1,
    ]  # 4 x 1.25: ties go to the lower class


GOLDEN_VAL_IDX = [1, 4, 8, 18, 19]


def test_no_split_keeps_the_full_training_set(full_digits: ImageData, split_digits: ImageData) -> None:
    assert full_digits.val_x is None and full_digits.val_y is None
    assert len(full_digits.train_y) == 1437
    assert torch.equal(full_digits.test_x, split_digits.test_x)  # the test set is untouched by the split
    assert torch.equal(full_digits.test_y, split_digits.test_y)
    assert len(split_digits.test_y) == 360


def test_normalisation_stats_come_from_the_training_part(
    full_digits: ImageData, split_digits: ImageData
) -> None:
    assert (split_digits.mean, split_digits.std) == channel_stats(split_digits.train_x)
    assert split_digits.mean != full_digits.mean  # so the check above can tell the two apart
    synth = load_data(
        DataConfig(name="synthetic", num_train=64, num_test=16, image_size=8, val_fraction=0.25)
    )
    assert len(synth.val_y) == 16 and len(synth.train_y) == 48
    assert (synth.mean, synth.std) == channel_stats(synth.train_x)


def test_disk_data_keeps_published_stats(tmp_path: Path) -> None:
    """CIFAR's normalisation constants are published, not computed: the split moves images only."""
    fx = make_cifar10(tmp_path, n_train_per_batch=6, n_test=4)  # 30 images, random labels
    d = load_data(DataConfig(name="cifar10", root=str(tmp_path), val_fraction=0.1))
    assert (d.mean, d.std) == CIFAR10_STATS
    assert len(d.val_y) == 3 and len(d.train_y) == 27
    whole = _items(torch.from_numpy(fx.train_x), torch.from_numpy(fx.train_y))
    assert _items(d.train_x, d.train_y) + _val_items(d) == whole
    np.testing.assert_array_equal(d.test_x.numpy(), fx.test_x)


def test_split_falls_back_when_a_class_is_too_small() -> None:
    """A class with one image cannot be stratified: a seeded, unstratified split of the same size."""
    labels = torch.tensor([0] * 9 + [1] * 10 + [2])
    train_idx, val_idx = split_validation(labels, 0.2, seed=3)
    assert len(val_idx) == 4 and len(train_idx) == 16
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(20))
    assert torch.equal(split_validation(labels, 0.2, seed=3)[1], val_idx)


def test_split_sizes_round_half_up_and_keep_both_sides() -> None:
    labels = torch.arange(10) % 2
    assert len(split_validation(labels, 0.25, 0)[1]) == 3  # 2.5 -> 3
    assert len(split_validation(labels, 0.01, 0)[1]) == 1  # a positive fraction gives at least one
    assert len(split_validation(labels, 0.99, 0)[0]) == 1  # and leaves at least one training image
    assert len(split_validation(labels, 0.0, 0)[1]) == 0


# --------------------------------------------------------------------------------------------- the loaders


def _synthetic(val_fraction: float = 0.25) -> ImageData:
    cfg = DataConfig(
        name="synthetic",
        num_train=64,
        num_test=16,
        image_size=8,
        channels=3,
        crop_padding=2,
        flip=True,
        val_fraction=val_fraction,
    )
    return load_data(cfg)


def _batches(batches: DeviceBatches | TorchBatches, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in batches.epoch(epoch)]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("pipeline", ["device", "torch"])
def test_val_batches_are_unaugmented_and_in_fixed_order(pipeline: str) -> None:
    data = _synthetic()
    run = make_batches(data, pipeline, 8, CPU, seed=0, num_workers=0)
    assert run.val is not None and run.train is not None and run.test is not None
    first = _batches(run.val, 0)
    assert _same(first, _batches(run.val, 1))  # no per-epoch shuffle or augmentation
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    expected = (data.val_x.float() / 255 - mean) / std
    torch.testing.assert_close(torch.cat([x for x, _ in first]), expected)  # data set order, no crop or flip
    assert torch.equal(torch.cat([y for _, y in first]), data.val_y)
    assert len(first[0][1]) == len(_batches(run.test, 0)[0][1])  # the evaluation batch size, as test
    assert make_batches(_synthetic(0.0), pipeline, 8, CPU, seed=0, num_workers=0).val is None


def _rng_states() -> tuple:
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def _assert_rng_unchanged(before: tuple) -> None:
    after = _rng_states()
    assert torch.equal(before[0], after[0]), "global torch RNG changed"
    assert np.array_equal(before[1], after[1]), "global numpy RNG changed"
    assert before[2] == after[2], "python random changed"


@pytest.mark.parametrize("pipeline", ["device", "torch"])
def test_loaders_leave_the_global_rng_alone(pipeline: str) -> None:
    """A full augmented training epoch and the evaluation epochs neither reseed nor draw from global RNGs."""
    run = make_batches(_synthetic(), pipeline, 8, CPU, seed=5, num_workers=0)
    torch.manual_seed(123)
    before = _rng_states()
    for batches in (run.train, run.val, run.test):
        assert batches is not None
        for _ in batches.epoch(3):
            pass
    _assert_rng_unchanged(before)


@pytest.mark.parametrize("pipeline", ["device", "torch"])
def test_epoch_batches_are_a_function_of_seed_and_epoch(pipeline: str) -> None:
    data = _synthetic()
    train = make_batches(data, pipeline, 8, CPU, seed=5, num_workers=0).train
    first = _batches(train, 2)
    torch.manual_seed(999)  # whatever the caller does to the global RNG in between
    assert _same(first, _batches(train, 2))
    assert not _same(first, _batches(train, 3))  # a new epoch: new order and augmentation
    assert not _same(first, _batches(make_batches(data, pipeline, 8, CPU, seed=6, num_workers=0).train, 2))


def test_torch_pipeline_is_independent_of_num_workers() -> None:
    data = _synthetic()
    serial = TorchBatches(data, "train", 8, CPU, seed=5, num_workers=0)
    parallel = TorchBatches(data, "train", 8, CPU, seed=5, num_workers=2)
    assert _same(_batches(serial, 1), _batches(parallel, 1))
