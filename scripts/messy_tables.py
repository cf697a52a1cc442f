"""A messy copy of two bundled tables, trained on as they are (no hand cleaning).

    python scripts/messy_tables.py [--dir DIR] [--seeds 5] [--write-only]

From scikit-learn's breast_cancer (classification) and diabetes (regression): an 80/20 split
into a training and a test file, written twice. The clean copy as it is; the messy copy with
10% of the numeric cells blanked at random, two numeric features replaced by text categories
(their training quartiles, named), an id column, and in the test file a category value the
training file lacks. Then the default MLP (`dnnexp train -m data=table ... seed=0..4`) on each
copy, and scikit-learn's HistGradientBoosting on the messy one (NaN and categories natively),
five seeds each; prints the test accuracy (R² for diabetes), mean ± SD, as a markdown table.
`--write-only`: write the four files of each table into DIR and stop.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BINS = ("low", "mid-low", "mid-high", "high")


def dataset(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn import datasets

    bunch = {"breast_cancer": datasets.load_breast_cancer, "diabetes": datasets.load_diabetes}
    data = bunch[name]()
    names = [str(n).replace(" ", "_") for n in data.feature_names]
    return data.data, data.target, names


def write(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(header)
        out.writerows(rows)


def make_copies(name: str, root: Path) -> dict[str, Path]:
    """clean/messy train/test CSVs of `name`; returns their paths."""
    rng = np.random.default_rng(0)
    x, y, names = dataset(name)
    order = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    train, test = order[:cut], order[cut:]
    binned = [0, 1]  # the first two features become text categories
    edges = {j: np.quantile(x[train, j], [0.25, 0.5, 0.75]) for j in binned}
    header = [*names, "target"]
    paths = {}
    for split, idx in (("train", train), ("test", test)):
        clean = [[*x[i].tolist(), y[i]] for i in idx]
        paths[f"clean_{split}"] = root / f"{name}_clean_{split}.csv"
        write(paths[f"clean_{split}"], header, clean)
        messy = []
        for k, i in enumerate(idx):
            row: list[object] = [f"{split}-{k}"]
            for j, value in enumerate(x[i]):
                if j in binned:
                    cell = BINS[int(np.searchsorted(edges[j], value))]
                    if split == "test" and k % 10 == 0 and j == binned[0]:
                        cell = "off-scale"  # a value the training file lacks
                    row.append(cell)
                else:
                    row.append("" if rng.random() < 0.10 else f"{value:.6g}")
            row.append(y[i])
            messy.append(row)
        paths[f"messy_{split}"] = root / f"{name}_messy_{split}.csv"
        write(paths[f"messy_{split}"], ["id", *header], messy)
    return paths


def dnnexp_runs(train: Path, test: Path, task: str, out: Path, seeds: int) -> list[float]:
    command = [
        sys.executable, "-m", "dnnexp", "train", "-m", "data=table", f"data.path={train}",
        f"data.test_path={test}", "data.target=target", f"task={task}",
        f"seed={','.join(str(s) for s in range(seeds))}", f"hydra.sweep.dir={out}",
        "trainer.progress_bar=false", "trainer.model_summary=false",
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    metric = "test/r2" if task == "regression" else "test/acc"
    return [
        json.loads(path.read_text())["metrics"][metric]
        for path in sorted(out.glob("*/summary.json"))
    ]


def boosting_runs(train: Path, test: Path, task: str, seeds: int) -> list[float]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    def read(path: Path, vocab: dict[int, list[str]]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))[1:]
        cells = [row[1:-1] for row in rows]  # no id, no target
        text = [j for j, v in enumerate(cells[0]) if v in BINS or v == "off-scale"]
        x = np.empty((len(cells), len(cells[0])))
        for j in range(x.shape[1]):
            column = [row[j] for row in cells]
            if j in text:
                known = vocab.setdefault(j, sorted(set(column)))
                x[:, j] = [known.index(v) if v in known else np.nan for v in column]
            else:
                x[:, j] = [float(v) if v else np.nan for v in column]
        return x, np.array([float(row[-1]) for row in rows]), text

    vocab: dict[int, list[str]] = {}
    x_train, y_train, text = read(train, vocab)
    x_test, y_test, _ = read(test, vocab)
    scores = []
    for seed in range(seeds):
        if task == "regression":
            model = HistGradientBoostingRegressor(categorical_features=text, random_state=seed)
        else:
            model = HistGradientBoostingClassifier(categorical_features=text, random_state=seed)
        scores.append(model.fit(x_train, y_train).score(x_test, y_test))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--write-only", action="store_true")
    args = parser.parse_args()
    if args.write_only:
        directory = args.dir or Path(".")
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("breast_cancer", "diabetes"):
            for path in make_copies(name, directory).values():
                print(path)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        print(
            "| table | metric | clean CSV, MLP | messy CSV, MLP | messy CSV, HistGradientBoosting |"
        )
        print("|---|---|---:|---:|---:|")
        for name, task in (("breast_cancer", "classification"), ("diabetes", "regression")):
            paths = make_copies(name, root)
            results = [
                dnnexp_runs(
                    paths[f"{copy}_train"],
                    paths[f"{copy}_test"],
                    task,
                    root / f"{name}-{copy}",
                    args.seeds,
                )  # fmt: skip
                for copy in ("clean", "messy")
            ]
            results.append(
                boosting_runs(paths["messy_train"], paths["messy_test"], task, args.seeds)
            )
            metric = "test R²" if task == "regression" else "test accuracy"
            cells = [f"{np.mean(r):.4f} ± {np.std(r, ddof=1):.4f}" for r in results]
            print(f"| {name} | {metric} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
