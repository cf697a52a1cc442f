"""Datasets as in-memory tensors: each option of `conf/data/` maps to one loader function here."""

from __future__ import annotations

from collections.abc import Callable

from dnnexp.data import bundled, digits, synthetic
from dnnexp.data.arrays import Arrays

# name -> function(cfg.data) returning Arrays (x, y, class names)
DATASETS: dict[str, Callable[..., Arrays]] = {
    "digits": digits.load,
    "synthetic": synthetic.make,
    "synthetic_regression": synthetic.make_regression,
    "breast_cancer": bundled.breast_cancer,
    "wine": bundled.wine,
    "diabetes": bundled.diabetes,
}
