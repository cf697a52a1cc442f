"""A table file (CSV, TSV, Parquet, Feather): `data.target` (one label column, or numeric
target columns for regression); features = `data.features` or every other usable column, each
numeric or categorical (`data/columns.py`); `data.test_path` for a test split. Rows whose target
is missing are dropped; missing features are `data.missing`'s to handle. task=multitask: the
targets are the heads' columns (`load_multitask`), a missing label allowed (NaN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnnexp.data import heads as head_targets
from dnnexp.data.arrays import Arrays
from dnnexp.data.columns import (
    ColumnPlan,
    _is_number,
    extend_vocab,
    missing_cells,
    numbers,
    plan_columns,
    raw_matrix,
)
from dnnexp.data.local_files import DataError, existing, say
from dnnexp.data.table_io import FORMATS, read_table

MISSING_HELP = (
    "data.missing=impute fills missing cells from the training split, data.missing=drop drops"
    " their rows"
)


def _target_missing(table: Any, plan: ColumnPlan) -> np.ndarray:
    mask = np.zeros(table.num_rows, dtype=bool)
    for name in plan.targets:
        mask |= table.column(name).is_null().to_numpy(zero_copy_only=False)
    return mask


def _targets(
    table: Any, plan: ColumnPlan, path: Path, classes: list[str] | None, training: bool
) -> tuple[torch.Tensor, list[str] | None]:
    """Class indices named by text labels, or float targets (numeric labels are named later,
    by the data module, as every format's are)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    first = table.column(plan.targets[0])
    if training and len(plan.targets) == 1 and pc.count_distinct(first).as_py() == 1:
        raise DataError(
            f"{path}: the target column {plan.targets[0]!r} has one value"
            f" ({first[0].as_py()!r}) in every row: there is nothing to learn"
        )
    text = pa.types.is_string(first.type) or pa.types.is_large_string(first.type)
    if len(plan.targets) == 1 and (text or pa.types.is_boolean(first.type)):
        cells = first.cast(pa.string()).to_pylist()
        names = classes or sorted(set(cells))
        unknown = sorted(set(cells) - set(names))
        if unknown:
            raise DataError(f"{path}: labels {unknown} are not among the training labels {names}")
        index = {name: i for i, name in enumerate(names)}
        return torch.tensor([index[c] for c in cells], dtype=torch.int64), names
    y = np.stack([numbers(table.column(n), n, path) for n in plan.targets], axis=1)
    y = torch.from_numpy(y).float()
    return (y[:, 0] if len(plan.targets) == 1 else y), None


def _read(
    cfg: Any, path: Path, plan: ColumnPlan | None, classes: list[str] | None
) -> tuple[Any, ColumnPlan]:
    """The file's rows that have a target, and the plan (the training file's)."""
    table = read_table(path, cfg.get("na_values"))
    training = plan is None
    plan = plan or plan_columns(table, cfg, path)
    absent = [name for name in plan.targets if name not in table.column_names]
    if absent:
        raise DataError(
            f"{path}: no column {absent[0]!r}; the columns are: {', '.join(table.column_names)}"
        )
    dropped = _target_missing(table, plan)
    if dropped.any():
        table = table.filter(~dropped)
        say(f"{path}: dropped {int(dropped.sum())} rows whose target is missing")
        if table.num_rows == 0:
            raise DataError(f"{path}: every row's target is missing")
    if training:
        extend_vocab(plan, table)
    return table, plan


def _features(cfg: Any, table: Any, plan: ColumnPlan, path: Path) -> tuple[Any, np.ndarray]:
    """The raw column matrix, with data.missing applied (drop: rows go; error: refused)."""
    x = raw_matrix(table, plan, plan.vocab, path)
    if cfg.missing == "impute":
        return table, x
    if cfg.missing == "error":
        line = missing_cells(x, plan.raw_columns, path)
        if line:
            raise DataError(f"{line} (data.missing=error; {MISSING_HELP})")
        return table, x
    keep = ~np.isnan(x).any(axis=1)
    if not keep.all():
        say(f"{path}: dropped {int((~keep).sum())} rows with a missing feature (data.missing=drop)")
        if not keep.any():
            raise DataError(f"{path}: every row has a missing feature (data.missing=drop)")
        table, x = table.filter(keep), x[keep]
    return table, x


def load(cfg: Any) -> Arrays:
    path = existing(cfg.path, "data.path", f"{FORMATS} with a header row")
    table, plan = _read(cfg, path, None, None)
    test_table = None
    if cfg.test_path is not None:
        test = existing(cfg.test_path, "data.test_path", f"{FORMATS} of the same columns")
        test_table, _ = _read(cfg, test, plan, None)
        extend_vocab(plan, test_table)  # coded now; the categories are the training split's
    table, x = _features(cfg, table, plan, path)
    y, classes = _targets(table, plan, path, None, training=True)
    say(plan.line())
    arrays = Arrays(torch.from_numpy(x), y, classes, features=plan.raw_columns, columns=plan)
    if test_table is None:
        return arrays
    test_table, x_test = _features(cfg, test_table, plan, test)
    y_test, _ = _targets(test_table, plan, test, classes, training=False)
    return arrays._replace(x_test=torch.from_numpy(x_test), y_test=y_test)


def head_cells(table: Any, heads: list[dict[str, Any]]) -> list[Any]:
    """Each head's column: a numeric one as float64 (NaN missing), any other as text cells."""
    import pyarrow as pa

    cells = []
    for head in heads:
        column = table.column(head["column"])
        if _is_number(column.type) and not pa.types.is_boolean(column.type):
            cells.append(column.cast(pa.float64()).to_numpy(zero_copy_only=False))
        else:
            cells.append(column.cast(pa.string()).to_pylist())
    return cells


def _read_heads(
    cfg: Any, path: Path, heads: list[dict[str, Any]], plan: ColumnPlan | None, classes: Any
) -> tuple[Any, torch.Tensor, Any, ColumnPlan]:
    """A file's rows: the table, the (N, heads) targets, each head's classes, and the plan
    (the training file's)."""
    from omegaconf import OmegaConf

    table = read_table(path, cfg.get("na_values"))
    head_targets.head_columns(heads, table.column_names, path)
    training = plan is None
    if plan is None:
        as_targets = OmegaConf.merge(cfg, {"target": [h["column"] for h in heads]})
        plan = plan_columns(table, as_targets, path)
    y, classes = head_targets.targets(head_cells(table, heads), heads, path, classes)
    head_targets.check_labelled(y, path)
    if training:
        extend_vocab(plan, table)
    return table, y, classes, plan


def load_multitask(cfg: Any, heads: list[dict[str, Any]]) -> Arrays:
    """task=multitask: the features as `load` reads them; the targets from the heads' columns
    (`data/heads.py`), a missing label kept as NaN."""
    path = existing(cfg.path, "data.path", f"{FORMATS} with a header row")
    table, _, classes, plan = _read_heads(cfg, path, heads, None, None)
    test_table = None
    if cfg.test_path is not None:
        test = existing(cfg.test_path, "data.test_path", f"{FORMATS} of the same columns")
        test_table, _, _, _ = _read_heads(cfg, test, heads, plan, classes)
        extend_vocab(plan, test_table)
    table, x = _features(cfg, table, plan, path)
    y, _ = head_targets.targets(head_cells(table, heads), heads, path, classes)
    say(plan.line())
    named = head_targets.with_classes(heads, classes)
    arrays = Arrays(
        torch.from_numpy(x), y, None, features=plan.raw_columns, columns=plan, heads=named
    )
    if test_table is None:
        return arrays
    test_table, x_test = _features(cfg, test_table, plan, test)
    y_test, _ = head_targets.targets(head_cells(test_table, heads), heads, test, classes)
    return arrays._replace(x_test=torch.from_numpy(x_test), y_test=y_test)
