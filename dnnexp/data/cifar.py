"""CIFAR-10 and CIFAR-100, the *binary* versions, from `data.root`.

CIFAR-10: data_batch_1.bin ... data_batch_5.bin and test_batch.bin, records of 1 label byte +
3072 pixel bytes (3x32x32). CIFAR-100: train.bin and test.bin, records of a coarse and a fine
label byte + 3072 pixel bytes. One np.frombuffer per file, no per-record Python.
The Python version (pickles) is refused: unpickling a file can run arbitrary code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dnnexp.data.arrays import Arrays
from dnnexp.data.local_files import DataError, existing

PIXELS = 3 * 32 * 32
CIFAR10 = {
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
    "labels": 1,
    "meta": "batches.meta.txt",
    "classes": 10,
    "pickle": "data_batch_1",
    "download": "cifar-10-binary.tar.gz",
}
CIFAR100 = {
    "train": ["train.bin"],
    "test": ["test.bin"],
    "labels": 2,
    "meta": "fine_label_names.txt",
    "classes": 100,  # fine; 20 coarse
    "pickle": "train",
    "download": "cifar-100-binary.tar.gz",
}


def _read_split(
    paths: list[Path], label_bytes: int, label_index: int, count: int, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (N, 3, 32, 32) uint8 and labels of one split's files. The pixels are copied
    once, file by file, into one preallocated array: peak memory is the images plus one file."""
    size = label_bytes + PIXELS
    sizes = [path.stat().st_size for path in paths]
    for path, nbytes in zip(paths, sizes, strict=True):
        if nbytes == 0 or nbytes % size:
            raise DataError(
                f"{path}: {nbytes} bytes is not a whole number of {size}-byte CIFAR records:"
                " truncated, or not the binary version"
            )
    total = sum(sizes) // size
    x = np.empty((total, 3, 32, 32), dtype=np.uint8)
    y = np.empty(total, dtype=np.int64)
    start = 0
    for path in paths:
        table = np.frombuffer(path.read_bytes(), dtype=np.uint8).reshape(-1, size)
        labels = table[:, label_index]
        top = int(labels.max())
        if top >= count:
            raise DataError(f"{path}: label {top} is out of range for {name}'s {count} classes")
        stop = start + len(table)
        x[start:stop] = table[:, label_bytes:].reshape(-1, 3, 32, 32)
        y[start:stop] = labels
        start = stop
    return torch.from_numpy(x), torch.from_numpy(y)


def _read(cfg, spec: dict, name: str) -> Arrays:
    layout = f"DIR/{', DIR/'.join(spec['train'] + spec['test'])} (the binary version)"
    root = existing(cfg.root, "data.root", layout)
    if (root / spec["pickle"]).is_file() and not (root / spec["train"][0]).is_file():
        raise DataError(
            f"data.root={cfg.root} holds the Python (pickle) version of {name}, which dnnexp does"
            f" not unpickle (that can run code): download the binary version, {spec['download']}"
        )
    coarse = spec["labels"] == 2 and cfg.get("label", "fine") == "coarse"
    label_index = spec["labels"] - 1 - int(coarse)  # the fine label is the second byte
    count = 20 if coarse else spec["classes"]
    parts = []
    for split in ("train", "test"):
        paths = [root / file for file in spec[split]]
        for path in paths:
            if not path.is_file():
                raise DataError(f"data.root={cfg.root}: no {path.name} there; expected {layout}")
        parts.append(_read_split(paths, spec["labels"], label_index, count, name))
    names_file = root / ("coarse_label_names.txt" if coarse else spec["meta"])
    classes = [str(i) for i in range(count)]
    if names_file.is_file():  # the class names the archive ships
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        classes = names if len(names) == count else classes
    (x, y), (x_test, y_test) = parts
    return Arrays(x, y, classes, x_test, y_test)


def load_cifar10(cfg) -> Arrays:
    return _read(cfg, CIFAR10, "CIFAR-10")


def load_cifar100(cfg) -> Arrays:
    return _read(cfg, CIFAR100, "CIFAR-100")
