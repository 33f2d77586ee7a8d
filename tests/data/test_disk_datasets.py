"""Disk readers (CIFAR-10/100, Tiny ImageNet) on generated fixtures in the real formats, and the claim in
``loaders.py`` that the device and torch pipelines draw the same augmentation distribution."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from fixtures_data import make_cifar10, make_cifar100, make_tiny_imagenet
from scipy import stats

from ssa_experiments.config.schema import ConfigError, DataConfig
from ssa_experiments.data import disk
from ssa_experiments.data.base import CIFAR10_STATS, CIFAR100_STATS, TINY_IMAGENET_STATS, ImageData
from ssa_experiments.data.datasets import load_data
from ssa_experiments.data.loaders import make_batches

CIFAR_CFG = DataConfig(name="cifar10", crop_padding=4, flip=True)


def _assert_one_line_config_error(err: pytest.ExceptionInfo[ConfigError], *needles: str) -> None:
    msg = str(err.value)
    assert err.value.field_name == "data.root"
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


# ---------------------------------------------------------------------------------------------------- CIFAR


def test_fixtures_are_what_torchvision_reads(tmp_path: Path) -> None:
    """The fixtures are in the real format: torchvision's own parser (md5 check bypassed) reads them, and
    its HWC arrays are our NCHW arrays transposed."""
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as tvc

    c10, c100 = make_cifar10(tmp_path), make_cifar100(tmp_path)
    ours10 = disk.read_cifar10(CIFAR_CFG, tmp_path)
    ours100 = disk.read_cifar100(CIFAR_CFG, tmp_path)
    with (
        mock.patch.object(tvc, "check_integrity", return_value=True),
        mock.patch.object(tvd.CIFAR10, "_check_integrity", return_value=True),
    ):
        for cls, fixture, ours in ((tvd.CIFAR10, c10, ours10), (tvd.CIFAR100, c100, ours100)):
            for train, x, y in ((True, ours.train_x, ours.train_y), (False, ours.test_x, ours.test_y)):
                tv = cls(str(tmp_path), train=train, download=False)
                np.testing.assert_array_equal(tv.data, x.permute(0, 2, 3, 1).numpy())
                np.testing.assert_array_equal(np.asarray(tv.targets), y.numpy())
            np.testing.assert_array_equal(tv.data, fixture.test_x.transpose(0, 2, 3, 1))
    assert tv.classes[:2] == ["fine_0", "fine_1"]


@pytest.mark.parametrize("layout", ["parent", "folder"])
def test_cifar10_round_trip(tmp_path: Path, layout: str) -> None:
    fx = make_cifar10(tmp_path, n_train_per_batch=20, n_test=20)
    root = tmp_path if layout == "parent" else fx.folder
    d = disk.read_cifar10(CIFAR_CFG, root)
    assert isinstance(d, ImageData)
    assert d.name == "cifar10" and d.num_classes == 10
    assert d.train_x.shape == (100, 3, 32, 32) and d.test_x.shape == (20, 3, 32, 32)
    assert d.train_x.dtype == d.test_x.dtype == torch.uint8
    assert d.train_y.dtype == d.test_y.dtype == torch.int64
    assert d.train_x.is_contiguous()
    np.testing.assert_array_equal(d.train_x.numpy(), fx.train_x)  # batches 1..5 in order
    np.testing.assert_array_equal(d.train_y.numpy(), fx.train_y)
    np.testing.assert_array_equal(d.test_x.numpy(), fx.test_x)
    np.testing.assert_array_equal(d.test_y.numpy(), fx.test_y)
    assert (d.mean, d.std) == CIFAR10_STATS
    assert (d.crop_padding, d.flip) == (4, True)


@pytest.mark.parametrize("layout", ["parent", "folder"])
def test_cifar100_round_trip_uses_fine_labels(tmp_path: Path, layout: str) -> None:
    fx = make_cifar100(tmp_path, n_train=60, n_test=20)
    root = tmp_path if layout == "parent" else fx.folder
    d = disk.read_cifar100(DataConfig(name="cifar100", crop_padding=0, flip=False), root)
    assert d.name == "cifar100" and d.num_classes == 100
    assert d.train_x.shape == (60, 3, 32, 32) and d.test_x.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(d.train_x.numpy(), fx.train_x)
    np.testing.assert_array_equal(d.train_y.numpy(), fx.train_y)  # fine, not coarse
    np.testing.assert_array_equal(d.test_x.numpy(), fx.test_x)
    np.testing.assert_array_equal(d.test_y.numpy(), fx.test_y)
    assert (d.mean, d.std) == CIFAR100_STATS
    assert (d.crop_padding, d.flip) == (0, False)  # taken from the config, not hard-coded


def test_cifar_channel_order_is_nchw_rgb(tmp_path: Path) -> None:
    """Fixture images have a bright red plane, mid green and dark blue: channel 0 must be red."""
    make_cifar10(tmp_path)
    d = disk.read_cifar10(CIFAR_CFG, tmp_path)
    assert int(d.train_x[:, 0].min()) >= 192
    assert int(d.train_x[:, 1].min()) >= 96 and int(d.train_x[:, 1].max()) < 160
    assert int(d.train_x[:, 2].max()) < 64
    # and within a plane the layout is row-major: the first 32 bytes of a row in the file are row 0
    raw = disk._load_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_1")["data"]
    np.testing.assert_array_equal(d.train_x[0, 0, 0].numpy(), raw[0, :32])
    np.testing.assert_array_equal(d.train_x[0, 1, 2].numpy(), raw[0, 1024 + 64 : 1024 + 96])


def test_cifar_missing_directory(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as err:
        disk.read_cifar10(CIFAR_CFG, root)
    expected = root / "cifar-10-batches-py" / "data_batch_1"
    url = "https://www.cs.toronto.edu/~kriz/cifar.html"
    _assert_one_line_config_error(err, str(expected), url, "SSA_DATA_DIR")
    with pytest.raises(ConfigError) as err:
        disk.read_cifar100(CIFAR_CFG, root)
    _assert_one_line_config_error(err, str(root / "cifar-100-python" / "train"), "cifar-100-python.tar.gz")


@pytest.mark.parametrize("missing", ["data_batch_3", "test_batch"])
def test_cifar_missing_file(tmp_path: Path, missing: str) -> None:
    fx = make_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    (fx.folder / missing).unlink()
    for root in (tmp_path, fx.folder):
        with pytest.raises(ConfigError) as err:
            disk.read_cifar10(CIFAR_CFG, root)
        _assert_one_line_config_error(err, str(fx.folder / missing))


def test_cifar_corrupt_file(tmp_path: Path) -> None:
    fx = make_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    (fx.folder / "data_batch_2").write_bytes(b"<html>404 not found</html>")
    with pytest.raises(ConfigError) as err:
        disk.read_cifar10(CIFAR_CFG, tmp_path)
    _assert_one_line_config_error(err, str(fx.folder / "data_batch_2"))


def test_cifar100_folder_is_not_cifar10(tmp_path: Path) -> None:
    """Pointing the CIFAR-10 reader at CIFAR-100 names the CIFAR-10 file it wanted."""
    make_cifar100(tmp_path, n_train=2, n_test=2)
    with pytest.raises(ConfigError) as err:
        disk.read_cifar10(CIFAR_CFG, tmp_path / "cifar-100-python")
    _assert_one_line_config_error(err, "data_batch_1")


def test_load_data_dispatches_to_disk_readers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fx = make_cifar10(tmp_path, n_train_per_batch=3, n_test=4)
    d = load_data(DataConfig(name="cifar10", root=str(tmp_path), val_fraction=0.0))  # the whole training set
    assert d.name == "cifar10" and d.train_x.shape == (15, 3, 32, 32)
    np.testing.assert_array_equal(d.test_x.numpy(), fx.test_x)
    monkeypatch.setenv("SSA_DATA_DIR", str(tmp_path))  # root unset: the environment variable decides
    assert load_data(DataConfig(name="cifar10")).test_x.shape == (4, 3, 32, 32)
    monkeypatch.setenv("SSA_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match="elsewhere"):
        load_data(DataConfig(name="cifar100"))


# ---------------------------------------------------------------------------------------------- Tiny ImageNet


@pytest.mark.parametrize("layout", ["parent", "folder"])
def test_tiny_imagenet_round_trip(tmp_path: Path, layout: str) -> None:
    fx = make_tiny_imagenet(tmp_path, n_classes=3, n_train_per_class=4, n_val=6)
    assert fx.file_wnids != fx.sorted_wnids  # so the test can tell file order from sorted order
    root = tmp_path if layout == "parent" else fx.folder
    d = disk.read_tiny_imagenet(DataConfig(name="tiny_imagenet", crop_padding=8, flip=True), root)
    assert d.name == "tiny_imagenet" and d.num_classes == 3
    assert d.train_x.shape == (12, 3, 64, 64) and d.test_x.shape == (6, 3, 64, 64)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    np.testing.assert_array_equal(d.train_y.numpy(), fx.train_y)  # index = position in sorted wnids
    np.testing.assert_array_equal(d.test_y.numpy(), fx.val_y)  # from val_annotations.txt
    for got, want in ((d.train_x, fx.train_x), (d.test_x, fx.val_x)):
        err = (got.int() - torch.from_numpy(want).int()).abs()
        assert int(err.max()) <= 8 and float(err.float().mean()) < 1.5  # JPEG q=100, 4:4:4
    grey = d.train_x[fx.grey_train_index]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])  # greyscale JPEG -> RGB
    assert (d.mean, d.std) == TINY_IMAGENET_STATS
    assert (d.crop_padding, d.flip) == (8, True)


def test_tiny_imagenet_cache_reused_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fx = make_tiny_imagenet(tmp_path, n_classes=2, n_train_per_class=2, n_val=2)
    cfg = DataConfig(name="tiny_imagenet")
    first = disk.read_tiny_imagenet(cfg, tmp_path)
    cache = fx.folder / disk.CACHE_NAME
    assert cache.is_file()
    assert not [p for p in fx.folder.iterdir() if p.suffix == ".tmp"]

    def no_decoding(*_: object, **__: object) -> np.ndarray:
        raise AssertionError("decoded JPEGs although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(disk, "decode_images", no_decoding)
        second = disk.read_tiny_imagenet(cfg, fx.folder)  # other root convention, same cache
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, name), getattr(second, name))

    # one more train image: the fingerprint changes, so the cache is rebuilt
    wnid = fx.sorted_wnids[1]
    src = fx.folder / "train" / wnid / "images" / f"{wnid}_0.JPEG"
    (src.parent / f"{wnid}_9.JPEG").write_bytes(src.read_bytes())
    calls = []
    real = disk.decode_images
    monkeypatch.setattr(disk, "decode_images", lambda paths: calls.append(len(paths)) or real(paths))
    third = disk.read_tiny_imagenet(cfg, tmp_path)
    assert calls == [5, 2]
    assert third.train_x.shape[0] == 5 and third.train_y.tolist() == [0, 0, 1, 1, 1]
    assert torch.equal(third.train_x[4], third.train_x[2])


def test_tiny_imagenet_unwritable_or_corrupt_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fx = make_tiny_imagenet(tmp_path, n_classes=2, n_train_per_class=1, n_val=1)
    cfg = DataConfig(name="tiny_imagenet")
    with monkeypatch.context() as m:  # as if the data directory were read-only (tests may run as root)
        m.setattr(os, "replace", mock.Mock(side_effect=PermissionError("read-only file system")))
        with pytest.warns(UserWarning, match="could not write cache"):
            d = disk.read_tiny_imagenet(cfg, tmp_path)
    assert d.train_x.shape == (2, 3, 64, 64)
    assert sorted(p.name for p in fx.folder.iterdir()) == ["test", "train", "val", "wnids.txt", "words.txt"]

    (fx.folder / disk.CACHE_NAME).write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = disk.read_tiny_imagenet(cfg, tmp_path)
    assert torch.equal(again.train_x, d.train_x)
    fingerprint = disk._tiny_index(fx.folder).fingerprint  # the bad cache was replaced by a good one
    assert disk._load_cache(fx.folder / disk.CACHE_NAME, fingerprint) is not None


@pytest.mark.parametrize(
    "remove",
    ["wnids.txt", "val/val_annotations.txt", "val/images/val_1.JPEG", "train/{w}/images"],
)
def test_tiny_imagenet_missing_files(tmp_path: Path, remove: str) -> None:
    import shutil

    fx = make_tiny_imagenet(tmp_path, n_classes=2, n_train_per_class=1, n_val=2)
    target = fx.folder / remove.format(w=fx.sorted_wnids[1])
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ConfigError) as err:
        disk.read_tiny_imagenet(DataConfig(name="tiny_imagenet"), tmp_path)
    _assert_one_line_config_error(err, str(target), "tiny-imagenet-200.zip")


def test_tiny_imagenet_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_data(DataConfig(name="tiny_imagenet", root=str(tmp_path / "nope")))
    _assert_one_line_config_error(err, str(tmp_path / "nope" / "tiny-imagenet-200" / "wnids.txt"))


def test_tiny_imagenet_unknown_wnid_in_annotations(tmp_path: Path) -> None:
    fx = make_tiny_imagenet(tmp_path, n_classes=2, n_train_per_class=1, n_val=1)
    ann = fx.folder / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_0.JPEG\tn99999999\t0\t0\t63\t63\n")
    with pytest.raises(ConfigError, match=r"val_annotations\.txt:2"):
        disk.read_tiny_imagenet(DataConfig(name="tiny_imagenet"), tmp_path)


# -------------------------------------------------------------------------------- augmentation distribution

PAD, SIZE = 4, 32
N_AUG = 6400  # 25 batches of 256: about 40 draws per each of the 9*9*2 outcomes


def _pattern() -> np.ndarray:
    """One CHW image whose pixels encode their position: R = 7*(row+1), G = 7*(col+1), B = 255.

    Zero padding then shows as 0, and the centre pixels of any crop tell its offset and flip."""
    r = np.arange(1, SIZE + 1, dtype=np.uint8)[:, None] * 7
    img = np.empty((3, SIZE, SIZE), dtype=np.uint8)
    img[0], img[1], img[2] = np.broadcast_to(r, (SIZE, SIZE)), np.broadcast_to(r.T, (SIZE, SIZE)), 255
    return img


def _reference(img: np.ndarray, dy: int, dx: int, flip: bool) -> np.ndarray:
    """The augmentation written out by hand: zero-pad, crop at (dy, dx), then mirror left-right."""
    padded = np.pad(img, ((0, 0), (PAD, PAD), (PAD, PAD)))
    out = padded[:, dy : dy + SIZE, dx : dx + SIZE]
    return out[:, :, ::-1] if flip else out


def _outcomes(pipeline: str) -> np.ndarray:
    """Draw N_AUG augmented copies of the pattern through ``pipeline``; return one outcome index each."""
    img = _pattern()
    x = torch.from_numpy(np.broadcast_to(img, (N_AUG, *img.shape)).copy())
    y = torch.arange(N_AUG) % 10
    data = ImageData("pattern", x, y, x[:4], y[:4], 10, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), PAD, True)
    train = make_batches(data, pipeline, 256, torch.device("cpu"), seed=3, num_workers=0).train
    outcomes, labels = [], []
    for xb, yb in train.epoch(0):
        u8 = (xb * 255).round().to(torch.uint8).numpy()  # mean 0, std 1: exact inverse
        c = SIZE // 2
        flip = u8[:, 1, c, c + 1] < u8[:, 1, c, c]
        dy = u8[:, 0, c, c].astype(int) // 7 - 1 - (c - PAD)
        dx = u8[:, 1, c, c].astype(int) // 7 - 1 - (c - PAD) + flip
        for img_out, a, b, f in zip(u8, dy, dx, flip, strict=True):
            np.testing.assert_array_equal(img_out, _reference(img, int(a), int(b), bool(f)))
        outcomes.append((dy * (2 * PAD + 1) + dx) * 2 + flip)
        labels.append(yb)
    assert sum(len(o) for o in outcomes) == N_AUG
    assert sorted(torch.cat(labels).tolist()) == sorted(y.tolist())  # a permutation of the data set
    return np.concatenate(outcomes)


def test_pipelines_share_the_augmentation_distribution() -> None:
    """Each sample of each pipeline is exactly one of the 9*9*2 crop/flip outcomes of the hand-written
    reference; both pipelines hit all of them, with frequencies consistent with uniform and with each other.
    Seeds are fixed, so the p-value thresholds cannot flake."""
    k = (2 * PAD + 1) ** 2 * 2
    counts = {p: np.bincount(_outcomes(p), minlength=k) for p in ("device", "torch")}
    for pipeline, c in counts.items():
        assert len(c) == k and c.min() > 0, f"{pipeline}: some crop/flip outcome never drawn"
        assert stats.chisquare(c).pvalue > 1e-3, f"{pipeline}: not uniform over outcomes: {c}"
        flips = c[1::2].sum() / c.sum()
        assert abs(flips - 0.5) < 0.03, f"{pipeline}: flip rate {flips}"
    assert stats.chi2_contingency(np.stack([counts["device"], counts["torch"]])).pvalue > 1e-3
