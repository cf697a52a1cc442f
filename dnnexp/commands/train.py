"""`dnnexp train`: compose conf/train.yaml with Hydra, validate, then hand over to dnnexp.train."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig


def main(args: list[str]) -> int:
    if "--help" in args or "-h" in args:
        from dnnexp.config.help import render

        print(render(_config_dirs(args)))
        return 0
    refusal = _refuse_flag_clash(args) or _refuse_finished_run_dir(args)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
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


def _refuse_flag_clash(args: list[str]) -> str | None:
    modes = [a for a in args if a in ("-m", "--multirun", "--cfg", "-c", "--info", "-i", "--run")]
    if len(modes) > 1:
        return f"{' and '.join(modes)} cannot be combined: use one of them (e.g. --cfg job alone)"
    return None


def _refuse_finished_run_dir(args: list[str]) -> str | None:
    """An explicit hydra.run.dir that already holds a run is never reused (nothing overwritten).
    DDP ranks > 0 are started inside their rank 0's run dir on purpose and skip this."""
    if os.environ.get("LOCAL_RANK", "0") != "0" or "-m" in args or "--multirun" in args:
        return None
    for arg in args:
        if arg.startswith("hydra.run.dir="):
            run_dir = Path(arg.split("=", 1)[1].strip("'\""))
            if (run_dir / "summary.json").exists() or (run_dir / "checkpoints").exists():
                return (
                    f"hydra.run.dir={run_dir} already holds a run; pick a new directory"
                    " (or leave hydra.run.dir out for a fresh outputs/<date>/<time>)"
                )
    return None


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

    from dnnexp.config.errors import ConfigError, RunError
    from dnnexp.config.validate import validate

    hydra_cfg = HydraConfig.get()
    try:
        cfg = validate(cfg)
        from dnnexp.train import train  # heavy: torch + lightning

        summary = train(
            cfg,
            run_dir=Path(hydra_cfg.runtime.output_dir),
            overrides=list(hydra_cfg.overrides.task),
        )
    except (ConfigError, RunError) as err:
        if hydra_cfg.mode == RunMode.MULTIRUN or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise  # a multirun goes on with the other jobs and reports this one as failed
        _discard_unstarted_run_dir(Path(hydra_cfg.runtime.output_dir))
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return summary["metrics"].get("test/acc")


def _discard_unstarted_run_dir(run_dir: Path) -> None:
    """A run refused before training leaves no run dir that looks like a run: remove what Hydra
    wrote (.hydra/, the log) and the dir itself if nothing else is in it."""
    if (run_dir / "summary.json").exists():
        return  # the run started: its summary says how it ended
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (run_dir / ".hydra" / name).unlink(missing_ok=True)
    for log in run_dir.glob("*.log"):
        log.unlink()
    for path in (run_dir / ".hydra", run_dir):
        try:
            path.rmdir()
        except OSError:
            pass  # not empty: something else lives there, leave it
