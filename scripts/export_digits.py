"""Write scikit-learn's digits in every local format dnnexp reads, to try the loaders without
downloading anything and to check that each reaches `data=digits`' accuracy.

    python scripts/export_digits.py OUT_DIR

OUT_DIR/mnist/     IDX files (train-images-idx3-ubyte.gz, ...), 8x8 grey
OUT_DIR/cifar10/   CIFAR-10 binary batches, upscaled to 32x32 and the channel repeated 3 times
OUT_DIR/images/    train/<digit>/*.png and test/<digit>/*.png
OUT_DIR/digits.csv and digits_test.csv   64 pixel columns p0..p63 and a label column
OUT_DIR/digits.npz x_train, y_train, x_test, y_test (uint8 images, N x 1 x 8 x 8)

The test split is `data=digits`' own (split_seed 0, 360 images); the rest is the training data.
Pixels 0..16 become 0..255.
"""

from __future__ import annotations

import argparse
import gzip
import struct
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import torch

    from dnnexp.data.digits import load
    from dnnexp.data.splits import stratified_split

    x, y = load()[:2]
    _, _, test = stratified_split(y, 0.1, 0.2, seed=0)
    is_test = torch.zeros(len(y), dtype=torch.bool)
    is_test[test] = True
    pixels = (x.numpy() * 16).clip(0, 255).astype(np.uint8)  # N x 1 x 8 x 8
    labels = y.numpy().astype(np.uint8)
    mask = is_test.numpy()
    return pixels[~mask], labels[~mask], pixels[mask], labels[mask]


def idx(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


def cifar(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    big = images.repeat(4, axis=2).repeat(4, axis=3).repeat(3, axis=1)  # N x 3 x 32 x 32
    records = np.concatenate([labels[:, None], big.reshape(len(big), -1)], axis=1)
    path.write_bytes(records.astype(np.uint8).tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    out = parser.parse_args().out
    x, y, x_test, y_test = split()

    (out / "mnist").mkdir(parents=True, exist_ok=True)
    for prefix, images, labels in (("train", x, y), ("t10k", x_test, y_test)):
        idx(out / "mnist" / f"{prefix}-images-idx3-ubyte.gz", images[:, 0])
        idx(out / "mnist" / f"{prefix}-labels-idx1-ubyte.gz", labels)

    (out / "cifar10").mkdir(exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(y)), 5), start=1):
        cifar(out / "cifar10" / f"data_batch_{i}.bin", x[part], y[part])
    cifar(out / "cifar10" / "test_batch.bin", x_test, y_test)
    (out / "cifar10" / "batches.meta.txt").write_text("\n".join(str(d) for d in range(10)) + "\n")

    from PIL import Image

    for split_name, images, labels in (("train", x, y), ("test", x_test, y_test)):
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            folder = out / "images" / split_name / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0]).save(folder / f"{i:04d}.png")

    header = ",".join(f"p{i}" for i in range(64)) + ",label"
    for name, images, labels in (("digits.csv", x, y), ("digits_test.csv", x_test, y_test)):
        rows = np.concatenate([images.reshape(len(images), -1), labels[:, None]], axis=1)
        np.savetxt(out / name, rows, fmt="%d", delimiter=",", header=header, comments="")

    np.savez(out / "digits.npz", x_train=x, y_train=y.astype(np.int64), x_test=x_test,
             y_test=y_test.astype(np.int64))  # fmt: skip
    print(f"wrote digits ({len(y)} train, {len(y_test)} test) in every format to {out}")


if __name__ == "__main__":
    main()
