"""Readers for the user's own files: an image folder (torchvision's ``ImageFolder`` layout) and an ``.npz``.

    data=image_folder data.root=DIR    DIR/train/<class>/<image>, DIR/test/<class>/<image> [, DIR/val/...]
    data=npz data.path=FILE            x_train, y_train, x_test, y_test [, x_val, y_val]

Both end in ``custom.to_image_data``, so the validation split, the normalisation and the augmentation keys
act as for every other data set. A run's identity holds what the files are, not where: ``folder_digest``
(every image's relative path and size, as Tiny ImageNet's cache does; reading every byte would cost a pass
over the data each time an identity is computed) and the ``.npz`` file's SHA-256.
"""

from __future__ import annotations

import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssa_experiments.config.schema import ConfigError
from ssa_experiments.config.sources import folder_index
from ssa_experiments.data.base import ImageData
from ssa_experiments.data.custom import to_image_data

NPZ_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test"), "val": ("x_val", "y_val")}


def decode(paths: list[Path], size: int | None, channels: int) -> torch.Tensor:
    """Images as uint8 (N, C, H, W): converted to RGB (3) or greyscale (1), resized to ``size`` x ``size``
    (bilinear) if given, else all of the first image's size. Decoded in threads (PIL releases the GIL)."""
    from PIL import Image

    mode = {3: "RGB", 1: "L"}[channels]

    def one(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            img = im.convert(mode)
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8).reshape(img.size[1], img.size[0], channels)

    workers = min(16, (os.cpu_count() or 1) + 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(one, paths))
    h, w = arrays[0].shape[:2]
    odd = next((p for p, a in zip(paths, arrays, strict=True) if a.shape[:2] != (h, w)), None)
    if odd is not None:
        raise ConfigError("data.image_size", f"{odd} is not {w}x{h} as {paths[0]} is: set data.image_size")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def read_image_folder(cfg: Any) -> ImageData:
    """``data=image_folder``: the folder's images as uint8, labels from the class folders."""
    if cfg.channels not in (1, 3):
        raise ConfigError("data.channels", f"must be 3 (RGB) or 1 (greyscale), got {cfg.channels}")
    if cfg.image_size is not None and cfg.image_size < 1:
        raise ConfigError("data.image_size", f"must be >= 1 or null, got {cfg.image_size}")
    index = folder_index(Path(cfg.root).expanduser())
    paths = [p for items in index.values() for p, _ in items]
    x = decode(paths, cfg.image_size, cfg.channels)  # all splits at once: one common size
    splits, start = {}, 0
    for split, items in index.items():
        labels = torch.tensor([label for _, label in items], dtype=torch.int64)
        splits[split] = (x[start : start + len(items)], labels)
        start += len(items)
    return to_image_data("image_folder", splits, cfg, "data.root")


def read_npz(cfg: Any) -> ImageData:
    """``data=npz``: the arrays of one ``.npz`` file (no pickles: ``allow_pickle=False``)."""
    path = Path(cfg.path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for split in ("train", "test") for k in NPZ_KEYS[split] if k not in f.files]
            if missing:
                raise ConfigError("data.path", f"{path} lacks {missing}; it holds {sorted(f.files)}")
            has_val = all(k in f.files for k in NPZ_KEYS["val"])
            splits = {s: (f[x], f[y]) for s, (x, y) in NPZ_KEYS.items() if s != "val" or has_val}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ConfigError("data.path", f"cannot read {path} as .npz: {' '.join(str(err).split())}") from None
    return to_image_data("npz", splits, cfg, "data.path")
