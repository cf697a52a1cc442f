"""Reading real-sized tables, and `dnnexp predict` on one, without real data.

    python scripts/bench_tables.py [--rows 1000000] [--predict-rows 100000] [--dir DIR]

Writes a CSV of ROWS rows x 20 mixed columns (14 numeric with 5% missing cells, 4 text
categories, an integer code, an id) plus a label, then reads it, each reader in a fresh process
(best of two, imports not timed; peak RSS of that process):

- `csv module`: the reader dnnexp had before `data=table`: Python's csv module, then a float
  conversion per numeric column (missing cells read as NaN, so that it gets through at all).
- `pyarrow (dnnexp)`: what a run does: `read_table`, the column plan, the raw column matrix.
- `pandas`: `pandas.read_csv` and the same matrix (measured only where pandas is installed).

Then trains a small model on the first 20,000 rows and times `dnnexp predict` on PREDICT_ROWS:
in-process (`predict()`: read, encode, model, write the CSV) and as a whole CLI process.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
NUMERIC, TEXT = 14, 4


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, rows)
    columns = {}
    for j in range(NUMERIC):
        values = rng.normal(label * (j % 3), 1.0).round(4)
        columns[f"x{j}"] = pa.array(values, mask=rng.random(rows) < 0.05)
    for j in range(TEXT):
        names = np.array([f"cat{j}_{k}" for k in range(5 + j)])
        columns[f"t{j}"] = pa.array(names[(label + rng.integers(0, 5 + j, rows)) % len(names)])
    columns["code"] = pa.array(rng.integers(1, 4, rows))
    columns["id"] = pa.array([f"row{i}" for i in range(rows)])
    columns["label"] = pa.array(np.array(["a", "b", "c"])[label])
    pacsv.write_csv(pa.table(columns), path)


def read_csv_module(path: Path) -> np.ndarray:
    """The pre-`data=table` reader: csv.reader rows, then one float conversion per column."""
    with open(path, newline="") as f:
        table = [row for row in csv.reader(f) if row]
    header, rows = table[0], table[1:]
    numeric = [j for j, name in enumerate(header) if name.startswith("x") or name == "code"]
    return np.stack(
        [np.array([row[j] or "nan" for row in rows], dtype=np.float64) for j in numeric], axis=1
    )


def read_dnnexp(path: Path) -> np.ndarray:
    from omegaconf import OmegaConf

    from dnnexp.data.columns import extend_vocab, plan_columns, raw_matrix
    from dnnexp.data.table_io import read_table

    cfg = OmegaConf.create(
        {"target": "label", "features": None, "categorical": [], "ignore": [], "max_categories": 50}
    )
    table = read_table(path)
    plan = plan_columns(table, cfg, path)
    extend_vocab(plan, table)
    return raw_matrix(table, plan, plan.vocab, path)


def read_pandas(path: Path) -> np.ndarray:
    import pandas as pd

    frame = pd.read_csv(path)
    parts = [frame[[c for c in frame if c.startswith("x") or c == "code"]].to_numpy(np.float32)]
    parts += [frame[f"t{j}"].astype("category").cat.codes.to_numpy()[:, None] for j in range(TEXT)]
    return np.concatenate(parts, axis=1)


READERS = {"csv module": read_csv_module, "pyarrow (dnnexp)": read_dnnexp, "pandas": read_pandas}


WARM = {"pyarrow (dnnexp)": ["dnnexp.data.columns", "dnnexp.data.table_io", "pyarrow.csv"]}
WARM["pandas"] = ["pandas"]


def one_read(kind: str, path: Path) -> None:
    import importlib

    for module in WARM.get(kind, []):  # the reading is timed, not the imports
        importlib.import_module(module)
    started = time.perf_counter()
    x = READERS[kind](path)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "shape": list(x.shape)}))


def measure(kind: str, path: Path) -> dict | None:
    best = None
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, __file__, "--read", kind, str(path)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            if "No module named" in proc.stderr:
                return None
            raise SystemExit(proc.stderr)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if best is None or result["seconds"] < best["seconds"]:
            best = result
    return best


def bench_predict(root: Path, rows: int) -> None:
    import pyarrow.csv as pacsv

    write_table(root / "train.csv", 20_000, seed=1)
    write_table(root / "new.csv", rows, seed=2)
    run = root / "run"
    train = [
        sys.executable, "-m", "dnnexp", "train", "data=table", f"data.path={root / 'train.csv'}",
        "trainer.max_epochs=1", f"hydra.run.dir={run}", "trainer.progress_bar=false",
    ]  # fmt: skip
    subprocess.run(train, check=True, capture_output=True)
    from dnnexp.inference.predict import predict

    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        predict(str(run), root / "new.csv", root / "preds.csv")
        best = min(best, time.perf_counter() - started)
    assert len(pacsv.read_csv(root / "preds.csv")) == rows
    command = [
        sys.executable, "-m", "dnnexp", "predict", f"ckpt={run}", f"input={root / 'new.csv'}",
        f"out={root / 'preds.csv'}",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    process = time.perf_counter() - started
    print(
        f"predict on {rows:,} rows: {best:.2f} s in-process ({rows / best:,.0f} rows/s: read,"
        f" encode, model, write); the whole CLI process {process:.2f} s"
        f" ({rows / process:,.0f} rows/s, Python and torch start included)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--predict-rows", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--read", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        one_read(args.read[0], Path(args.read[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        path = root / "big.csv"
        write_table(path, args.rows)
        size = path.stat().st_size / 1e6
        print(f"{args.rows:,} rows x 20 columns + label, {size:.0f} MB CSV")
        results = {kind: measure(kind, path) for kind in READERS}
        base = results["csv module"]["seconds"]
        print("| reader | time (s) | peak RSS (MB) | vs the csv module |")
        print("|---|---:|---:|---:|")
        for kind, result in results.items():
            if result is None:
                print(f"| {kind} | not installed | | |")
                continue
            s, mb = result["seconds"], result["peak_mb"]
            print(f"| {kind} | {s:.2f} | {mb:,.0f} | {base / s:.1f}x |")
        bench_predict(root, args.predict_rows)


if __name__ == "__main__":
    main()
