"""The logger list: metrics.csv always; TensorBoard, MLflow and W&B (offline) beside it, each with
the rows, the config, the final test metrics and score, the status and the files; a resume
continues the same tracker runs; parallel runs create one SQLite store without racing."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from dnnexp.config.errors import ConfigError
from tests.conftest import compose, metrics_rows

pytest.importorskip("mlflow")
pytest.importorskip("wandb")
pytest.importorskip("tensorboard")

ALL = "logger=[csv,tensorboard,mlflow,wandb]"
QUICK = ("data.batch_size=64", "trainer.progress_bar=false", "trainer.model_summary=false")


def _train(run_dir: Path, store: Path, *overrides: str, resume: bool = False) -> dict:
    from dnnexp.training.run import train

    run_dir.mkdir(exist_ok=True)
    more = [f"resume={run_dir}"] if resume else []
    args = (ALL, f"logger.mlflow.tracking_uri=sqlite:///{store}", *QUICK, *overrides)
    return train(compose(*args, *more), run_dir=run_dir, overrides=list(args))


def _client(store: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{store}")


def test_every_tracker_gets_rows_config_final_metrics_status_and_files(tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)  # as Hydra writes it (this run is in-process)
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    summary = _train(run, store, "trainer.max_epochs=2", "scheduler=none")
    assert len(metrics_rows(run)) == 2  # metrics.csv is always there

    ids = summary["trackers"]
    client = _client(store)
    mlflow_run = client.get_run(ids["mlflow"]["run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags["dnnexp.status"] == "completed"
    assert mlflow_run.data.tags["dnnexp.seed"] == "0"
    params = mlflow_run.data.params
    assert params["optimizer.lr"] == "0.001" and params["overrides"].startswith(ALL)
    assert [m.step for m in client.get_metric_history(mlflow_run.info.run_id, "val/acc")] == [0, 1]
    final = mlflow_run.data.metrics
    assert final["test/acc"] == pytest.approx(summary["metrics"]["test/acc"])
    assert final["score"] == pytest.approx(summary["metrics"]["val/acc"])
    files = {a.path for a in client.list_artifacts(mlflow_run.info.run_id)}
    assert {"summary.json", "model_card.md", "confusion_matrix.png", ".hydra"} <= files

    offline = Path(ids["wandb"]["dir"])
    assert offline.is_dir() and offline.is_relative_to(run / "wandb")  # inside the run dir
    assert ids["wandb"]["mode"] == "offline" and offline.name.startswith("offline-run-")
    assert json.loads((offline / "files" / "summary.json").read_text())["status"] == "completed"

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    assert "test/acc" in events.Tags()["scalars"] and "val/acc" in events.Tags()["scalars"]
    assert "_hparams_/session_start_info" in events.summary_metadata  # the HParams tab


def test_a_resumed_run_continues_the_same_tracker_runs(tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    run = tmp_path / "run"
    first = _train(run, store, "trainer.max_epochs=1", "scheduler=none")
    again = _train(run, store, "trainer.max_epochs=2", "scheduler=none", resume=True)
    assert again["trackers"]["mlflow"]["run_id"] == first["trackers"]["mlflow"]["run_id"]
    assert again["trackers"]["wandb"]["id"] == first["trackers"]["wandb"]["id"]
    client = _client(store)
    run_id = again["trackers"]["mlflow"]["run_id"]
    assert [m.step for m in client.get_metric_history(run_id, "val/acc")] == [0, 1]
    assert len(client.search_runs([again["trackers"]["mlflow"]["experiment_id"]])) == 1


def _create(store: str, name: str, barrier) -> str:
    from dnnexp.training import trackers

    cfg = compose(ALL.replace(",wandb", ""), f"logger.mlflow.tracking_uri={store}", f"name={name}")
    barrier.wait()  # all at once, as joblib's jobs start
    _, found = trackers.build(cfg, Path(store[len("sqlite:///") :]).parent / name, [], None)
    return found["mlflow"]["run_id"]


def test_parallel_runs_create_one_store_and_one_experiment_without_racing(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = multiprocessing.get_context("fork")  # MLflow is not imported here before
    with context.Manager() as manager:
        barrier = manager.Barrier(3)
        with context.Pool(3) as pool:
            run_ids = pool.starmap(_create, [(store, "same", barrier)] * 3)
    assert len(set(run_ids)) == 3
    client = _client(tmp_path / "mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "same"]
    assert len(client.search_runs([experiment.experiment_id])) == 3


def test_a_tracker_that_is_not_installed_is_one_line(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a)
    )
    with pytest.raises(ConfigError, match=r"logger=mlflow needs the mlflow package: pip install"):
        compose("logger=[csv,mlflow]")


def test_the_old_logger_name_key_points_to_the_list() -> None:
    with pytest.raises(ConfigError, match=r"logger.name: not a dnnexp key; loggers are a list"):
        compose("+logger.name=csv")


@pytest.mark.slow
def test_a_parallel_sweep_logs_every_job_into_one_experiment_named_after_it(
    tmp_path: Path,
) -> None:
    """A sweep through the CLI into the default store (outputs/mlflow.db); the race of jobs that
    start at once is the test above."""
    from tests.conftest import run_cli

    done = run_cli(
        "train",
        "-m",
        "logger=[csv,mlflow]",
        "trainer=smoke",
        "seed=0,1",
        "hydra.sweep.dir=outputs/sweep",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    client = _client(tmp_path / "outputs" / "mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "outputs/sweep"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["dnnexp.seed"] for r in runs) == ["0", "1"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["dnnexp.variant"] for r in runs} == {"logger=[csv,mlflow] trainer=smoke"}


def test_a_store_that_cannot_be_opened_fails_the_run_in_one_line(tmp_path: Path) -> None:
    from dnnexp.config.errors import RunError

    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a store path whose parent is a file: cannot be created
    with pytest.raises(RunError, match=r"^logger=mlflow could not start its run: ") as err:
        _train(tmp_path / "run", blocker / "mlflow.db", "trainer=smoke")
    assert "\n" not in str(err.value)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed"
