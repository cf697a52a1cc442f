"""The Optuna study of a search: storage, sampler, pruner, and the trials a killed worker left.

Optuna is imported here only, when a search runs (`--help` and plain runs never pay for it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dnnexp.config.errors import ConfigError

JOURNAL = "search.journal"  # the embedded default storage, in the sweep dir
ASK_LOCK, CREATE_LOCK = 2207, 2208  # PostgreSQL advisory lock keys
WORKER = "dnnexp_worker"  # a trial's user attribute: host:pid of the process that runs it


def storage_url(search: Any, sweep_dir: Path) -> str:
    """`search.storage`, or the journal file in the sweep dir."""
    if not search.storage:
        return f"journal:{sweep_dir / JOURNAL}"
    url = str(search.storage)
    if url.startswith("postgresql://"):  # SQLAlchemy 2.0 reads this as psycopg2, 2.1 as psycopg
        import importlib.util

        if importlib.util.find_spec("psycopg") and not importlib.util.find_spec("psycopg2"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def open_storage(url: str) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url.startswith("journal:"):
        path = Path(url[len("journal:") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        # Two workers that start together on an empty database would both create Optuna's
        # tables, and one fails on PostgreSQL's catalog (pg_type's unique index): one at a time.
        with _server_lock(url, CREATE_LOCK):
            return optuna.storages.RDBStorage(url)
    except (ImportError, ModuleNotFoundError) as err:
        raise ConfigError(
            f"search.storage={redact(url)}: its database driver is missing ({err});"
            " for PostgreSQL: pip install 'dnnexp[postgres]'"
        ) from None
    except Exception as err:  # noqa: BLE001 - SQLAlchemy's connection errors are many
        first = str(err).splitlines()[0]
        raise ConfigError(f"search.storage={redact(url)}: cannot open it: {first}") from None


def redact(url: str) -> str:
    """A URL without its password, for messages."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def sampler(search: Any, space: list, multi_objective: bool) -> Any:
    """`search.sampler`: grid, random, tpe, gp, cmaes, nsga2 (seeded by `search.seed`)."""
    import optuna

    name, seed = search.sampler, search.seed
    if name in ("grid", "random"):  # grid: every point is queued up front (`grid_points`)
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "cmaes":
        if multi_objective:  # CMA-ES has one objective; NSGA-II is its evolutionary peer
            return optuna.samplers.NSGAIISampler(seed=seed)
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise ConfigError(
                "search.sampler=cmaes needs the cmaes package: pip install cmaes"
            ) from None
        # categorical keys (a model family) are sampled independently, by random search
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise ConfigError(f"search.sampler={name}: unknown")  # the schema lists the choices


def grid_points(space: list, options_have: Any) -> list[dict[str, Any]]:
    """Every point of a grid, in order, each once: a key of a swept group's option appears
    only in points of that option. Queued in the study, they are shared by every worker
    (Optuna's GridSampler would pick points per worker, and stops a study from inside tell)."""
    import itertools

    from dnnexp.search.space import applies

    points, seen = [], set()
    for values in itertools.product(*(p.grid() for p in space)):
        point = dict(zip((p.key for p in space), values, strict=True))
        chosen = {k: str(v) for k, v in point.items() if "." not in k}
        point = {k: v for k, v in point.items() if applies(k, chosen, options_have)}
        key = tuple(sorted(point.items()))
        if key not in seen:
            seen.add(key)
            points.append(point)
    return points


def pruner(search: Any) -> Any:
    import optuna

    if search.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=search.prune_startup_trials, n_warmup_steps=search.prune_warmup_epochs
        )
    if search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


@contextlib.contextmanager
def ask_lock(url: str, sweep_dir: Path) -> Iterator[None]:
    """One worker at a time between counting the study's trials and asking for a new one, so
    that several workers end with exactly `n_trials`. A file lock beside a file storage; a
    PostgreSQL advisory lock (held by one connection) for a server."""
    if url.startswith("postgresql"):
        with _server_lock(url, ASK_LOCK):
            yield
        return
    if url.startswith("journal:"):
        path = Path(url[len("journal:") :]).with_suffix(".ask.lock")
    elif url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :]).with_suffix(".ask.lock")
    else:
        path = sweep_dir / "search.ask.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _server_lock(url: str, key: int) -> Iterator[None]:
    """A PostgreSQL advisory lock, held by one connection for the block; nothing elsewhere."""
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"SELECT pg_advisory_lock({key})"))
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(f"SELECT pg_advisory_unlock({key})"))
    finally:
        engine.dispose()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(worker: str) -> bool:
    """False only when `worker` (host:pid) ran on this host and that process is gone (the
    same judgement as a run dir's claim: dnnexp.utils.claims)."""
    from dnnexp.utils.claims import alive

    host, _, pid = worker.rpartition(":")
    return not pid.isdigit() or alive(host, int(pid))


def recover_killed(study: Any, storage: Any, retry: bool) -> list[int]:
    """Mark failed the trials left RUNNING by a killed worker of this host (Optuna leaves them
    running forever under ask/tell); with `retry`, queue their params to run again. Returns
    their numbers."""
    import optuna
    from optuna.trial import TrialState

    dead = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER)
        if worker is None or _alive(worker):
            continue
        study_id = storage.get_study_id_from_name(study.study_name)  # the storage's public API
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        optuna.trial.Trial(study, trial_id).set_user_attr("error", f"worker {worker} was killed")
        study.tell(trial.number, state=TrialState.FAIL)
        if retry and trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        dead.append(trial.number)
    return dead
