"""Readers for the on-disk data sets, CIFAR-10, CIFAR-100 and Tiny ImageNet, in their official layouts.

Each reader turns the files into an ``ImageData`` (uint8 NCHW images, int64 labels) so the loaders in
``loaders.py`` never touch the disk again. Nothing is downloaded: the machines that run sweeps often have no
network, and a silent download inside a sweep would race between runs. When files are missing, the reader
raises a one-line ``ConfigError`` that names the exact path it looked for and where to get the data.

Why parse the files here rather than through ``torchvision.datasets``: torchvision checks md5 sums of every
file (so a partial copy, or the small fixtures our tests generate, cannot be read), builds per-sample PIL
images we do not need, and has no Tiny ImageNet class at all. The parsing below follows torchvision's CIFAR
code exactly (same files, keys and reshape), and the tests check that torchvision reads our fixtures the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssa_experiments.config.schema import ConfigError, DataConfig
from ssa_experiments.data.base import CIFAR10_STATS, CIFAR100_STATS, TINY_IMAGENET_STATS, ImageData

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
ROOT_HINT = "then set data.root=<that directory> or SSA_DATA_DIR"


def _missing(what: str, path: Path, how: str) -> ConfigError:
    """The one error every reader raises for absent files: which path, and how to obtain it."""
    return ConfigError("data.root", f"{what} not found: missing {path}. {how}; {ROOT_HINT}")


# ---------------------------------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class _CifarSpec:
    """What differs between CIFAR-10 and CIFAR-100 (the on-disk format is otherwise the same)."""

    name: str
    title: str
    folder: str  # directory inside the archive
    archive: str  # file to download from CIFAR_URL
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    stats: tuple[tuple[float, ...], tuple[float, ...]]


CIFAR10 = _CifarSpec(
    name="cifar10",
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    label_key="labels",
    num_classes=10,
    stats=CIFAR10_STATS,
)
CIFAR100 = _CifarSpec(
    name="cifar100",
    title="CIFAR-100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    train_files=("train",),
    test_files=("test",),
    label_key="fine_labels",  # the 100-class labels; "coarse_labels" are the 20 superclasses
    num_classes=100,
    stats=CIFAR100_STATS,
)


def _cifar_dir(spec: _CifarSpec, root: Path) -> Path:
    """Accept both ``root`` = the directory holding ``cifar-10-batches-py/`` and ``root`` = that directory.

    The first is torchvision's convention (``CIFAR10(root=...)``); the second is what people pass when they
    point at the extracted folder directly. Anything else resolves to the first, for the error message.
    """
    if (root / spec.folder).is_dir():
        return root / spec.folder
    if (root / spec.train_files[0]).is_file():
        return root
    return root / spec.folder


def _load_pickle(path: Path) -> dict[str, Any]:
    """One pickled CIFAR batch as a dict with ``str`` keys.

    The official files were written by Python 2, so their keys come back as ``bytes`` under
    ``encoding="bytes"`` (the recipe on the CIFAR page); a file re-pickled by Python 3 may have ``str`` keys.
    Normalising here accepts both. ``encoding="bytes"`` also keeps the numpy payload as raw bytes.
    Pickle can run code: only point ``data.root`` at files you trust (the same caveat as torchvision).
    """
    try:
        with path.open("rb") as f:
            entry = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise ConfigError("data.root", f"{path} is not a readable CIFAR pickle ({e}); re-extract it") from e
    if not isinstance(entry, dict):
        raise ConfigError("data.root", f"{path} is not a CIFAR batch (a {type(entry).__name__}, not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _read_cifar_split(spec: _CifarSpec, files: Sequence[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate batches into (N,3,32,32) uint8 and (N,) int64, the way torchvision does.

    Each row of ``data`` is 3072 bytes: the 1024 red pixels row-major, then green, then blue, so a plain
    reshape to (N, 3, 32, 32) is already NCHW (torchvision then transposes to HWC for PIL; we do not).
    """
    xs, ys = [], []
    for path in files:
        entry = _load_pickle(path)
        if "data" not in entry or spec.label_key not in entry:
            raise ConfigError(
                "data.root",
                f"{path} has keys {sorted(entry)}, expected 'data' and {spec.label_key!r}: "
                f"is it a {spec.title} file ({spec.archive})?",
            )
        data = np.asarray(entry["data"])
        labels = np.asarray(entry[spec.label_key], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ConfigError(
                "data.root", f"{path}: 'data' is {data.dtype}{data.shape}, expected uint8 (N, 3072)"
            )
        if labels.shape != (data.shape[0],):
            raise ConfigError("data.root", f"{path}: {len(labels)} labels for {data.shape[0]} images")
        if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
            raise ConfigError(
                "data.root", f"{path}: labels outside [0, {spec.num_classes}): is it a {spec.title} file?"
            )
        xs.append(data)
        ys.append(labels)
    x = np.concatenate(xs).reshape(-1, 3, 32, 32)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.concatenate(ys))


def _read_cifar(spec: _CifarSpec, cfg: DataConfig, root: Path) -> ImageData:
    base = _cifar_dir(spec, Path(root))
    train = [base / f for f in spec.train_files]
    test = [base / f for f in spec.test_files]
    for path in train + test:
        if not path.is_file():
            raise _missing(
                spec.title,
                path,
                f"Download the python version ({spec.archive}) from {CIFAR_URL} and extract it "
                f"into a directory (it creates {spec.folder}/)",
            )
    train_x, train_y = _read_cifar_split(spec, train)
    test_x, test_y = _read_cifar_split(spec, test)
    mean, std = spec.stats
    return ImageData(
        name=spec.name,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=spec.num_classes,
        mean=mean,
        std=std,
        crop_padding=cfg.crop_padding,  # paper convention 4 for CIFAR; the data yaml sets it
        flip=cfg.flip,
    )


def read_cifar10(cfg: DataConfig, root: Path) -> ImageData:
    """CIFAR-10 from torchvision's on-disk layout (``cifar-10-batches-py/``): 50,000 train, 10,000 test."""
    return _read_cifar(CIFAR10, cfg, root)


def read_cifar100(cfg: DataConfig, root: Path) -> ImageData:
    """CIFAR-100 (fine labels) from torchvision's on-disk layout (``cifar-100-python/``)."""
    return _read_cifar(CIFAR100, cfg, root)


# ---------------------------------------------------------------------------------------------- Tiny ImageNet

TINY_DIR = "tiny-imagenet-200"
TINY_SIZE = 64
CACHE_NAME = "ssa_cache_uint8.pt"
CACHE_VERSION = 1
_TINY_HOW = f"Download {TINY_IMAGENET_URL} and unzip it (it creates {TINY_DIR}/)"
_JPEG_SUFFIXES = (".jpeg", ".jpg")


@dataclass(frozen=True)
class _TinyIndex:
    """Every file the Tiny ImageNet reader will decode, with its label, in a fixed order."""

    wnids: list[str]  # sorted: class index = position here
    train_paths: list[Path]
    train_labels: list[int]
    val_paths: list[Path]
    val_labels: list[int]
    fingerprint: str  # changes when the set of files (names, sizes) or the annotations change


def _tiny_dir(root: Path) -> Path:
    """Accept ``root`` = the directory holding ``tiny-imagenet-200/``, or ``root`` = that directory."""
    if (root / TINY_DIR / "wnids.txt").is_file():
        return root / TINY_DIR
    if (root / "wnids.txt").is_file():
        return root
    return root / TINY_DIR


def _tiny_index(base: Path) -> _TinyIndex:
    """List train and val images with labels, checking that every file the layout promises is there.

    Class index = position of the wnid in sorted ``wnids.txt`` (the convention of ImageFolder-style
    loaders, so indices agree with other code trained on this set). Train order: by class, then file name.
    Val order: as listed in ``val_annotations.txt``. The fingerprint covers names and sizes (not mtimes), so a
    copied directory keeps a valid cache while a changed file set invalidates it.
    """
    wnids_file = base / "wnids.txt"
    if not wnids_file.is_file():
        raise _missing("Tiny ImageNet", wnids_file, _TINY_HOW)
    raw = [line.strip() for line in wnids_file.read_text().splitlines() if line.strip()]
    if not raw or len(set(raw)) != len(raw):
        raise ConfigError(
            "data.root", f"{wnids_file}: expected one distinct wnid per line, got {len(raw)} lines"
        )
    wnids = sorted(raw)
    class_of = {w: i for i, w in enumerate(wnids)}
    digest = hashlib.sha256()
    digest.update(f"v{CACHE_VERSION}\n".encode())
    digest.update("\n".join(wnids).encode())

    train_paths: list[Path] = []
    train_labels: list[int] = []
    for wnid in wnids:
        folder = base / "train" / wnid / "images"
        if not folder.is_dir():
            raise _missing("Tiny ImageNet", folder, _TINY_HOW)
        with os.scandir(folder) as it:
            entries = sorted(
                (e.name, e.stat().st_size) for e in it if e.name.lower().endswith(_JPEG_SUFFIXES)
            )
        if not entries:
            raise ConfigError("data.root", f"{folder} holds no .JPEG images; re-extract {TINY_DIR}")
        for name, size in entries:
            train_paths.append(folder / name)
            train_labels.append(class_of[wnid])
            digest.update(f"t/{wnid}/{name}:{size}\n".encode())

    ann_file = base / "val" / "val_annotations.txt"
    if not ann_file.is_file():
        raise _missing("Tiny ImageNet", ann_file, _TINY_HOW)
    ann_text = ann_file.read_text()
    digest.update(ann_text.encode())
    val_paths: list[Path] = []
    val_labels: list[int] = []
    for lineno, line in enumerate(ann_text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in class_of:
            raise ConfigError(
                "data.root",
                f"{ann_file}:{lineno}: expected 'file<TAB>wnid<TAB>...' with a wnid from wnids.txt",
            )
        path = base / "val" / "images" / fields[0]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise _missing("Tiny ImageNet", path, _TINY_HOW) from None
        val_paths.append(path)
        val_labels.append(class_of[fields[1]])
        digest.update(f"v/{fields[0]}:{size}\n".encode())
    if not val_paths:
        raise ConfigError("data.root", f"{ann_file} lists no images; re-extract {TINY_DIR}")
    return _TinyIndex(wnids, train_paths, train_labels, val_paths, val_labels, digest.hexdigest())


def decode_images(paths: Sequence[Path], size: int = TINY_SIZE) -> np.ndarray:
    """Decode JPEGs to an (N, size, size, 3) uint8 array, in parallel threads.

    PIL releases the GIL while decoding, so threads scale without the copies a process pool needs.
    ``convert("RGB")`` matters: a few Tiny ImageNet images are greyscale JPEGs.
    """
    from PIL import Image

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def one(i: int) -> None:
        with Image.open(paths[i]) as im:
            rgb = im.convert("RGB")
        if rgb.size != (size, size):
            raise ConfigError(
                "data.root",
                f"{paths[i]} is {rgb.size[0]}x{rgb.size[1]}, expected {size}x{size}: not Tiny ImageNet?",
            )
        out[i] = np.asarray(rgb)

    workers = min(32, (os.cpu_count() or 1) + 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(one, range(len(paths)), chunksize=256):
            pass  # consume, so the first error in any thread is raised here
    return out


def _load_cache(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The cached tensors if the cache exists, loads, and was built from the same files; else None."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: decode again rather than fail the run
        warnings.warn(f"ignoring unreadable cache {path} ({e}); decoding the JPEGs again", stacklevel=3)
        return None
    if not isinstance(payload, dict) or payload.get("fingerprint") != fingerprint:
        return None
    return payload


def _save_cache(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (temp file in the same directory + ``os.replace``), so concurrent runs of a sweep
    that decode at the same time never see a half-written cache. A read-only data directory just means no
    cache: the next run decodes again."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        torch.save(payload, tmp)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        warnings.warn(
            f"could not write cache {path} ({e}); the JPEGs will be decoded again next run", stacklevel=3
        )
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def read_tiny_imagenet(cfg: DataConfig, root: Path) -> ImageData:
    """Tiny ImageNet (200 classes, 64x64) in the official zip layout; the labelled val split is the test set.

    Decoding 110,000 JPEGs takes a while, so the decoded uint8 tensors are cached next to the data
    (``tiny-imagenet-200/ssa_cache_uint8.pt``, about 1.4 GB) and reused while the files are unchanged.
    """
    base = _tiny_dir(Path(root))
    index = _tiny_index(base)
    cache_path = base / CACHE_NAME
    payload = _load_cache(cache_path, index.fingerprint)
    if payload is None:
        payload = {
            "version": CACHE_VERSION,
            "fingerprint": index.fingerprint,
            "wnids": index.wnids,
            "train_x": _to_nchw(decode_images(index.train_paths)),
            "train_y": torch.tensor(index.train_labels, dtype=torch.int64),
            "test_x": _to_nchw(decode_images(index.val_paths)),
            "test_y": torch.tensor(index.val_labels, dtype=torch.int64),
        }
        _save_cache(cache_path, payload)
    mean, std = TINY_IMAGENET_STATS
    return ImageData(
        name="tiny_imagenet",
        train_x=payload["train_x"],
        train_y=payload["train_y"],
        test_x=payload["test_x"],
        test_y=payload["test_y"],
        num_classes=len(index.wnids),
        mean=mean,
        std=std,
        crop_padding=cfg.crop_padding,
        flip=cfg.flip,
    )
