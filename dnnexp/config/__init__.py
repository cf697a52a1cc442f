"""Config handling that must stay light (no torch, no lightning): paths, schema, validation."""

from pathlib import Path


def conf_dir() -> Path:
    """The shipped Hydra config tree: dnnexp/conf in a wheel, <repo>/conf in a source checkout."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "conf"
    return installed if (installed / "train.yaml").is_file() else package.parent / "conf"
