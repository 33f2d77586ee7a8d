"""Generate a tiny image folder in torchvision's ImageFolder layout: three classes of synthetic shapes.

    python examples/custom_data/make_folder.py outputs/examples/custom_data/shapes --per-class 40

writes ``ROOT/train/<class>/*.png`` and ``ROOT/test/<class>/*.png`` (classes: circle, square, triangle),
each a 16x16 RGB image of one filled shape at a random position, size and colour on a noisy background. The
same seed gives the same files. Train on it with ``data=image_folder data.root=ROOT``; a folder of your own
photographs in the same layout works the same way."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 16
CLASSES = ("circle", "square", "triangle")


def draw(shape: str, rng: random.Random) -> Image.Image:
    """One image: a noisy grey background and one filled ``shape`` in a random colour, size and place."""
    image = Image.new("RGB", (SIZE, SIZE))
    image.putdata([(v, v, v) for v in (rng.randrange(0, 140) for _ in range(SIZE * SIZE))])
    r = rng.randint(4, 6)  # half the shape's extent, in pixels
    cx, cy = rng.randint(r, SIZE - 1 - r), rng.randint(r, SIZE - 1 - r)
    colour = tuple(rng.randrange(90, 256) for _ in range(3))
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "square":
        pen.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return image


def make_folder(root: Path, per_class: int, test_per_class: int, seed: int = 0) -> None:
    """Write ``per_class`` train and ``test_per_class`` test images of every class under ``root``."""
    rng = random.Random(seed)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for shape in CLASSES:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                draw(shape, rng).save(folder / f"{i:04d}.png")


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("root", type=Path, help="the folder to write (train/ and test/ go inside)")
    parser.add_argument("--per-class", type=int, default=200, help="train images per class (default 200)")
    parser.add_argument("--test-per-class", type=int, default=50, help="test images per class (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_folder(args.root, args.per_class, args.test_per_class, args.seed)
    total = (args.per_class + args.test_per_class) * len(CLASSES)
    print(f"wrote {total} images of {len(CLASSES)} classes under {args.root}")


if __name__ == "__main__":
    main()
