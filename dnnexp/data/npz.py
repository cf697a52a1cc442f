"""A NumPy .npz file: arrays x/y (split here), or x_train/y_train/x_test/y_test. Images
(N, C, H, W) or (N, H, W, C) (`data.layout`), sequences (N, T, F), tabular (N, F)."""

from __future__ import annotations

import zipfile

import numpy as np
import torch

from dnnexp.data.arrays import Arrays
from dnnexp.data.local_files import DataError, existing

LAYOUT = "arrays x and y, or x_train, y_train, x_test and y_test"


def _inputs(x: np.ndarray, layout: str, name: str, path) -> torch.Tensor:
    if x.ndim not in (2, 3, 4):
        raise DataError(
            f"{path}: {name} has shape {x.shape}; expected (N, features), (N, steps, features)"
            " or images (N, C, H, W) / (N, H, W, C)"
        )
    if x.ndim == 4 and layout == "nhwc":
        x = x.transpose(0, 3, 1, 2)
    if x.ndim == 3:  # a sequence of T steps of F features: one channel of T rows
        x = x[:, None]
    tensor = torch.from_numpy(np.ascontiguousarray(x))
    if tensor.dtype == torch.uint8 and tensor.ndim == 4:
        return tensor  # images as stored, normalized per batch
    if not (tensor.is_floating_point() or tensor.dtype in (torch.uint8, torch.int32, torch.int64)):
        raise DataError(f"{path}: {name} has dtype {x.dtype}; expected numbers")
    return tensor.float()


def _targets(y: np.ndarray, name: str, path) -> torch.Tensor:
    if y.ndim not in (1, 2) or not np.issubdtype(y.dtype, np.number):
        raise DataError(
            f"{path}: {name} has shape {y.shape} and dtype {y.dtype};"
            " expected numbers (N,) or (N, T)"
        )
    if np.issubdtype(y.dtype, np.integer) and y.ndim == 1:
        return torch.from_numpy(y.astype(np.int64))
    return torch.from_numpy(y.astype(np.float32))


def load(cfg) -> Arrays:
    path = existing(cfg.path, "data.path", f"an .npz file with {LAYOUT}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz file ({str(err).splitlines()[0]})") from None
    single = "x" in found or "y" in found
    pairs = [("x", "y")] if single else [("x_train", "y_train"), ("x_test", "y_test")]
    missing = [key for pair in pairs for key in pair if key not in found]
    if missing:
        raise DataError(
            f"{path}: no array {', '.join(missing)}; it holds {', '.join(sorted(found)) or 'none'}"
            f" (expected {LAYOUT})"
        )
    parts = []
    for x_key, y_key in pairs:
        x, y = found[x_key], found[y_key]
        if len(x) != len(y):
            raise DataError(f"{path}: {x_key} has {len(x)} rows but {y_key} {len(y)}")
        parts.append((_inputs(x, cfg.layout, x_key, path), _targets(y, y_key, path)))
    if len(parts) == 1:
        return Arrays(*parts[0])
    (x, y), (x_test, y_test) = parts
    if x.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{path}: x_train rows are {tuple(x.shape[1:])},"
            f" but x_test rows {tuple(x_test.shape[1:])}"
        )
    return Arrays(x, y, None, x_test, y_test)
