"""The user's files and code as data sets (data/files.py, data/custom.py): an image folder read as
torchvision's ImageFolder reads it, an .npz file, a function returning tensors or torch Datasets; each with
the framework's validation split and normalisation, and refused in one line naming the field when wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import custom_cfg, user_module
from PIL import Image

from ssa_experiments.config.schema import ConfigError
from ssa_experiments.data.base import channel_stats
from ssa_experiments.data.datasets import load_data, split_validation
from ssa_experiments.training.run import run

CLASSES = ("cat", "dog", "emu")  # sorted: class index = position


def write_folder(root: Path, size: tuple[int, int] = (8, 6), per_class: int = 6, val: bool = False) -> Path:
    """root/{train,test[,val]}/<class>/<i>.png: random RGB images (seeded), ``per_class`` train images."""
    rng = np.random.default_rng(0)
    splits = {"train": per_class, "test": 2, **({"val": 2} if val else {})}
    for split, n in splits.items():
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i:02d}.png")
    return root


def folder_cfg(tmp_path: Path, root: Path, *overrides: str):
    return custom_cfg(tmp_path, "model=small_cnn", "data=image_folder", f"data.root={root}", *overrides).data


def test_an_image_folder_is_read_as_torchvision_reads_it(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.v2.functional import pil_to_tensor

    root = write_folder(tmp_path / "images")
    data = load_data(folder_cfg(tmp_path, root, "data.val_fraction=0"))
    for split, (x, y) in {"train": (data.train_x, data.train_y), "test": (data.test_x, data.test_y)}.items():
        reference = ImageFolder(str(root / split))
        assert reference.classes == list(CLASSES)
        assert torch.equal(x, torch.stack([pil_to_tensor(img) for img, _ in reference]))
        assert y.tolist() == reference.targets
    assert data.num_classes == 3 and data.image_shape == (3, 6, 8)
    assert data.mean == pytest.approx(channel_stats(data.train_x)[0])


def test_an_image_folder_resized_greyscale_with_the_validation_split(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "images")
    data = load_data(folder_cfg(tmp_path, root, "data.image_size=4", "data.channels=1"))
    assert data.image_shape == (1, 4, 4) and data.train_x.dtype == torch.uint8
    labels = torch.tensor([i for i in range(3) for _ in range(6)])
    _, val_idx = split_validation(labels, 0.1, 0)  # the framework's split, as for the built-in sets
    assert len(data.val_y) == len(val_idx) and len(data.train_y) == 18 - len(val_idx)


def test_an_image_folder_with_its_own_val_folder_keeps_it(tmp_path: Path) -> None:
    data = load_data(folder_cfg(tmp_path, write_folder(tmp_path / "images", val=True)))
    assert len(data.train_y) == 18 and len(data.val_y) == 6


def test_images_of_two_sizes_need_an_image_size(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "images")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(root / "train" / "dog" / "odd.png")
    with pytest.raises(ConfigError, match=r"^data.image_size: .*odd.png is not 8x6"):
        load_data(folder_cfg(tmp_path, root))
    assert load_data(folder_cfg(tmp_path, root, "data.image_size=5")).image_shape == (3, 5, 5)


def test_a_test_class_train_lacks_is_refused(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "images")
    (root / "test" / "yak").mkdir()
    with pytest.raises(ConfigError, match=r"^data.root: .*classes \['yak'\]"):
        load_data(folder_cfg(tmp_path, root))


def write_npz(path: Path, **extra: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (30, 3, 8, 8), dtype=np.uint8),
        "y_train": np.arange(30) % 3,
        "x_test": rng.integers(0, 256, (9, 3, 8, 8), dtype=np.uint8),
        "y_test": np.arange(9) % 3,
        **extra,
    }
    np.savez(path, **arrays)
    return arrays


def npz_cfg(tmp_path: Path, path: Path, *overrides: str):
    return custom_cfg(tmp_path, "model=small_cnn", "data=npz", f"data.path={path}", *overrides).data


def test_an_npz_file_is_its_arrays(tmp_path: Path) -> None:
    arrays = write_npz(tmp_path / "d.npz")
    data = load_data(npz_cfg(tmp_path, tmp_path / "d.npz", "data.val_fraction=0"))
    assert torch.equal(data.train_x, torch.from_numpy(arrays["x_train"]))
    assert torch.equal(data.test_y, torch.from_numpy(arrays["y_test"]))
    with_val = write_npz(tmp_path / "v.npz", x_val=np.zeros((4, 3, 8, 8), np.uint8), y_val=np.arange(4) % 3)
    data = load_data(
        npz_cfg(tmp_path, tmp_path / "v.npz", "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]")
    )
    assert len(data.train_y) == 30 and torch.equal(data.val_y, torch.from_numpy(with_val["y_val"]))
    assert data.mean == (0.5, 0.5, 0.5) and data.std == (0.25, 0.25, 0.25)


def test_npz_signals_are_float_samples(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    np.savez(
        tmp_path / "s.npz", x_train=rng.normal(size=(20, 1, 40)), y_train=np.arange(20) % 2,
        x_test=rng.normal(size=(6, 1, 40)), y_test=np.arange(6) % 2,
    )  # fmt: skip
    data = load_data(npz_cfg(tmp_path, tmp_path / "s.npz"))
    assert data.train_x.dtype == torch.float32 and data.image_shape == (1, 40) and data.input_scale == 1.0


@pytest.mark.parametrize(
    ("arrays", "field", "says"),
    [
        ({"y_test": np.arange(8) % 3}, "data.path", "test labels have shape (8,), need (9,)"),
        ({"x_test": np.zeros((9, 3, 8, 8), np.int32)}, "data.path", "int32"),
        ({"x_test": np.zeros((9, 3, 4, 4), np.uint8)}, "data.path", "every split needs the same"),
        ({"y_train": np.arange(30) - 1}, "data.path", "class indices 0..K-1"),
    ],
)
def test_bad_arrays_are_one_line_naming_the_field(tmp_path: Path, arrays, field: str, says: str) -> None:
    write_npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(ConfigError) as err:
        load_data(npz_cfg(tmp_path, tmp_path / "d.npz"))
    assert err.value.field_name == field and says in str(err.value) and "\n" not in str(err.value)


def test_an_npz_lacking_an_array_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x_train=np.zeros((2, 1, 4, 4), np.uint8))
    with pytest.raises(ConfigError, match=r"^data.path: .*lacks \['y_train', 'x_test', 'y_test'\]"):
        load_data(npz_cfg(tmp_path, tmp_path / "d.npz"))


def test_custom_data_as_tensors_and_as_datasets_is_one_data_set(tmp_path: Path, monkeypatch) -> None:
    user_module(tmp_path, monkeypatch)
    tensors = load_data(custom_cfg(tmp_path, "data=custom", "data._target_=byo_user.make_data").data)
    datasets = load_data(custom_cfg(tmp_path, "data=custom", "data._target_=byo_user.make_datasets").data)
    assert torch.equal(tensors.test_x, datasets.test_x) and torch.equal(tensors.test_y, datasets.test_y)
    import byo_user

    (x, _), _ = byo_user.make_data(240)
    assert torch.equal(datasets.val_x, x[:24]) and torch.equal(datasets.train_x, x[24:])  # kept as returned
    assert len(datasets.train_y) == 216 and len(datasets.val_y) == 24
    with pytest.raises(ConfigError, match=r"^data._target_: returned a int: need \(train, test\)"):
        load_data(custom_cfg(tmp_path, "data=custom", "data._target_=byo_user.bad_data").data)


def test_a_run_on_an_image_folder(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "images", per_class=10)
    summary = run(
        custom_cfg(
            tmp_path, "model=small_cnn", "model.width=4", "data=image_folder", f"data.root={root}",
            "data.crop_padding=1", "data.flip=true", "method=one_shot", "parent.epochs=1",
        )
    )  # fmt: skip
    assert summary["status"] == "completed" and summary["data"] == "image_folder"
