"""Config handling that must stay light (no torch, no lightning): paths, schema, validation."""

from pathlib import Path


def config_dirs(args: list[str]) -> list[str]:
    """The values of --config-dir/-cd DIR (or --config-dir=DIR) in a command line."""
    dirs = []
    for i, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            dirs.append(args[i + 1])
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
    return dirs


def conf_dir() -> Path:
    """The shipped Hydra config tree: dnnexp/conf in a wheel, <repo>/conf in a source checkout."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "conf"
    return installed if (installed / "train.yaml").is_file() else package.parent / "conf"
