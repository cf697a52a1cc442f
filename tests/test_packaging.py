"""The wheel ships every package and the config tree, so `pip install .` works, not only -e."""

from __future__ import annotations

import sys
from pathlib import Path

from dnnexp.config import conf_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for top in ("dnnexp", "hydra_plugins")  # hydra_plugins: a namespace, ours inside it
        for p in (REPO / top).rglob("__init__.py")
    }
    assert found | {"dnnexp.conf"} == listed


def test_config_tree_is_found() -> None:
    assert (conf_dir() / "train.yaml").is_file()
