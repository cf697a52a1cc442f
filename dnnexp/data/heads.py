"""task=multitask's targets: one column per head (`task.heads`), read from a table or a text
file into one float32 matrix (N, heads): a classification head's class indices (its classes
named by the training file, numbers in numeric order), a regression head's values, and NaN
where a row has no label for the head. Every row stays, whatever labels it lacks: the task
masks each missing label out of its head's loss (a row without any trains nothing), and the
splits are the file's whichever heads are picked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnnexp.data.columns import float_or_none
from dnnexp.data.local_files import DataError, say


def class_order(name: str) -> tuple[int, float, str]:
    """Numbers first, by value (2 before 10), then text."""
    value = float_or_none(name)
    return (0, value, "") if value is not None else (1, 0.0, name)


def head_columns(heads: list[dict[str, Any]], header: list[str], path: Path) -> None:
    """Every head's column is in the file; else one line naming the head and the columns."""
    for i, head in enumerate(heads):
        if head["column"] not in header:
            raise DataError(
                f"{path}: task.heads[{i}].column={head['column']} names no column; the columns"
                f" are: {', '.join(header)}"
            )


def classify(
    cells: list[str | None], head: dict[str, Any], index: int, path: Path, names: list[str] | None
) -> tuple[np.ndarray, list[str]]:
    """A classification head's labels as float class indices (NaN missing), and its classes
    (the training file's: `names` None; a later file's labels must be among `names`)."""
    found = {c for c in cells if c is not None}
    if names is None:
        names = sorted(found, key=class_order)
        if len(names) < 2:
            shown = f" ({names[0]!r} in every labelled row)" if names else ""
            raise DataError(
                f"{path}: task.heads[{index}] ({head['name']}) has {len(names)} class{shown}"
                f" in column {head['column']!r}: there is nothing to learn"
            )
    unknown = sorted(found - set(names), key=class_order)
    if unknown:
        raise DataError(
            f"{path}: task.heads[{index}] ({head['name']}): labels {unknown[:5]} of column"
            f" {head['column']!r} are not among the training labels {names[:20]}"
        )
    position = {name: float(i) for i, name in enumerate(names)}
    values = np.array([np.nan if c is None else position[c] for c in cells], dtype=np.float32)
    return values, names


def regress(cells: list[str | None], head: dict[str, Any], index: int, path: Path) -> np.ndarray:
    """A regression head's values (NaN missing); text that is not a number is refused in one
    line naming the head, the column and the row."""
    values = np.empty(len(cells), dtype=np.float32)
    for row, cell in enumerate(cells):
        value = np.nan if cell is None else float_or_none(cell)
        if value is None:
            raise DataError(
                f"{path}: task.heads[{index}] ({head['name']}) is a regression head, but column"
                f" {head['column']!r} holds text ({cell!r} in row {row + 2}): a regression head"
                " reads numbers (kind: classification for labels)"
            )
        values[row] = value
    return values


def targets(
    columns: list[Any],
    heads: list[dict[str, Any]],
    path: Path,
    classes: list[list[str] | None] | None = None,
) -> tuple[torch.Tensor, list[list[str] | None]]:
    """The (N, heads) targets from each head's column (`columns[i]`: a list of text cells, None
    missing; or a float array, NaN missing, for a table's numeric column) and each head's
    classes (those given, for a test file)."""
    parts, named = [], []
    for i, (head, column) in enumerate(zip(heads, columns, strict=True)):
        if head["kind"] == "regression":
            if isinstance(column, np.ndarray):
                parts.append(column.astype(np.float32))
            else:
                parts.append(regress(column, head, i, path))
            named.append(None)
            continue
        if isinstance(column, np.ndarray):  # a numeric column's labels, named as numbers
            column = [None if np.isnan(v) else f"{v:g}" for v in column.tolist()]
        values, names = classify(column, head, i, path, None if classes is None else classes[i])
        parts.append(values)
        named.append(names)
    y = torch.from_numpy(np.stack(parts, axis=1)) if parts else torch.zeros(0, 0)
    return y, named


def check_labelled(y: torch.Tensor, path: Path) -> None:
    """Some row has a label. Rows without any are kept (one line says how many): they train
    nothing, but the splits stay those of the file whichever heads are picked, so a
    single-head baseline is tested on the same rows as the joint model."""
    unlabelled = int(torch.isnan(y).all(dim=1).sum()) if y.shape[1] else len(y)
    if unlabelled == len(y):
        raise DataError(f"{path}: no row has a label for any head (task.heads)")
    if unlabelled:
        say(
            f"{path}: {unlabelled} rows have no label for any head (task.heads): kept, they"
            " train nothing"
        )


def with_classes(heads: list[dict[str, Any]], classes: list[list[str] | None]) -> list[dict]:
    """The heads as the data module keeps them: each with its classes (None: regression)."""
    return [{**head, "classes": names} for head, names in zip(heads, classes, strict=True)]
