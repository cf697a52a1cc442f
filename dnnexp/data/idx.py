"""MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST ship the same four), from `data.root`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dnnexp.data.arrays import Arrays
from dnnexp.data.local_files import DataError, existing, read_maybe_gzipped

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
LAYOUT = "DIR/" + ", DIR/".join(name for pair in FILES.values() for name in pair) + " (or .gz)"
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # uint8 data, 3 and 1 dimensions
CLASSES = 10  # MNIST, Fashion-MNIST and KMNIST alike


def parse(data: bytes, path: Path, magic: int) -> np.ndarray:
    """One IDX file as a uint8 array: a big-endian magic number, the dimensions, the data."""
    dims = magic & 0xFF
    if len(data) < 4 + 4 * dims or int.from_bytes(data[:4], "big") != magic:
        got = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
        raise DataError(
            f"{path}: not an IDX file of this kind (magic number {got}, expected {magic})"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected = 4 + 4 * dims + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(
            f"{path}: {len(data)} bytes, but its header {shape} needs {expected}:"
            " truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(cfg) -> Arrays:
    root = existing(cfg.root, "data.root", LAYOUT)
    parts = {}
    for split, (images_name, labels_name) in FILES.items():
        images, images_path = read_maybe_gzipped(root, images_name, "data.root", LAYOUT)
        labels, labels_path = read_maybe_gzipped(root, labels_name, "data.root", LAYOUT)
        x = parse(images, images_path, IMAGES_MAGIC)
        y = parse(labels, labels_path, LABELS_MAGIC)
        if len(x) != len(y):
            raise DataError(
                f"{images_path} holds {len(x)} images but {labels_path} {len(y)} labels"
            )
        if len(y) and int(y.max()) >= CLASSES:
            raise DataError(
                f"{labels_path}: label {int(y.max())} is out of range (0..{CLASSES - 1})"
            )
        parts[split] = (
            torch.from_numpy(x.copy()).unsqueeze(1),
            torch.from_numpy(y.astype(np.int64)),
        )
    (x, y), (x_test, y_test) = parts["train"], parts["test"]
    return Arrays(x, y, [str(i) for i in range(CLASSES)], x_test, y_test)
