"""The `logger` group, a list: metrics.csv always (the report's contract), and beside it
TensorBoard, MLflow and Weights & Biases through Lightning's loggers.

Every logger gets each validation's row (`TrainingModule.on_validation_epoch_end`), the resolved
config and the overrides as hyperparameters (`start`), and at the end the test metrics and the
run's score, its status and its files (`finish`). Their ids go into summary.json (`build`
returns them) as soon as the run starts, so `resume=` (or a sweep job that resumes) continues
the same MLflow and W&B runs.

MLflow's default store is one SQLite file for every run under outputs/ (MLflow's own default
kind of store since 3.7); processes that start together (joblib jobs) would race on creating
its schema and experiments, so the store, the experiment and the run are created under a file
lock. MetricsCSV stays the first logger: Lightning's `trainer.log_dir` reads the first one, and
MLFlowLogger's breaks on a SQLite URI (Lightning#19441).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from dnnexp.config.errors import RunError
from dnnexp.config.metrics import task_score
from dnnexp.config.overrides import is_unit
from dnnexp.tasks.module import TrainingModule
from dnnexp.training.csv_logger import MetricsCSV
from dnnexp.utils.run_files import METRICS_CSV, SUMMARY

SQLITE = "sqlite:///"
ARTIFACTS = (SUMMARY, "model_card.md", "confusion_matrix.png", ".hydra/config.yaml", METRICS_CSV)
STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


def default_mlflow_uri() -> str:
    """One SQLite store for every run started from this directory."""
    return SQLITE + str((Path.cwd() / "outputs" / "mlflow.db").resolve())


def build(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    resume: dict | None = None,
    earlier: dict | None = None,
    sweep_dir: Path | None = None,
) -> tuple[list[Logger], dict[str, Any]]:
    """The run's loggers, and what summary.json keeps of each tracker (on rank 0), for a resume
    to continue the same runs. `resume`: the checkpoint a resumed run continues from
    (metrics.csv starts from its history); `earlier`: the tracker ids of the run being resumed
    (its summary.json); `sweep_dir`: the multirun this run is a job of (MLflow's experiment)."""
    if resume is None:
        loggers: list[Logger] = [MetricsCSV(run_dir / METRICS_CSV)]
    else:
        rows = TrainingModule.history_of(resume)
        loggers = [MetricsCSV(run_dir / METRICS_CSV, rows, int(resume["global_step"]))]
    chosen, earlier, found = cfg.logger, earlier or {}, {}
    if int(cfg.trainer.fast_dev_run):  # Lightning logs nothing in a fast_dev_run
        return loggers, found
    if chosen.tensorboard.enabled:
        from lightning.pytorch.loggers import TensorBoardLogger

        # default_hp_metric=False: the HParams tab shows the test metrics `finish` logs
        loggers.append(
            TensorBoardLogger(
                save_dir=run_dir, name="tensorboard", version="", default_hp_metric=False
            )
        )
        found["tensorboard"] = {"dir": str(run_dir / "tensorboard")}
    for name, start in (("mlflow", _mlflow), ("wandb", _wandb)):
        if chosen[name].enabled:
            try:
                logger, found[name] = start(cfg, run_dir, overrides, earlier.get(name), sweep_dir)
            except Exception as err:  # a store or server that cannot be reached: one line
                first = f"{type(err).__name__}: {err}".strip().splitlines()[0]
                raise RunError(f"logger={name} could not start its run: {first}") from None
            loggers.append(logger)
    return loggers, found


def _variant(overrides: list[str]) -> str:
    """The overrides that make a variant: without what pairs runs (the seed, data.fold: the
    report's rule, `is_unit`), Hydra's own, a resume's and a search trial's number."""
    skip = ("hydra.", "resume=", "search.trial=")
    kept = [o for o in overrides if not is_unit(o) and not o.startswith(skip)]
    return " ".join(kept) or "(defaults)"


def _mlflow(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    earlier: dict | None,
    sweep_dir: Path | None,
) -> tuple[Logger, dict[str, Any]]:
    from lightning.pytorch.loggers import MLFlowLogger

    knobs = cfg.logger.mlflow
    uri = knobs.tracking_uri or default_mlflow_uri()
    if earlier and earlier.get("tracking_uri") != uri:
        earlier = None  # another store now: a new MLflow run
    if knobs.experiment:
        experiment = knobs.experiment
    elif sweep_dir is not None:
        experiment = os.path.relpath(sweep_dir.resolve(), Path.cwd())
    else:
        experiment = cfg.name
    artifacts = None
    if uri.startswith(SQLITE):  # beside the SQLite file, not ./mlruns of whatever the cwd is
        artifacts = (Path(uri[len(SQLITE) :]).parent / "mlartifacts").as_uri()
    with _store_lock(uri):  # its client may create the store's schema already
        logger = MLFlowLogger(
            experiment_name=experiment,
            run_name=run_dir.name if sweep_dir is None else f"{sweep_dir.name}/{run_dir.name}",
            tracking_uri=uri,
            tags={
                "dnnexp.variant": _variant(overrides),
                "dnnexp.seed": str(cfg.seed),
                "dnnexp.run_dir": str(run_dir.resolve()),
                "dnnexp.status": "running",
            },
            artifact_location=artifacts,
            run_id=(earlier or {}).get("run_id"),
        )
        found = {"experiment": experiment, "tracking_uri": uri}
        if rank_zero_only.rank == 0:
            _ = logger.experiment  # the store, the experiment, the run
            found.update(run_id=logger.run_id, experiment_id=logger.experiment_id)
    return logger, found


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock beside a local SQLite store while it may be created."""
    if not uri.startswith(SQLITE):
        yield
        return
    path = Path(uri[len(SQLITE) :])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _wandb(
    cfg: DictConfig, run_dir: Path, overrides: list[str], earlier: dict | None, _: Any = None
) -> tuple[Logger, dict[str, Any]]:
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    knobs = cfg.logger.wandb
    logger = WandbLogger(
        name=run_dir.name,
        save_dir=str(run_dir),
        project=knobs.project,
        entity=knobs.entity,
        id=(earlier or {}).get("id"),
        resume="allow",
        mode=knobs.mode,
        tags=[f"seed={cfg.seed}"],
        notes=_variant(overrides),
        settings=wandb.Settings(silent=True),
    )
    found = {"mode": knobs.mode}
    if rank_zero_only.rank == 0:
        run = logger.experiment
        found.update(id=run.id, dir=str(Path(run.dir).parent))
    return logger, found


def hyperparameters(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """The resolved config, flattened to dotted keys, and the overrides as one string."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node if isinstance(node, (int, float, str, bool)) else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    flat["overrides"] = " ".join(overrides)
    return flat


@rank_zero_only
def start(loggers: list[Logger], cfg: DictConfig, overrides: list[str]) -> None:
    """The config as hyperparameters, for the trackers that keep them from the start
    (TensorBoard gets them with the final metrics: its HParams tab pairs them)."""
    params = hyperparameters(cfg, overrides)
    for logger in loggers:
        kind = type(logger).__name__
        if kind == "MLFlowLogger":
            known = logger.experiment.get_run(logger.run_id).data.params
            fresh = {k: v for k, v in params.items() if k not in known}  # a resume: only new
            if fresh:
                logger.log_hyperparams(fresh)
        elif kind == "WandbLogger":
            logger.experiment.config.update(params, allow_val_change=True)


@rank_zero_only
def finish(loggers: list[Logger], cfg: DictConfig, summary: dict, run_dir: Path) -> None:
    """The end: the test metrics and the run's score, its status and files, for each tracker.
    Never raises: the run and its files are complete, a tracker's failure is one line."""
    import sys

    status = summary.get("status", "failed")
    metrics = {k: v for k, v in summary.get("metrics", {}).items() if k.startswith("test/")}
    score = summary.get("metrics", {}).get(task_score(cfg.task))
    if score is not None:
        metrics["score"] = score
    step = int(summary.get("epochs") or 0)
    files = [run_dir / name for name in ARTIFACTS if (run_dir / name).is_file()]
    params = hyperparameters(cfg, summary.get("overrides") or [])  # as `start` logged them
    for logger in loggers:
        try:
            _finish_one(logger, params, metrics, step, status, files, run_dir)
        except Exception as err:  # noqa: BLE001 - a tracker never costs a finished run
            print(
                f"warning: logger {logger.name}: {type(err).__name__}: {err}".splitlines()[0],
                file=sys.stderr,
            )


def _finish_one(
    logger: Logger,
    params: dict[str, Any],
    metrics: dict,
    step: int,
    status: str,
    files: list[Path],
    run_dir: Path,
) -> None:
    kind = type(logger).__name__
    if kind == "TensorBoardLogger":
        logger.log_hyperparams(params, metrics=metrics)
        logger.finalize("success" if status == "completed" else status)
    elif kind == "MLFlowLogger":
        client, run_id = logger.experiment, logger.run_id
        if metrics:
            logger.log_metrics(metrics, step=step)
        client.set_tag(run_id, "dnnexp.status", status)
        for path in files:
            folder = str(path.parent.relative_to(run_dir)) if path.parent != run_dir else None
            client.log_artifact(run_id, str(path), artifact_path=folder)
        client.set_terminated(run_id, STATUS.get(status, "FAILED"))
    elif kind == "WandbLogger":
        import wandb

        run = logger.experiment
        run.summary.update({**metrics, "status": status})
        for path in files:
            run.save(str(path), base_path=str(run_dir), policy="now")
        run.finish(exit_code=0 if status == "completed" else 1)
        wandb.teardown()
