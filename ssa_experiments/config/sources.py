"""What a data set read from the user's files is, torch-free (a run's identity and its parent's key hold it,
and the config layer computes those): an image folder's index and digest. ``data/files.py`` reads the images
the index lists, so the two never disagree on what the folder holds.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ssa_experiments.config.schema import ConfigError

# torchvision's IMG_EXTENSIONS (datasets/folder.py), compared case-insensitively
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
FOLDER_SPLITS = ("train", "test", "val")  # val optional


def folder_index(root: Path) -> dict[str, list[tuple[Path, int]]]:
    """Each split's (image, class index) pairs: classes are train/'s sorted sub-folders (ImageFolder's rule),
    images sorted by name within a class. ``val`` only if the folder has one."""
    train = root / "train"
    if not train.is_dir() or not (root / "test").is_dir():
        raise ConfigError("data.root", f"{root} needs train/ and test/ folders, one sub-folder per class")
    classes = sorted(e.name for e in os.scandir(train) if e.is_dir())
    if not classes:
        raise ConfigError("data.root", f"{train} has no class sub-folders")
    index: dict[str, list[tuple[Path, int]]] = {}
    for split in FOLDER_SPLITS:
        folder = root / split
        if not folder.is_dir():
            continue
        found = sorted(e.name for e in os.scandir(folder) if e.is_dir())
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ConfigError("data.root", f"{folder} has classes {unknown[:3]} that train/ does not")
        items = [
            (folder / c / name, i)
            for i, c in enumerate(classes)
            if (folder / c).is_dir()
            for name in sorted(os.listdir(folder / c))
            if name.lower().endswith(IMAGE_SUFFIXES)
        ]
        if not items:
            raise ConfigError("data.root", f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        index[split] = items
    return index


def folder_digest(root: str | Path) -> str:
    """What an image folder holds, for a run's identity: every image's split/class/name and size in bytes."""
    digest = hashlib.sha256()
    for split, items in folder_index(Path(root)).items():
        for path, label in items:
            digest.update(f"{split}/{label}/{path.parent.name}/{path.name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()
