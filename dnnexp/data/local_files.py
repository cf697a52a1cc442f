"""What every loader of the user's own files shares: finding them, and failing in one line.

Every problem with a file is a `DataError` that names the file and what was expected; it is
raised while the data loads, before anything trains, and the run dir is then discarded.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch

from dnnexp.config.errors import RunError


class DataError(RunError):
    """A data file that is missing, malformed or inconsistent (one line)."""


def existing(path: str | None, key: str, layout: str = "") -> Path:
    """`path` as a Path that exists; else a DataError naming `key` and the expected layout."""
    if not path:
        raise DataError(f"{key} is not set: give the path{layout and ', laid out as ' + layout}")
    found = Path(path).expanduser()
    if not found.exists():
        hint = f"; expected {layout}" if layout else ""
        raise DataError(f"{key}={path}: no such file or directory{hint}")
    return found


def read_maybe_gzipped(root: Path, name: str, key: str, layout: str) -> tuple[bytes, Path]:
    """The bytes of root/name or root/name.gz (which one exists), and its path."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            data = candidate.read_bytes()
            if candidate.suffix == ".gz":
                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError) as err:
                    raise DataError(f"{candidate}: not a readable gzip file ({err})") from None
            return data, candidate
    raise DataError(f"{key}={root}: no {name} (or {name}.gz) there; expected {layout}")


def class_indices(
    y: torch.Tensor, classes: list[str] | None, name: str
) -> tuple[torch.Tensor, list[str] | None]:
    """Class labels as int64 indices. Integer labels stay as they are; other numbers (a CSV's
    1.0, 2.0 or an npz of floats) map to 0..k-1 in sorted order, named by their values."""
    if not y.is_floating_point():
        if y.ndim != 1 or (len(y) and int(y.min()) < 0):
            raise DataError(f"data={name}: class labels must be one column of indices >= 0")
        return y.long(), classes
    if y.ndim != 1:
        raise DataError(
            f"data={name}: {y.shape[1]} target columns; classification takes one (or use"
            " task=regression)"
        )
    values, index = torch.unique(y, return_inverse=True)
    if not bool((values == values.round()).all()):
        raise DataError(
            f"data={name}: the targets are not whole numbers"
            f" (e.g. {float(values[values != values.round()][0])}): use task=regression"
        )
    return index, [f"{v:g}" for v in values.tolist()]


def keep_classes(
    y: torch.Tensor, classes: list[str] | None, wanted: list[str], name: str
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """`data.classes`: which samples (a mask) belong to the `wanted` classes, named as the data
    names them (digits: "0".."9"), and their labels renumbered 0..k-1 in the order given."""
    names = classes if classes is not None else [str(i) for i in range(int(y.max()) + 1)]
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise DataError(
            f"data.classes: {', '.join(unknown)} not among data={name}'s classes"
            f" ({', '.join(names)})"
        )
    new_label = torch.full((len(names),), -1, dtype=torch.long)
    for i, c in enumerate(wanted):
        new_label[names.index(c)] = i
    relabelled = new_label[y]
    return relabelled >= 0, relabelled, list(wanted)


def check_stratifiable(y: torch.Tensor, classes: list[str] | None, name: str) -> None:
    """A stratified split needs at least 2 samples of every class."""
    counts = torch.bincount(y, minlength=len(classes) if classes else 0)
    for label, count in enumerate(counts.tolist()):
        if 0 < count < 2:
            shown = classes[label] if classes else label
            raise DataError(
                f"data={name}: class {shown!r} has {count} sample; a stratified split needs at"
                " least 2 per class (drop it, or set data.stratify=false)"
            )


def say(line: str) -> None:
    """One line about the user's files at the start of the run (what a loader decided or
    dropped), from the first rank only."""
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:
        from dnnexp.utils.console import console

        console.print(line, markup=False, highlight=False, soft_wrap=True)
