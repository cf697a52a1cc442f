"""scikit-learn's bundled data files, read without importing sklearn (a second of startup).

Nothing is downloaded: the files ship inside the scikit-learn package. Should a future
scikit-learn move them, the loaders fall back to its public `load_*` functions.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from dnnexp.data.arrays import Arrays


def bundled_file(name: str) -> Path | None:
    """`sklearn/datasets/data/<name>` of the installed scikit-learn, or None."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / name
    return path if path.is_file() else None


def _labelled_csv(name: str, loader: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's labelled CSV format: a header `n_samples,n_features,class names...`,
    then the features and the class index on each row."""
    path = bundled_file(name)
    if path is None:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader)()
        return bunch.data, bunch.target, [str(n) for n in bunch.target_names]
    with open(path) as f:
        header = f.readline().strip().split(",")
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    return table[:, :-1], table[:, -1], header[2:]


def _tabular(features: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(features), dtype=torch.float32)


def breast_cancer(cfg: object = None) -> Arrays:
    """Wisconsin diagnostic breast cancer: 569 x 30 features, malignant (0) or benign (1)."""
    x, y, names = _labelled_csv("breast_cancer.csv", "load_breast_cancer")
    return Arrays(_tabular(x), torch.as_tensor(y, dtype=torch.int64), names)


def wine(cfg: object = None) -> Arrays:
    """UCI wine recognition: 178 x 13 chemical measurements, 3 cultivars."""
    x, y, names = _labelled_csv("wine_data.csv", "load_wine")
    return Arrays(_tabular(x), torch.as_tensor(y, dtype=torch.int64), names)


def diabetes(cfg: object = None) -> Arrays:
    """Efron et al.'s diabetes data: 442 patients x 10 baseline features (age, sex, bmi, blood
    pressure, six serum measurements) in their original units; the target is a measure of
    disease progression one year later (25..346)."""
    data, target = bundled_file("diabetes_data_raw.csv.gz"), bundled_file("diabetes_target.csv.gz")
    if data is None or target is None:
        from sklearn.datasets import load_diabetes

        x, y = load_diabetes(return_X_y=True, scaled=False)
    else:
        x, y = np.loadtxt(data), np.loadtxt(target)
    return Arrays(_tabular(x), torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1))
