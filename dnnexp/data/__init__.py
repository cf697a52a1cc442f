"""Datasets as in-memory tensors: each option of `conf/data/` maps to one loader function here."""

from __future__ import annotations

from collections.abc import Callable

from dnnexp.data import bundled, cifar, digits, idx, image_folder, npz, synthetic, table, text
from dnnexp.data.arrays import Arrays

# name -> function(cfg.data) returning Arrays (x, y, class names)
DATASETS: dict[str, Callable[..., Arrays]] = {
    "digits": digits.load,
    "synthetic": synthetic.make,
    "synthetic_regression": synthetic.make_regression,
    "breast_cancer": bundled.breast_cancer,
    "wine": bundled.wine,
    "diabetes": bundled.diabetes,
    # the user's own files, read from local disk
    "mnist": idx.load,
    "cifar10": cifar.load_cifar10,
    "cifar100": cifar.load_cifar100,
    "image_folder": image_folder.load,
    "table": table.load,
    "csv": table.load,  # data=table under its first name
    "npz": npz.load,
    "text": text.load,
}

# task=multitask: name -> function(cfg.data, heads) returning Arrays with (N, heads) targets
MULTITASK: dict[str, Callable[..., Arrays]] = {
    "table": table.load_multitask,
    "csv": table.load_multitask,
    "text": text.load_multitask,
}
