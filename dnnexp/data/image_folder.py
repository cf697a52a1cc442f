"""Labelled images in class folders: root/<class>/*.png|jpg|..., torchvision's ImageFolder
layout, or root/train/<class>/... and root/test/<class>/... with a test split of their own.
Decoded with Pillow; kept as uint8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dnnexp.data.arrays import Arrays
from dnnexp.data.local_files import DataError, existing

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
LAYOUT = "DIR/<class>/<image>.png (or .jpg, ...), or DIR/train/<class>/... and DIR/test/<class>/..."


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read(path: Path, size: int | None, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable image ({type(err).__name__})") from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def _folder(root: Path, classes: list[str] | None, size: int | None, channels: int):
    dirs = _class_dirs(root)
    names = [d.name for d in dirs]
    if not dirs:
        raise DataError(f"data.root={root}: no class subfolders; expected {LAYOUT}")
    if classes is not None and names != classes:
        raise DataError(f"{root}: class folders {names} differ from the training ones {classes}")
    images, labels = [], []
    for label, folder in enumerate(dirs):
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or path.is_dir():
                continue
            if path.suffix.lower() not in EXTENSIONS:
                raise DataError(
                    f"{path}: not an image file (expected {', '.join(sorted(EXTENSIONS))})"
                )
            images.append((path, _read(path, size, channels)))
            labels.append(label)
    if not images:
        raise DataError(f"data.root={root}: the class folders hold no images; expected {LAYOUT}")
    shapes = {pixels.shape for _, pixels in images}
    if len(shapes) > 1:
        (first, a), other = images[0], next(p for p, x in images if x.shape != images[0][1].shape)
        raise DataError(
            f"{other}: {tuple(_read(other, None, channels).shape[1:])} pixels, but {first} has"
            f" {tuple(a.shape[1:])}: set data.image_size to resize them all"
        )
    x = torch.from_numpy(np.stack([pixels for _, pixels in images]))
    return x, torch.tensor(labels, dtype=torch.int64), names


def load(cfg) -> Arrays:
    root = existing(cfg.root, "data.root", LAYOUT)
    if not root.is_dir():
        raise DataError(f"data.root={cfg.root} is not a directory; expected {LAYOUT}")
    size, channels = cfg.image_size, int(cfg.channels)
    if (root / "train").is_dir() and (root / "test").is_dir():
        x, y, classes = _folder(root / "train", None, size, channels)
        x_test, y_test, _ = _folder(root / "test", classes, size, channels)
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{root}/test: images of {tuple(x_test.shape[1:])}, train"
                f" {tuple(x.shape[1:])}: set data.image_size"
            )
        return Arrays(x, y, classes, x_test, y_test)
    x, y, classes = _folder(root, None, size, channels)
    return Arrays(x, y, classes)
