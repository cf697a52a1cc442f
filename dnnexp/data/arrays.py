"""What every dataset loader returns."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch


class Arrays(NamedTuple):
    """A whole dataset in memory.

    x: (N, C, H, W) images, (N, T, F) sequences or (N, F) tabular features; float32, or uint8
       for images kept as their files hold them (normalized per batch on the training device).
    y: int64 (N,) class indices, or float32 (N, T) regression targets.
    classes: the class names, index i naming class i (None: regression, or unnamed classes).
    x_test, y_test: the format's own test split, if it has one (then it is the test split, and
       validation is carved from x, y).
    features: the names of tabular feature columns (a CSV's header), in x's column order.
    columns: a table's ColumnPlan (`data/columns.py`): x is then its raw column matrix, which
       the data module encodes with statistics of the training split alone.
    text: a text file's TextPlan (`data/text.py`): x then holds row indices into its texts,
       which the data module encodes with the training split's vocabulary.
    heads: task=multitask: each head (`config/heads.py`'s keys) with its `classes` (None for a
       regression head); y is then float32 (N, heads), class indices or values, NaN where a
       row has no label for the head.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str] | None = None
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    features: list[str] | None = None
    columns: Any = None
    text: Any = None
    heads: Any = None
