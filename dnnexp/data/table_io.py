"""Table files into Arrow tables: CSV and TSV (also gzipped) through pyarrow's multithreaded
reader, Parquet, Feather/Arrow IPC. The format comes from the suffix. Cells spelled as one of
`na_values` are missing (null); the default is pandas' and pyarrow's list plus "?", changed with
`data.na_values`. Errors are DataError, one line naming the file."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import Any

from dnnexp.data.local_files import DataError

NA_VALUES = [
    "",
    "?",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "n/a",
    "nan",
    "null",
]
SUFFIXES = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tsv": "tsv",
    ".tsv.gz": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".feather": "feather",
    ".arrow": "feather",
    ".ipc": "feather",
}
FORMATS = "a .csv, .tsv (optionally .gz), .parquet, .feather or .arrow file"


def table_format(path: Path) -> str | None:
    """csv | tsv | parquet | feather by the file's suffix; None for any other file."""
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    return None


def read_table(path: Path, na_values: list[str] | None = None) -> Any:
    """The file as a pyarrow Table with at least one row; DataError naming what is wrong."""
    import pyarrow as pa

    kind = table_format(path)
    if kind is None:
        raise DataError(f"{path}: not a table file; expected {FORMATS}")
    try:
        if kind in ("csv", "tsv"):
            table = _read_csv(path, "\t" if kind == "tsv" else ",", na_values)
        elif kind == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            import pyarrow.feather as feather

            table = feather.read_table(path)
    except DataError:
        raise
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, EOFError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"{path}: not a readable {kind} file ({first})") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: empty (expected a header row and at least one data row)")
    names = table.column_names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{path}: the column {duplicates[0]!r} appears twice in the header")
    return table


def _read_csv(path: Path, delimiter: str, na_values: list[str] | None) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(
        null_values=list(NA_VALUES if na_values is None else na_values),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    parse = pacsv.ParseOptions(delimiter=delimiter)
    try:
        table = pacsv.read_csv(path, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as err:
        if "Empty CSV file" in str(err):
            raise DataError(
                f"{path}: empty (expected a header row and at least one data row)"
            ) from None
        if "columns, got" in str(err):  # name the row, as a spreadsheet numbers it
            raise DataError(_ragged_row(path, delimiter) or f"{path}: {err}") from None
        raise
    # a header cell with spaces around the name: the name is what users type in data.target
    return table.rename_columns([name.strip() for name in table.column_names])


def _ragged_row(path: Path, delimiter: str) -> str | None:
    """The first row whose cell count differs from the header's (only on that error)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="") as f:  # type: ignore[operator]
        rows = csv.reader(f, delimiter=delimiter)
        header = next(rows, [])
        for number, row in enumerate(rows, start=2):
            if row and len(row) != len(header):
                return f"{path}: row {number} has {len(row)} cells, the header {len(header)}"
    return None
