"""A CSV table: `data.target` (one label column, or numeric target columns for regression),
features = `data.features` or every other numeric column; `data.test_path` for a test split."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from dnnexp.data.arrays import Arrays
from dnnexp.data.local_files import DataError, existing


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="") as f:
            table = [row for row in csv.reader(f) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: not a readable CSV file ({err})") from None
    if len(table) < 2:
        raise DataError(f"{path}: empty (expected a header row and at least one data row)")
    header = [name.strip() for name in table[0]]
    for number, row in enumerate(table[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: row {number} has {len(row)} cells, the header {len(header)}")
    return header, table[1:]


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _numbers(path: Path, rows: list[list[str]], column: int, name: str) -> np.ndarray:
    try:  # numpy's own conversion, faster than the checked loop below
        values = np.array([row[column] for row in rows], dtype=np.float64)
        if not np.isnan(values).any():
            return values
    except ValueError:
        pass  # an empty or non-numeric cell: the loop below names its row
    values = np.empty(len(rows), dtype=np.float64)
    for i, row in enumerate(rows):
        value = _number(row[column].strip())
        if row[column].strip() == "" or (value is not None and math.isnan(value)):
            raise DataError(f"{path}: row {i + 2}, column {name!r} is empty or NaN")
        if value is None:
            raise DataError(
                f"{path}: row {i + 2}, column {name!r} is not a number: {row[column]!r}"
            )
        values[i] = value
    return values


def _columns(
    cfg, header: list[str], rows: list[list[str]], path: Path
) -> tuple[list[str], list[str]]:
    targets = [cfg.target] if isinstance(cfg.target, str) else list(cfg.target)
    for name in targets + list(cfg.features or []):
        if name not in header:
            raise DataError(f"{path}: no column {name!r}; the columns are: {', '.join(header)}")
    if cfg.features:
        return targets, list(cfg.features)
    numeric = [
        name
        for i, name in enumerate(header)
        if name not in targets and _number(rows[0][i].strip()) is not None
    ]
    if not numeric:
        raise DataError(f"{path}: no numeric feature column besides {', '.join(targets)}")
    return targets, numeric


def _read(cfg, path: Path, columns: tuple[list[str], list[str]] | None, classes: list[str] | None):
    header, rows = _rows(path)
    targets, features = columns or _columns(cfg, header, rows, path)
    for name in targets + features:
        if name not in header:
            raise DataError(f"{path}: no column {name!r}; the columns are: {', '.join(header)}")
    x = np.stack([_numbers(path, rows, header.index(n), n) for n in features], axis=1)
    target_cells = [[row[header.index(n)].strip() for row in rows] for n in targets]
    if len(targets) == 1 and any(_number(c) is None for c in target_cells[0]):  # class names
        names = classes or sorted(set(target_cells[0]))
        unknown = sorted(set(target_cells[0]) - set(names))
        if unknown:
            raise DataError(f"{path}: labels {unknown} are not among the training labels {names}")
        index = {name: i for i, name in enumerate(names)}
        y = torch.tensor([index[c] for c in target_cells[0]], dtype=torch.int64)
    else:
        names = None
        y = torch.from_numpy(
            np.stack([_numbers(path, rows, header.index(n), n) for n in targets], axis=1)
        ).float()
        y = y[:, 0] if len(targets) == 1 else y
    return torch.from_numpy(x).float(), y, names, (targets, features)


def load(cfg) -> Arrays:
    path = existing(cfg.path, "data.path", "a CSV file with a header row")
    x, y, classes, columns = _read(cfg, path, None, None)
    features = columns[1]
    if cfg.test_path is None:
        return Arrays(x, y, classes, features=features)
    test = existing(cfg.test_path, "data.test_path", "a CSV file with the same columns")
    x_test, y_test, _, _ = _read(cfg, test, columns, classes)
    return Arrays(x, y, classes, x_test, y_test, features)
