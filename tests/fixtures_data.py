"""Small fake data sets in the real on-disk formats, for tests of the disk readers (no downloads here).

* CIFAR-10/100: torchvision's ``cifar-10-batches-py/`` and ``cifar-100-python/`` folders of pickled dicts.
  The official files were pickled by Python 2, so their keys and the numpy payload are Python-2 ``str``
  opcodes: read back as ``bytes`` under ``encoding="bytes"`` (the CIFAR page's recipe) and as ``str`` under
  ``encoding="latin1"`` (torchvision). ``_Py2Pickler`` writes ``bytes`` the same way, so both readers see
  these fixtures exactly as they see the real files.
* Tiny ImageNet: the official zip's ``tiny-imagenet-200/`` tree with real JPEGs, ``wnids.txt`` (not sorted,
  like the original), ``words.txt``, per-class ``*_boxes.txt`` and ``val/val_annotations.txt``.

Content is random from a fixed seed. Each maker returns what it wrote so tests can check the round trip.
"""

from __future__ import annotations

import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table can be extended
    """Protocol 2 with ``bytes`` written as Python 2 ``str`` opcodes (BINSTRING), as in the originals."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj: object, path: Path) -> None:
    """Write ``obj`` the way Python 2's cPickle (protocol 2) wrote the CIFAR batches."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


@dataclass(frozen=True)
class CifarFixture:
    """What a CIFAR maker wrote: images NCHW uint8 in file order, labels int64, and the folder."""

    folder: Path
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def _cifar_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random images whose red plane is bright, green mid and blue dark, so a channel mix-up is visible."""
    x = rng.integers(0, 64, size=(n, 3, 32, 32), dtype=np.uint8)
    x[:, 0] += 192
    x[:, 1] += 96
    return x


def _cifar_batch(x: np.ndarray, y: np.ndarray, label_key: bytes, batch_label: bytes) -> dict[bytes, object]:
    n = len(x)
    return {
        b"batch_label": batch_label,
        label_key: [int(v) for v in y],  # a Python list of ints, as in the originals
        b"data": np.ascontiguousarray(x.reshape(n, 3 * 32 * 32)),  # R plane, G plane, B plane, row-major
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(n)],
    }


def make_cifar10(root: Path, n_train_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> CifarFixture:
    """Write ``root/cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``, ``batches.meta``)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = _cifar_images(rng, n_train_per_batch)
        y = rng.integers(0, 10, size=n_train_per_batch).astype(np.int64)
        batch = _cifar_batch(x, y, b"labels", f"training batch {i} of 5".encode())
        py2_pickle(batch, folder / f"data_batch_{i}")
        xs.append(x)
        ys.append(y)
    test_x = _cifar_images(rng, n_test)
    test_y = rng.integers(0, 10, size=n_test).astype(np.int64)
    py2_pickle(_cifar_batch(test_x, test_y, b"labels", b"testing batch 1 of 1"), folder / "test_batch")
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    py2_pickle(
        {b"num_cases_per_batch": n_train_per_batch, b"label_names": names, b"num_vis": 3072},
        folder / "batches.meta",
    )
    return CifarFixture(folder, np.concatenate(xs), np.concatenate(ys), test_x, test_y)


def make_cifar100(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> CifarFixture:
    """Write ``root/cifar-100-python/`` (``train``, ``test``, ``meta``) with fine and coarse labels."""
    rng = np.random.default_rng(seed + 100)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _cifar_images(rng, n)
        fine = rng.integers(0, 100, size=n).astype(np.int64)
        batch = _cifar_batch(x, fine, b"fine_labels", f"{split}ing batch 1 of 1".encode())
        batch[b"coarse_labels"] = [int(v) // 5 for v in fine]  # any 0..19 values; readers must ignore them
        py2_pickle(batch, folder / split)
        out[split] = (x, fine)
    py2_pickle(
        {
            b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
        },
        folder / "meta",
    )
    return CifarFixture(folder, out["train"][0], out["train"][1], out["test"][0], out["test"][1])


@dataclass(frozen=True)
class TinyFixture:
    """What ``make_tiny_imagenet`` wrote. Images are the arrays before JPEG encoding (NCHW uint8).

    Train images are listed in the reader's order (class by sorted wnid, then file name); val images in
    ``val_annotations.txt`` order. Labels are indices into ``sorted_wnids``.
    """

    folder: Path
    file_wnids: list[str]  # wnids.txt line order (deliberately not sorted)
    sorted_wnids: list[str]
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    grey_train_index: int  # one train image is a greyscale JPEG, as some originals are


def _smooth_image(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A per-channel linear gradient (HWC uint8): JPEG at quality 100 without chroma subsampling keeps it
    within a few grey levels, so tests can compare pixels with a tight tolerance."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    chans = []
    for _ in range(3):
        a, b, c = rng.uniform(40, 215), rng.uniform(-40, 40), rng.uniform(-40, 40)
        chans.append(a + b * xx + c * yy)
    return np.clip(np.rint(np.stack(chans, axis=-1)), 0, 255).astype(np.uint8)


def _save_jpeg(img_hwc: np.ndarray, path: Path, grey: bool = False) -> np.ndarray:
    """Write a JPEG; return the image as an RGB reader should see it (greyscale replicated to 3 channels)."""
    from PIL import Image

    if grey:
        g = img_hwc[..., 0]
        Image.fromarray(g, mode="L").save(path, format="JPEG", quality=100)
        return np.repeat(g[..., None], 3, axis=-1)
    Image.fromarray(img_hwc, mode="RGB").save(path, format="JPEG", quality=100, subsampling=0)
    return img_hwc


def make_tiny_imagenet(
    root: Path, n_classes: int = 3, n_train_per_class: int = 4, n_val: int = 6, seed: int = 0
) -> TinyFixture:
    """Write ``root/tiny-imagenet-200/`` in the layout of the official zip (with fewer, smaller classes)."""
    rng = np.random.default_rng(seed + 200)
    folder = Path(root) / "tiny-imagenet-200"
    sorted_wnids = sorted({f"n{int(v):08d}" for v in rng.choice(10**8, size=n_classes, replace=False)})
    file_wnids = sorted_wnids[::-1]  # wnids.txt is not sorted in the original either
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in file_wnids))
    (folder / "words.txt").write_text("".join(f"{w}\tthing number {i}\n" for i, w in enumerate(file_wnids)))

    train_x, train_y = [], []
    grey_index = min(1, n_train_per_class - 1)  # the second train image of the first class, if any
    for label, wnid in enumerate(sorted_wnids):
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        names = [f"{wnid}_{i}.JPEG" for i in range(n_train_per_class)]
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text(
            "".join(f"{name}\t0\t0\t63\t63\n" for name in names)
        )
        grey_name = sorted(names)[grey_index] if label == 0 else None
        written = {name: _save_jpeg(_smooth_image(rng), images / name, name == grey_name) for name in names}
        for name in sorted(names):  # the reader's order
            train_x.append(written[name])
            train_y.append(label)

    val_images = folder / "val" / "images"
    val_images.mkdir(parents=True)
    val_x, val_y, lines = [], [], []
    for i in range(n_val):
        label = int(rng.integers(0, n_classes))
        name = f"val_{i}.JPEG"
        val_x.append(_save_jpeg(_smooth_image(rng), val_images / name))
        val_y.append(label)
        lines.append(f"{name}\t{sorted_wnids[label]}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))

    test_images = folder / "test" / "images"  # unlabelled in the original; readers ignore it
    test_images.mkdir(parents=True)
    _save_jpeg(_smooth_image(rng), test_images / "test_0.JPEG")

    def nchw(images: list[np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))

    return TinyFixture(
        folder=folder,
        file_wnids=file_wnids,
        sorted_wnids=sorted_wnids,
        train_x=nchw(train_x),
        train_y=np.asarray(train_y, dtype=np.int64),
        val_x=nchw(val_x),
        val_y=np.asarray(val_y, dtype=np.int64),
        grey_train_index=grey_index,
    )
