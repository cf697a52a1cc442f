"""Real tables (`data=table`, `data/columns.py`): missing values, text categories, ids, Parquet
and Feather; statistics from the training split alone; bad tables in one line each."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dnnexp.data.local_files import DataError
from tests.conftest import compose, run_cli, summary

RNG = np.random.default_rng(0)
ISLANDS = ("Biscoe", "Dream", "Torgersen")


def write_messy(path: Path, n: int = 120, *, seed: int = 0, **cells: object) -> list[dict]:
    """A penguin-like table: a numeric column with missing cells, a text category, an integer
    code, an id; `cells` override a column's values (a list, one per row)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "adelie" if i % 2 else "gentoo"
        mass = rng.normal(4 if label == "adelie" else 6, 0.5)
        rows.append(
            {
                "id": f"p{seed}-{i}",
                "mass": "" if rng.random() < 0.15 else f"{mass:.3f}",
                "bill": f"{rng.normal():.3f}",
                "island": ISLANDS[i % 3] if rng.random() > 0.1 else "NA",
                "origin": str(i % 3 + 1),
                "species": label,
            }
        )
    for column, values in cells.items():
        for row, value in zip(rows, values, strict=True):
            row[column] = value
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def load(*overrides: str, task: str = "classification"):
    from dnnexp.data.datamodule import ArrayDataModule

    cfg = compose("data=table", "data.target=species", *overrides, f"task={task}")
    data = ArrayDataModule(cfg.data, cfg.seed, task=task)
    data.setup()
    return data


def _splits(n: int, labels: list[str], folds: int | None = None, fold: int = 0):
    """The row indices the data module's split gives (the same functions, the same seed)."""
    from dnnexp.data.splits import fold_split, stratified_split

    y = torch.tensor([0 if label == "adelie" else 1 for label in labels])  # sorted names
    train, val, test = stratified_split(y, 0.0 if folds else 0.1, 0.2, 0)
    if folds:
        train, val = fold_split(train, y[train], folds, fold, 0)
    return train.tolist(), val.tolist(), test.tolist()


def test_text_categories_ids_and_codes_get_their_own_treatment(tmp_path: Path, capsys) -> None:
    write_messy(tmp_path / "t.csv")
    data = load(f"data.path={tmp_path / 't.csv'}", "data.categorical=[origin]")
    line = capsys.readouterr().out
    assert (
        "columns: 2 numeric, 2 categorical (island, origin), 1 ignored (id: a different value in"
        " every row)" in line
    )
    spec = data.preprocess["columns"]
    assert spec["numeric"] == ["mass", "bill"] and spec["indicators"] == ["mass"]
    assert spec["categorical"] == {"island": list(ISLANDS), "origin": ["1", "2", "3"]}
    assert data.preprocess["features"][:3] == ["mass", "bill", "mass_missing"]
    assert "island=<missing>" in data.preprocess["features"]
    assert spec["missing_slots"] == ["island"]  # NA cells: a category of their own
    assert data.input_shape == (3 + 4 + 3,)
    x = data.splits["train"][0]
    assert torch.isfinite(x).all()
    as_number = load(f"data.path={tmp_path / 't.csv'}")  # an integer code is a number by default
    assert "origin" in as_number.preprocess["columns"]["numeric"]
    narrow = load(f"data.path={tmp_path / 't.csv'}", "data.max_categories=2", "data.ignore=[bill]")
    ignored = narrow.preprocess["columns"]["ignored"]
    assert ignored["island"] == "3 distinct values > data.max_categories=2"
    assert ignored["bill"] == "data.ignore"


def test_statistics_never_see_validation_or_test_rows(tmp_path: Path) -> None:
    """Validation and test rows are poisoned: a huge mass, a category of their own, missing
    cells only there. None of it reaches the medians, indicators or categories."""
    n = 120
    labels = ["adelie" if i % 2 else "gentoo" for i in range(n)]
    train, val, test = _splits(n, labels)
    rows = write_messy(tmp_path / "clean.csv", n)
    held_out = set(val) | set(test)
    mass = [r["mass"] if i not in held_out else "1e6" for i, r in enumerate(rows)]
    bill = [r["bill"] if i not in held_out else "" for i, r in enumerate(rows)]
    island = [r["island"] if i not in held_out else "Poison" for i, r in enumerate(rows)]
    write_messy(tmp_path / "t.csv", n, mass=mass, bill=bill, island=island)
    data = load(f"data.path={tmp_path / 't.csv'}")
    spec = data.preprocess["columns"]
    train_mass = np.array([float(mass[i]) if mass[i] else np.nan for i in train], np.float32)
    assert spec["medians"][0] == pytest.approx(float(np.nanmedian(train_mass)), rel=1e-6)
    assert spec["medians"][0] < 100 and spec["indicators"] == ["mass"]  # bill: none in training
    assert "Poison" not in spec["categorical"]["island"]
    assert data.preprocess["mean"][0] < 100  # the standardization too
    first = data.preprocess["features"].index("island=Biscoe")
    shares = torch.tensor(spec["frequencies"]["island"])  # the training rows' shares
    assert shares.sum().item() == pytest.approx(1.0)
    assert data.preprocess["mean"][first:] == [0.0] * len(shares)  # one-hot stays 0/1
    test_x = data.splits["test"][0][:, first : first + len(shares)]
    assert torch.allclose(test_x, shares.expand_as(test_x))  # a value training never saw


def test_k_fold_fits_the_statistics_on_each_folds_training_part(tmp_path: Path) -> None:
    n = 120
    labels = ["adelie" if i % 2 else "gentoo" for i in range(n)]
    rows = write_messy(tmp_path / "t.csv", n)
    medians = []
    for fold in (0, 1):
        data = load(f"data.path={tmp_path / 't.csv'}", "data.folds=3", f"data.fold={fold}")
        train, _, _ = _splits(n, labels, folds=3, fold=fold)
        values = np.array(
            [float(rows[i]["mass"]) if rows[i]["mass"] else np.nan for i in train], np.float32
        )
        medians.append(data.preprocess["columns"]["medians"][0])
        assert medians[-1] == pytest.approx(float(np.nanmedian(values)), rel=1e-6)
    assert medians[0] != medians[1]


def test_missing_value_policies_and_targets(tmp_path: Path, capsys) -> None:
    n = 60
    species = ["adelie" if i % 2 else "gentoo" for i in range(n)]
    species[3] = ""
    write_messy(tmp_path / "t.csv", n, species=species)
    data = load(f"data.path={tmp_path / 't.csv'}")
    out = capsys.readouterr().out
    assert "t.csv: dropped 1 rows whose target is missing" in out
    kept = sum(len(data.splits[s][1]) for s in ("train", "val", "test"))
    assert kept == n - 1
    dropped = load(f"data.path={tmp_path / 't.csv'}", "data.missing=drop")
    line = next(x for x in capsys.readouterr().out.splitlines() if "missing feature" in x)
    count = int(line.split("dropped ")[1].split()[0])
    assert sum(len(dropped.splits[s][1]) for s in ("train", "val", "test")) == n - 1 - count
    assert "indicators" in dropped.preprocess["columns"] and count > 0
    assert dropped.preprocess["columns"]["indicators"] == []
    with pytest.raises(DataError, match=r"row \d+, column '(mass|island)' is missing"):
        load(f"data.path={tmp_path / 't.csv'}", "data.missing=error")
    marker = ["-" if i % 5 == 4 else f"{i / n:.3f}" for i in range(n)]
    write_messy(tmp_path / "m.csv", n, bill=marker)
    with pytest.raises(DataError, match="row 6, column 'bill' is not a number: '-'"):
        load(f"data.path={tmp_path / 'm.csv'}")
    marked = load(f"data.path={tmp_path / 'm.csv'}", "data.na_values=['-','']")
    assert marked.preprocess["columns"]["indicators"][-1] == "bill"


def test_parquet_feather_tsv_and_gzip_read_as_the_csv(tmp_path: Path) -> None:
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    from dnnexp.data.table_io import read_table

    write_messy(tmp_path / "t.csv")
    table = read_table(tmp_path / "t.csv")
    pq.write_table(table, tmp_path / "t.parquet")
    feather.write_feather(table, tmp_path / "t.feather")
    import gzip

    tsv = (tmp_path / "t.csv").read_text().replace(",", "\t")
    (tmp_path / "t.tsv.gz").write_bytes(gzip.compress(tsv.encode()))
    reference = load(f"data.path={tmp_path / 't.csv'}")
    for name in ("t.parquet", "t.feather", "t.tsv.gz"):
        other = load(f"data.path={tmp_path / name}")
        assert other.preprocess == reference.preprocess, name
        for split in ("train", "val", "test"):
            assert torch.equal(other.splits[split][0], reference.splits[split][0]), name


BAD_TABLES = [
    ("all-missing", "column 'mass' is entirely missing: data.ignore=[mass] trains without it"),
    ("one-class", "the target column 'species' has one value ('gentoo') in every row"),
    ("no-such-categorical", "data.categorical names no column 'colour'; the columns are: id,"),
    ("nested", "column 'tags' holds list<element: int64> values; dnnexp reads numbers and text"),
    ("binary", "column 'blob' holds binary values; dnnexp reads numbers and text"),
    ("ragged", "row 4 has 5 cells, the header 6"),
    ("not-a-table", "not a table file; expected a .csv, .tsv (optionally .gz), .parquet"),
    ("corrupt-parquet", "not a readable parquet file"),
]


def _bad(tmp_path: Path, name: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.csv"
    n = 30
    if name == "all-missing":
        write_messy(path, n, mass=[""] * n)
    elif name == "one-class":
        write_messy(path, n, species=["gentoo"] * n)
    elif name == "no-such-categorical":
        write_messy(path, n)
        return [f"data.path={path}", "data.categorical=[colour]"]
    elif name in ("nested", "binary"):
        path = tmp_path / "t.parquet"
        column = (
            pa.array([[1, 2]] * n) if name == "nested" else pa.array([b"\x00"] * n, pa.binary())
        )
        labels = pa.array(["a", "b"] * (n // 2))
        pq.write_table(
            pa.table({"x": list(range(n)), name_of(name): column, "species": labels}), path
        )
    elif name == "ragged":
        write_messy(path, n)
        lines = path.read_text().splitlines()
        lines[3] = lines[3].rsplit(",", 1)[0]
        path.write_text("\n".join(lines) + "\n")
    elif name == "not-a-table":
        path = tmp_path / "t.json"
        path.write_text("{}")
    elif name == "corrupt-parquet":
        path = tmp_path / "t.parquet"
        path.write_bytes(b"PAR1 not really")
    return [f"data.path={path}"]


def name_of(kind: str) -> str:
    return {"nested": "tags", "binary": "blob"}[kind]


@pytest.mark.parametrize(("name", "expected"), BAD_TABLES, ids=[n for n, _ in BAD_TABLES])
def test_bad_tables_fail_in_one_line_naming_the_file(
    tmp_path: Path, name: str, expected: str
) -> None:
    with pytest.raises(DataError) as err:
        load(*_bad(tmp_path, name))
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_a_messy_table_trains_predicts_and_exports_as_it_tested(tmp_path: Path) -> None:
    """No hand cleaning: missing cells, text categories, an id; the test file holds an island
    the training file lacks. predict on the raw test file gives the run's test metrics; the
    exported graph takes the raw columns and matches PyTorch on them."""
    write_messy(tmp_path / "train.csv", 200, seed=1)
    write_messy(tmp_path / "test.csv", 60, seed=2, island=["Atlantis"] * 30 + ["Dream"] * 30)
    args = [
        "data=table",
        f"data.path={tmp_path / 'train.csv'}",
        f"data.test_path={tmp_path / 'test.csv'}",
        "data.target=species",
        "trainer.max_epochs=3",
        "hydra.run.dir=run",
    ]
    proc = run_cli("train", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "columns: 3 numeric, 1 categorical (island), 1 ignored (id:" in proc.stdout
    result = summary(tmp_path / "run")
    assert result["columns"]["categorical"]["island"] == list(ISLANDS)
    card = (tmp_path / "run" / "model_card.md").read_text()
    assert "| island | categorical | one-hot: Biscoe, Dream, Torgersen;" in card
    predicted = run_cli(
        "predict", "ckpt=run", f"input={tmp_path / 'test.csv'}", "out=preds.csv", cwd=tmp_path
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    metrics = json.loads((tmp_path / "preds.metrics.json").read_text())["metrics"]
    for key in ("acc", "loss", "f1"):
        assert metrics[key] == pytest.approx(result["metrics"][f"test/{key}"], abs=1e-6)
    rows = list(csv.DictReader(open(tmp_path / "preds.csv")))
    assert (
        len(rows) == 60
        and rows[0]["id"] == "p2-0"
        and rows[0]["prediction"] in ("adelie", "gentoo")
    )
    (tmp_path / "other.csv").write_text("id,weight,bill,island,origin\np,1,2,Dream,1\n")
    wrong = run_cli("predict", "ckpt=run", f"input={tmp_path / 'other.csv'}", cwd=tmp_path)
    assert wrong.returncode == 2 and (
        "no column 'mass' (the model's features); columns the training data did not have:"
        " weight" in wrong.stderr
    )
    exported = run_cli("export", "ckpt=run", "format=onnx", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    sidecar = json.loads((tmp_path / "run" / "export" / "model.onnx.json").read_text())
    assert sidecar["input"]["columns"] == ["mass", "bill", "origin", "island"]
    assert sidecar["input"]["shape"] == ["batch", 4] and sidecar["parity"]["passed"]
