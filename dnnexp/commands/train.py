"""`dnnexp train`: compose conf/train.yaml with Hydra, validate, then hand over to dnnexp.train."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig


def main(args: list[str]) -> int:
    if "--help" in args or "-h" in args:
        from dnnexp.config.help import render

        print(render(_config_dirs(args)))
        return 0
    import hydra

    from dnnexp.config import conf_dir, schema
    from dnnexp.config.hydra_setup import install_one_line_errors, register_resolvers

    schema.register()
    register_resolvers()
    install_one_line_errors()
    sys.argv = [sys.argv[0], *args]  # Hydra reads its flags and overrides from sys.argv
    entry = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="train")(_job)
    entry()
    return 0


def _config_dirs(args: list[str]) -> list[str]:
    """The values of --config-dir/-cd DIR (or --config-dir=DIR) in args."""
    dirs = []
    for i, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            dirs.append(args[i + 1])
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
    return dirs


def _job(cfg: DictConfig) -> float | None:
    """One training job (the whole run, or one job of a multirun)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from dnnexp.config.errors import ConfigError
    from dnnexp.config.validate import validate

    hydra_cfg = HydraConfig.get()
    try:
        cfg = validate(cfg)
    except ConfigError as err:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # the sweep goes on; the job is reported as failed
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    from dnnexp.train import train  # heavy: torch + lightning

    summary = train(
        cfg,
        run_dir=Path(hydra_cfg.runtime.output_dir),
        overrides=list(hydra_cfg.overrides.task),
    )
    return summary["metrics"].get("test/acc")
