"""scikit-learn's bundled 8x8 digits (1797 images, 10 classes), shipped inside sklearn."""

from __future__ import annotations

import gzip

import numpy as np
import torch

from dnnexp.data.arrays import Arrays
from dnnexp.data.bundled import bundled_file


def load(cfg: object = None) -> Arrays:
    path = bundled_file("digits.csv.gz")
    if path is not None:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float32)
        pixels, target = table[:, :-1], table[:, -1]
    else:  # a future sklearn layout: go through its public API
        from sklearn.datasets import load_digits

        pixels, target = load_digits(return_X_y=True)
    x = torch.as_tensor(pixels, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.as_tensor(target, dtype=torch.int64)
    return Arrays(x, y, [str(i) for i in range(10)])
