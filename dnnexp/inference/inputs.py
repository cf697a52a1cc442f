"""New inputs for a trained model, from any format the data loaders read: npz, CSV, IDX, CIFAR
binary, a folder of images (class subfolders give labels) or one image file. The parsing is the
loaders' own (`dnnexp/data/`); what is new here is that labels are optional, a CSV's other
columns pass through, and every shape is checked against the model's. Errors are `DataError`,
one line naming the file."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from dnnexp.data import cifar, columns, idx, image_folder, npz, table_io, text
from dnnexp.data import table as table_heads
from dnnexp.data.columns import ColumnPlan
from dnnexp.data.local_files import DataError
from dnnexp.inference.model import TrainedRun

TABLE_DATA = ("table", "csv")
FORMATS = (
    "an .npz file, a table (.csv, .tsv, .parquet, .feather), an IDX images file"
    " (*-idx3-ubyte[.gz]), a CIFAR .bin file, an image file or a folder of images"
)


@dataclass
class Inputs:
    """Raw inputs in the model's shape, and what came with them."""

    x: torch.Tensor  # (N, *input_shape), float32 or uint8, not standardized
    labels: torch.Tensor | None = None  # class indices, or (N, T) float targets; None: unlabelled
    columns: dict[str, list[str]] = field(default_factory=dict)  # passed through to the output
    # task=seq2seq: x holds each distinct source once, labels its references (N, R, T);
    # `sources[i]` is the row of x that input row i reads
    sources: torch.Tensor | None = None


def read_inputs(path: Path, run: TrainedRun, target: str | None = None) -> Inputs:
    """`path` in the format its name or contents say; `target`: a CSV's label column (default:
    the run's `data.target` for a CSV-trained run, else `label`)."""
    if not path.exists():
        raise DataError(f"input={path}: no such file or directory")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    if path.is_dir():
        inputs = _image_folder(path, run)
    elif suffix in image_folder.EXTENSIONS:
        inputs = Inputs(_image(path, run)[None], columns={"file": [path.name]})
    elif suffix == ".npz":
        inputs = _npz(path, run)
    elif "text" in run.hparams["preprocess"]:
        inputs = _texts(path, run, target)
    elif table_io.table_format(path) is not None:
        inputs = _table(path, run, target)
    elif suffix == ".bin":
        inputs = _cifar(path, run)
    elif "idx3-ubyte" in path.name:
        inputs = _idx(path, run)
    else:
        raise DataError(f"input={path}: unknown format; expected {FORMATS}")
    if len(inputs.x) == 0:
        raise DataError(f"input={path}: empty (no rows to predict)")
    if inputs.x.dtype != torch.int64:  # token ids: any length (the model packs them)
        inputs.x = _model_shape(inputs.x, run, path)
    return inputs


def _texts(path: Path, run: TrainedRun, target: str | None) -> Inputs:
    """Texts for a text run: a file of the training file's columns (labels if its target
    column is there), or a .txt file of one text per line; encoded by the saved vocabulary."""
    spec = run.hparams["preprocess"]["text"]
    data = run.cfg.data
    if run.task == "seq2seq":
        return _pairs(path, run, target)
    if path.suffix.lower() == ".txt":
        texts = [line for line in path.read_text(encoding=data.encoding).splitlines() if line]
        ids, _ = text.encode(texts, spec)
        return Inputs(ids, None, {"text": texts})
    cfg = OmegaConf.merge(data, {"target": target or data.target})
    multitask = run.task == "multitask"
    texts, labels, table = text.read_texts(path, cfg, labelled=not multitask)
    ids, _ = text.encode(texts, spec)
    used = [data.text] if isinstance(data.text, str) else list(data.text)
    targets = [h["column"] for h in run.heads] if multitask else [cfg.target]
    kept = [name for name in table.column_names if name not in used and name not in targets]
    if multitask:
        cells = [_cells(table, c, None) if c in table.column_names else None for c in targets]
        y = _head_labels(cells, run, path)
    else:
        y = None if labels is None else _class_index(labels, run, path)
    return Inputs(ids, y, {name: _cells(table, name) for name in kept})


def _head_labels(cells: list[Any], run: TrainedRun, path: Path) -> torch.Tensor | None:
    """task=multitask: the (N, heads) labels, class indices by the run's classes or values in
    their units, NaN where missing; None unless the input has every head's column."""
    from dnnexp.data import heads as head_targets

    if any(column is None for column in cells):
        return None
    classes = [head["classes"] for head in run.heads]
    y, _ = head_targets.targets(cells, run.heads, path, classes)
    return y


def _pairs(path: Path, run: TrainedRun, target: str | None) -> Inputs:
    """Sources for a seq2seq run (a .txt of one per line, or the training file's columns),
    each distinct one decoded once; with the target column, every row's target is a
    reference of its source, grouped and encoded as the run's test split was."""
    data = run.cfg.data
    if path.suffix.lower() == ".txt":
        texts = [line for line in path.read_text(encoding=data.encoding).splitlines() if line]
        columns, targets = {"text": texts}, None
    else:
        cfg = OmegaConf.merge(data, {"target": target or data.target})
        texts, targets, table = text.read_texts(path, cfg)
        used = [data.text] if isinstance(data.text, str) else list(data.text)
        kept = [name for name in table.column_names if name not in used]  # targets kept
        source = data.text if isinstance(data.text, str) else "text"  # several: joined
        columns = {source: texts, **{name: _cells(table, name) for name in kept}}
    distinct = list(dict.fromkeys(texts))
    position = {source: i for i, source in enumerate(distinct)}
    rows = torch.tensor([position[source] for source in texts], dtype=torch.int64)
    ids, _ = text.encode(distinct, run.hparams["preprocess"]["text"])
    references = None
    if targets is not None:
        pairs = list(dict.fromkeys(zip(texts, targets, strict=True)))  # a reference once
        target_spec = run.hparams["preprocess"]["target_text"]
        encoded, _, _ = text.encode_targets([t for _, t in pairs], target_spec)
        owner = torch.tensor([position[source] for source, _ in pairs], dtype=torch.int64)
        references = text.group_references(encoded, owner, torch.arange(len(distinct)))
    return Inputs(ids, references, columns, rows)


def _cells(table: Any, name: str, missing: Any = "") -> list[Any]:
    """A column's cells as text, a missing one as `missing` ("": passed through to the
    predictions)."""
    return [missing if c is None else c for c in table.column(name).cast("string").to_pylist()]


def _model_shape(x: torch.Tensor, run: TrainedRun, path: Path) -> torch.Tensor:
    """x as (N, *input_shape): rows with the model's number of values (a CSV's 64 pixel columns
    for an 8x8 image) are reshaped; anything else is refused in one line."""
    shape = tuple(run.input_shape)
    if tuple(x.shape[1:]) == shape:
        return x
    row = tuple(x.shape[1:])
    if int(np.prod(row)) == int(np.prod(shape)):
        return x.reshape(len(x), *shape)
    if len(row) == 1:  # table rows
        whole = "" if len(shape) == 1 else f" (an input of {shape})"
        raise DataError(
            f"input={path}: {row[0]} features per row, but the model takes"
            f" {int(np.prod(shape))}{whole}"
        )
    raise DataError(f"input={path}: rows of shape {row}, but the model takes {shape}")


def _class_index(values: list[str], run: TrainedRun, path: Path) -> torch.Tensor:
    """Labels given by name (or as numbers, named as the loaders name them: 3.0 -> '3')."""
    names = {name: i for i, name in enumerate(run.classes)}
    out = []
    for value in values:
        key = value.strip()
        if key not in names:
            try:
                key = f"{float(key):g}"
            except ValueError:
                pass
        if key not in names:
            raise DataError(
                f"input={path}: label {value!r} is not one of the model's classes"
                f" ({', '.join(run.classes)})"
            )
        out.append(names[key])
    return torch.tensor(out, dtype=torch.int64)


def _check_indices(labels: torch.Tensor, run: TrainedRun, path: Path) -> torch.Tensor:
    count = len(run.classes)
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= count):
        raise DataError(
            f"input={path}: label {int(labels.max())} is out of range for the model's"
            f" {count} classes (0..{count - 1})"
        )
    return labels


def _npz(path: Path, run: TrainedRun) -> Inputs:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz file ({str(err).splitlines()[0]})") from None
    x_key = next((k for k in ("x", "x_test") if k in found), None)
    if x_key is None:
        raise DataError(
            f"input={path}: no array x (or x_test); it holds {', '.join(sorted(found)) or 'none'}"
        )
    layout = run.cfg.data.get("layout", "nchw")
    x = npz._inputs(found[x_key], layout, x_key, path)
    y_key = {"x": "y", "x_test": "y_test"}[x_key]
    labels = None
    if y_key in found:
        y = npz._targets(found[y_key], y_key, path)
        if len(y) != len(x):
            raise DataError(f"{path}: {x_key} has {len(x)} rows but {y_key} {len(y)}")
        labels = _labels(y, run, path)
    return Inputs(x, labels)


def _labels(y: torch.Tensor, run: TrainedRun, path: Path) -> torch.Tensor:
    """Numeric labels: class indices (integers), class values (whole floats, named like the
    loaders name them) or regression targets."""
    if run.task == "regression":
        return y.reshape(len(y), -1).float()
    if y.is_floating_point():
        return _class_index([f"{v:g}" for v in y.tolist()], run, path)
    return _check_indices(y.long(), run, path)


def _table(path: Path, run: TrainedRun, target: str | None) -> Inputs:
    """A table file (any format `data=table` reads): the model's columns, its labels if the
    target columns are there, every other column passed through."""

    data = run.cfg.data
    table = table_io.read_table(path, data.get("na_values"))
    header = table.column_names
    if run.task == "multitask":
        targets = [head["column"] for head in run.heads]
    elif target is not None:
        targets = [target]
    elif data.name in TABLE_DATA:
        targets = [data.target] if isinstance(data.target, str) else list(data.target)
    else:
        targets = ["label"]
    pre = run.hparams["preprocess"]
    spec = pre.get("columns")
    if spec:  # raw columns, encoded inside the model as in training
        plan = ColumnPlan(targets, list(spec["numeric"]), list(spec["categorical"]))
        _check_columns(path, header, plan.raw_columns, run)
        x = columns.raw_matrix(table, plan, spec["categorical"], path)
        if spec.get("missing") != "impute":
            line = columns.missing_cells(x[:, : len(plan.numeric)], plan.numeric, path)
            if line:
                raise DataError(
                    f"{line}; the model was trained with data.missing={spec['missing']}, which"
                    " keeps no imputation for it (train with data.missing=impute)"
                )
        features = plan.raw_columns
    else:  # a run from before column encoding: numeric features only
        features = pre.get("features") or _numeric_columns(table, targets, run, path)
        _check_columns(path, header, features, run)
        x = np.stack([columns.numbers(table.column(n), n, path) for n in features], axis=1)
        line = columns.missing_cells(x, features, path)
        if line:
            raise DataError(f"{line} (the model was trained before missing values were handled)")
    labels = None
    if run.task == "multitask":
        if all(name in header for name in targets):
            labels = _head_labels(table_heads.head_cells(table, run.heads), run, path)
    elif all(name in header for name in targets):
        if run.task == "regression":
            y = np.stack([columns.numbers(table.column(n), n, path) for n in targets], 1)
            labels = torch.from_numpy(y).float()
        else:
            labels = _class_index(_cells(table, targets[0]), run, path)
    kept = [name for name in header if name not in features and name not in targets]
    passed = {name: _cells(table, name) for name in kept}
    return Inputs(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), labels, passed)


def _check_columns(path: Path, header: list[str], wanted: list[str], run: TrainedRun) -> None:
    """The model's columns are in the file; else one line naming the missing ones and the
    columns the training file did not have."""
    missing = [name for name in wanted if name not in header]
    if not missing:
        return
    known = set(wanted) | set(
        ((run.hparams["preprocess"].get("columns") or {}).get("ignored")) or {}
    )
    extra = [name for name in header if name not in known]
    also = f"; columns the training data did not have: {', '.join(extra)}" if extra else ""
    raise DataError(
        f"input={path}: no column {', '.join(repr(m) for m in missing)} (the model's"
        f" features){also}; the columns are: {', '.join(header)}"
    )


def _numeric_columns(table: Any, targets: list[str], run: TrainedRun, path: Path) -> list[str]:
    """Trained on unnamed features: every numeric column that is not a label."""
    import pyarrow as pa

    features = [
        name
        for name in table.column_names
        if name not in targets
        and (
            pa.types.is_integer(table.column(name).type)
            or pa.types.is_floating(table.column(name).type)
        )
    ]
    if not features:
        raise DataError(f"input={path}: no numeric feature column")
    wanted = int(np.prod(run.input_shape))
    if len(features) != wanted:
        raise DataError(
            f"input={path}: {len(features)} numeric columns besides {', '.join(targets)}"
            f" ({', '.join(features[:3])}, ...), but the model takes {wanted} features, which"
            f" its training data did not name: keep only those (an id column can be text)"
        )
    return features


def _cifar(path: Path, run: TrainedRun) -> Inputs:
    """CIFAR binary records (their label bytes as the run's data had them)."""
    label_bytes = 2 if run.cfg.data.name == "cifar100" else 1
    coarse = label_bytes == 2 and run.cfg.data.get("label", "fine") == "coarse"
    index = label_bytes - 1 - int(coarse)
    x, y = cifar._read_split([path], label_bytes, index, len(run.classes), "the model")
    return Inputs(x, y)


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: not a readable gzip file ({err})") from None
    return data


def _idx(path: Path, run: TrainedRun) -> Inputs:
    x = torch.from_numpy(idx.parse(_read_bytes(path), path, idx.IMAGES_MAGIC).copy()).unsqueeze(1)
    labels_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    if not labels_path.is_file():
        return Inputs(x)
    y = idx.parse(_read_bytes(labels_path), labels_path, idx.LABELS_MAGIC)
    if len(y) != len(x):
        raise DataError(f"{path} holds {len(x)} images but {labels_path} {len(y)} labels")
    return Inputs(x, _check_indices(torch.from_numpy(y.astype(np.int64)), run, path))


def _image(path: Path, run: TrainedRun) -> torch.Tensor:
    """One image file as the model's (C, H, W) uint8, resized as the run's images were."""
    shape = run.input_shape
    if len(shape) != 3:
        values = int(np.prod(shape))
        raise DataError(f"input={path}: an image, but the model takes rows of {values} values")
    size = run.cfg.data.get("image_size") or None
    return torch.from_numpy(image_folder._read(path, size, shape[0]).copy())  # (writable)


def _image_folder(root: Path, run: TrainedRun) -> Inputs:
    """root/<class>/* (labelled by the folder's name) or root/* (unlabelled); a `file` column
    names each image."""
    dirs = image_folder._class_dirs(root)
    files: list[tuple[Path, str | None]] = []
    for folder in dirs or [root]:
        label = folder.name if dirs else None
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or path.is_dir():
                continue
            if path.suffix.lower() in image_folder.EXTENSIONS:
                files.append((path, label))
    if not files:
        raise DataError(f"input={root}: no image files there (or in its class subfolders)")
    images = [_image(path, run) for path, _ in files]
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise DataError(
            f"input={root}: images of different sizes {sorted(shapes)[:2]}; the model takes"
            f" {tuple(run.input_shape)}"
        )
    labels = _class_index([label for _, label in files], run, root) if dirs else None
    names = [str(path.relative_to(root)) for path, _ in files]
    return Inputs(torch.stack(images), labels, {"file": names})


def out_of_range(x: torch.Tensor, run: TrainedRun, path: Path) -> str | None:
    """One line when the inputs lie far outside the range the model was trained on (beyond
    the training range widened by its own width on either side, per channel or feature): e.g.
    0..255 pixels given to a model trained on 0..16. None when they fit, or when the
    checkpoint predates the saved range."""
    pre = run.hparams.get("preprocess") or {}
    low, high = pre.get("low"), pre.get("high")
    if not low or not high or len(x) == 0:
        return None
    values = x.float()
    model = run.members[0].model if run.members else run.model
    if getattr(model, "columns", None) is not None:  # a table: its numeric columns, imputed
        numeric = model.columns.numeric
        with torch.no_grad():
            values = model.columns(values)[:, :numeric]
        low, high = low[:numeric], high[:numeric]
        if not numeric:
            return None
    if len(low) == 1:
        seen = [(float(values.min()), float(values.max()))]
    else:  # per channel of (N, C, H, W) images, or per feature of (N, F) rows
        flat = values.transpose(0, 1).reshape(len(low), -1)
        seen = list(zip(flat.amin(1).tolist(), flat.amax(1).tolist(), strict=True))
    far = []
    for i, (lo, hi, (seen_lo, seen_hi)) in enumerate(zip(low, high, seen, strict=True)):
        width = max(hi - lo, abs(lo), abs(hi), 1e-6)  # a constant feature: its own scale
        if seen_lo < lo - width or seen_hi > hi + width:
            far.append((i, lo, hi, seen_lo, seen_hi))
    if not far:
        return None
    i, lo, hi, seen_lo, seen_hi = far[0]
    names = pre.get("features") or []
    where = ""
    if len(low) > 1:
        kind = "feature" if values.ndim == 2 else "channel"
        name = f"'{names[i]}'" if i < len(names) else str(i)
        where = f" in {kind} {name}" + (f" (and {len(far) - 1} more)" if len(far) > 1 else "")
    return (
        f"input={path}: values {seen_lo:g}..{seen_hi:g}{where}, far outside the {lo:g}..{hi:g}"
        " the model was trained on: its predictions are unreliable; rescale the inputs to the"
        " training data's units (strict=true refuses such inputs)"
    )
