"""A table's columns as the model sees them.

`plan_columns` decides, from the training file and `data.*`, which columns are numeric,
categorical or ignored (one line says so at the start of the run). `raw_matrix` turns a table
into the raw column matrix every later stage shares: one float32 row per sample, the numeric
columns first (NaN where missing), then each categorical column as the index of its value in a
vocabulary (NaN where missing, UNSEEN for a value the vocabulary lacks). `fit_columns` fits
the statistics on the training split alone (medians, which columns get a "was missing"
indicator, the categories and their shares), and `ColumnEncoder` (a torch module, so
training, `dnnexp predict` and the exported graph run the same code) turns raw rows into the
model's features: numeric values with missing cells imputed, one 0/1 indicator per numeric
column the training split had missing cells in, and one-hot categories (missing cells a
category of their own where training had them; a value training never saw encoded as the
training shares, see ColumnEncoder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from dnnexp.data.local_files import DataError

UNSEEN = -1.0  # the raw code of a category value that training did not see
MISSING_SLOT = "<missing>"
NUMERIC_SHARE = 0.5  # a text column mostly of numbers: numeric, with typos or missing markers


@dataclass
class ColumnPlan:
    """The columns of a table, by their role. `vocab`: each categorical column's values in the
    files read so far (sorted); the training split's own categories are fitted later."""

    targets: list[str]
    numeric: list[str]
    categorical: list[str]
    ignored: dict[str, str] = field(default_factory=dict)  # name -> why
    vocab: dict[str, list[str]] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)  # the training file's columns

    @property
    def raw_columns(self) -> list[str]:
        return self.numeric + self.categorical

    def line(self) -> str:
        """The one line a run starts with: what each column became."""
        parts = [f"{len(self.numeric)} numeric"]
        if self.categorical:
            parts.append(f"{len(self.categorical)} categorical ({', '.join(self.categorical)})")
        if self.ignored:
            why = "; ".join(f"{name}: {reason}" for name, reason in self.ignored.items())
            parts.append(f"{len(self.ignored)} ignored ({why})")
        return "columns: " + ", ".join(parts)


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)
    )


def _is_number(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def _numeric_share(column: Any) -> float:
    """The share of a text column's non-missing cells that read as numbers (in its first
    100,000 rows: a share, not a count)."""
    import pyarrow.compute as pc

    column = column.slice(0, 100_000)
    present = len(column) - column.null_count
    numbers = pc.sum(pc.match_substring_regex(column.cast("string"), NUMBER)).as_py() or 0
    return numbers / max(present, 1)


def float_or_none(text: Any) -> float | None:
    """A cell's text as a number, or None (a table's numeric columns, a regression head)."""
    try:
        return float(str(text))
    except ValueError:
        return None


def plan_columns(table: Any, cfg: Any, path: Any) -> ColumnPlan:
    """Each column's role in the training file `table`, from its type and `data.*`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    header = table.column_names
    targets = [cfg.target] if isinstance(cfg.target, str) else list(cfg.target)
    categorical_listed = list(cfg.get("categorical") or [])
    ignore = list(cfg.get("ignore") or [])
    named = {
        "data.target": targets,
        "data.features": list(cfg.features or []),
        "data.categorical": categorical_listed,
        "data.ignore": ignore,
    }
    for key, names in named.items():
        for name in names:
            if name not in header:
                raise DataError(
                    f"{path}: {key} names no column {name!r}; the columns are: {', '.join(header)}"
                )
    plan = ColumnPlan(targets, [], [], header=list(header))
    for name in cfg.features or [n for n in header if n not in targets]:
        if name in ignore:
            plan.ignored[name] = "data.ignore"
            continue
        column = table.column(name)
        kind = column.type
        nested = pa.types.is_nested(kind) or pa.types.is_binary(kind)
        if nested or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
            raise DataError(
                f"{path}: column {name!r} holds {kind} values; dnnexp reads numbers and text:"
                f" data.ignore=[{name}] trains without it"
            )
        if column.null_count == len(column):
            raise DataError(
                f"{path}: column {name!r} is entirely missing: data.ignore=[{name}] trains"
                " without it"
            )
        if name in categorical_listed:
            plan.categorical.append(name)
        elif _is_number(kind):
            plan.numeric.append(name)
        elif _is_text(kind):
            if _numeric_share(column) >= NUMERIC_SHARE:  # numbers with a few typos: name one
                plan.numeric.append(name)
                continue
            distinct = pc.count_distinct(column).as_py()
            if distinct == len(column) - column.null_count and distinct > 2:
                plan.ignored[name] = "a different value in every row"
            elif distinct > cfg.max_categories:
                plan.ignored[name] = (
                    f"{distinct} distinct values > data.max_categories={cfg.max_categories}"
                )
            else:
                plan.categorical.append(name)
        else:
            plan.ignored[name] = f"{kind} values are not read"
    if not plan.raw_columns:
        raise DataError(f"{path}: no feature column besides {', '.join(targets)}")
    return plan


def extend_vocab(plan: ColumnPlan, table: Any) -> None:
    """Add the values of `table`'s categorical columns to the plan's vocabularies."""
    import pyarrow.compute as pc

    for name in plan.categorical:
        values = pc.unique(_as_text(table.column(name))).drop_null().to_pylist()
        plan.vocab[name] = sorted(set(plan.vocab.get(name, [])) | set(values))


def _as_text(column: Any) -> Any:
    import pyarrow as pa

    if _is_text(column.type):
        return column.cast(pa.string())
    if pa.types.is_floating(column.type):  # 1.0 and 1 are one category
        import pyarrow.compute as pc

        whole = pc.equal(pc.floor(column), column)
        if pc.all(pc.fill_null(whole, True)).as_py():
            return column.cast(pa.int64()).cast(pa.string())
    return column.cast(pa.string())


def numbers(column: Any, name: str, path: Any) -> np.ndarray:
    """A column as float64, NaN where missing; DataError naming the first cell that is not a
    number (and how to read such a marker as missing)."""
    import pyarrow as pa

    if _is_number(column.type):
        return column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    if not _is_text(column.type):
        raise DataError(f"{path}: column {name!r} holds {column.type} values, not numbers")
    cells = column.cast(pa.string()).to_pylist()
    values = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        value = np.nan if cell is None else float_or_none(cell)
        if value is None:
            raise DataError(
                f"{path}: row {i + 2}, column {name!r} is not a number: {cell!r} (a marker of a"
                f" missing value? add it to data.na_values)"
            )
        values[i] = value
    return values


def raw_matrix(table: Any, plan: ColumnPlan, vocab: dict[str, list[str]], path: Any) -> np.ndarray:
    """The raw column matrix (float32, N x raw columns) of `table`; categorical values coded by
    `vocab` (NaN missing, UNSEEN not in it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = [name for name in plan.raw_columns if name not in table.column_names]
    if missing:
        raise DataError(
            f"{path}: no column {', '.join(repr(m) for m in missing)} (the model's);"
            f" the columns are: {', '.join(table.column_names)}"
        )
    out = np.empty((table.num_rows, len(plan.raw_columns)), dtype=np.float32)
    for j, name in enumerate(plan.numeric):
        out[:, j] = numbers(table.column(name), name, path)
    for j, name in enumerate(plan.categorical, start=len(plan.numeric)):
        text = _as_text(table.column(name))
        codes = pc.index_in(text, value_set=pa.array(vocab[name], type=pa.string()))
        codes = np.array(codes.cast(pa.float32()).to_numpy(zero_copy_only=False))  # null: NaN
        unseen = np.isnan(codes) & ~text.is_null().to_numpy(zero_copy_only=False)
        codes[unseen] = UNSEEN
        out[:, j] = codes
    return out


def missing_cells(x: np.ndarray, names: list[str], path: Any) -> str | None:
    """'row R, column C is missing' for the first missing cell of a raw matrix, else None."""
    rows, cols = np.nonzero(np.isnan(x))
    if not len(rows):
        return None
    first = int(np.argmin(rows))
    return f"{path}: row {int(rows[first]) + 2}, column {names[int(cols[first])]!r} is missing"


def fit_columns(plan: ColumnPlan, train: torch.Tensor, policy: str) -> dict[str, Any]:
    """The encoder's spec (plain containers, saved in checkpoints) from the training split's raw
    rows alone: medians, the numeric columns with missing cells there, the categories seen."""
    x = train.double().numpy()
    n = len(plan.numeric)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: median 0
            medians = np.nanmedian(x[:, :n], axis=0) if n and len(x) else np.zeros(n)
    medians = np.where(np.isnan(medians), 0.0, medians)
    indicators = [j for j in range(n) if np.isnan(x[:, j]).any()]
    categories, frequencies, missing_slots = {}, {}, []
    for j, name in enumerate(plan.categorical, start=n):
        codes = x[:, j]
        present = codes[np.isfinite(codes) & (codes >= 0)].astype(np.int64)
        seen, counts = np.unique(present, return_counts=True)
        categories[name] = [plan.vocab[name][c] for c in seen]
        counts = counts.tolist()
        if np.isnan(codes).any():  # missing cells in training: a category of their own
            missing_slots.append(name)
            counts.append(int(np.isnan(codes).sum()))
        frequencies[name] = (np.array(counts, np.float64) / max(len(codes), 1)).tolist()
    return {
        "numeric": list(plan.numeric),
        "medians": medians.tolist(),
        "indicators": [plan.numeric[j] for j in indicators],
        "categorical": categories,  # name -> the training split's categories, in code order
        "missing_slots": missing_slots,  # categorical columns with missing cells in training
        "frequencies": frequencies,  # each slot's share of the training rows
        "ignored": dict(plan.ignored),
        "file_columns": list(plan.header),
        "missing": policy,
    }


def recode(x: torch.Tensor, plan: ColumnPlan, spec: dict[str, Any]) -> torch.Tensor:
    """Raw rows coded by the plan's vocabularies, re-coded by the fitted categories (a value
    only validation or test had becomes UNSEEN)."""
    x = x.clone()
    n = len(plan.numeric)
    for j, name in enumerate(plan.categorical, start=n):
        index = {value: i for i, value in enumerate(spec["categorical"][name])}
        remap = torch.tensor(
            [float(index.get(value, UNSEEN)) for value in plan.vocab[name]] or [UNSEEN]
        )
        codes = x[:, j]
        known = torch.isfinite(codes) & (codes >= 0)
        x[known, j] = remap[codes[known].long()]
    return x


def encoded_names(spec: dict[str, Any]) -> list[str]:
    """The model's feature names, in the encoder's output order."""
    names = list(spec["numeric"]) + [f"{name}_missing" for name in spec["indicators"]]
    for name, categories in spec["categorical"].items():
        slots = (*categories, MISSING_SLOT) if name in spec["missing_slots"] else categories
        names += [f"{name}={value}" for value in slots]
    return names


def raw_columns(spec: dict[str, Any]) -> list[str]:
    return list(spec["numeric"]) + list(spec["categorical"])


class ColumnEncoder(nn.Module):
    """Raw rows (numeric with NaN, categorical codes) -> the model's features. Exportable to
    ONNX (isnan, where, comparisons, concat): an exported model takes the raw rows too.

    A categorical value is one-hot over the training split's categories (and a missing slot
    where training had missing cells). A value training never saw, or a missing cell where
    training had none, is encoded as the training split's category shares: after
    standardization exactly zero, the input a model reads as "no information" (a slot of its
    own would be one that training never filled, whose weights are never learned)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.numeric = len(spec["numeric"])
        self.register_buffer("medians", torch.tensor(spec["medians"], dtype=torch.float32))
        index = [spec["numeric"].index(name) for name in spec["indicators"]]
        self.register_buffer("indicators", torch.tensor(index, dtype=torch.int64))
        self.missing_slot: list[float] = []  # per column: the missing slot's code, or -1
        for j, (name, categories) in enumerate(spec["categorical"].items()):
            shares = torch.tensor(spec["frequencies"][name], dtype=torch.float32)
            self.register_buffer(f"slots{j}", torch.arange(len(shares), dtype=torch.float32))
            self.register_buffer(f"shares{j}", shares.unsqueeze(0))
            has_slot = name in spec["missing_slots"]
            self.missing_slot.append(float(len(categories)) if has_slot else UNSEEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = x[:, : self.numeric]
        missing = torch.isnan(values)
        parts = [torch.where(missing, self.medians, values)]
        if len(self.indicators):
            parts.append(missing[:, self.indicators].to(x.dtype))
        for j, missing_code in enumerate(self.missing_slot):
            code = x[:, self.numeric + j]
            code = torch.where(torch.isnan(code), missing_code, code)
            hits = code.unsqueeze(1) == getattr(self, f"slots{j}")
            known = hits.any(dim=1, keepdim=True)  # else: unseen, as the training shares
            parts.append(torch.where(known, hits.to(x.dtype), getattr(self, f"shares{j}")))
        return torch.cat(parts, dim=1)
