"""The search loop behind `hydra/sweeper=dnnexp_search` (conf/sweep/{grid,random,...}.yaml).

Each round: under a lock, count the study's trials and ask Optuna for as many new ones as the
launcher runs at once; launch them as ordinary dnnexp jobs (each in `<sweep dir>/<trial>`, with
`search.trial=N` so the job reports its validations for pruning); read each job's summary.json
and tell Optuna the result. The study lives in a storage (a journal file in the sweep dir, or a
database), so re-running the command continues it, and several workers can share it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dnnexp.config.errors import ConfigError
from dnnexp.search import space as spaces
from dnnexp.search import study as studies
from dnnexp.sweep.job import parallel_jobs


def options_have(group: str, option: str, leaf: str) -> bool:
    """Whether option `option` of config group `group` has the key `leaf` (its schema)."""
    from dnnexp.config.schema import GROUP_SCHEMAS

    schema = GROUP_SCHEMAS.get(group, {}).get(option)
    if schema is None:
        return True  # not a schema'd group: the job's own validation decides
    import dataclasses

    return leaf.split(".", 1)[0] in {f.name for f in dataclasses.fields(schema)}


def objective_of(summary: dict[str, Any], search: Any, metric: str, direction: str) -> Any:
    """The value(s) Optuna is told for a completed trial."""
    value = summary.get("metrics", {}).get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    params = summary.get("params", 0)
    if search.objectives == 2:
        return [float(value), float(params)]
    sign = 1.0 if direction == "maximize" else -1.0
    return float(value) - sign * search.param_penalty * params / 1e6


class SearchLoop:
    def __init__(self, params: dict[str, str] | None) -> None:
        self.params = dict(params or {})

    def setup(self, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list:
        import optuna
        from optuna.trial import TrialState

        from dnnexp.config.metrics import mode, task_score
        from dnnexp.config.validate import validate

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        config = self.config
        cfg = validate(OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]))
        search = cfg.search
        if search is None:
            raise ConfigError("hydra/sweeper=dnnexp_search needs a search sweep: sweep=bayesian")
        space, fixed = spaces.parse_space(self.params, arguments)
        if not space:
            raise ConfigError("search space: empty; give hydra.sweeper.params or key=interval(...)")
        spaces.check_keys(space, cfg, options_have)
        spaces.check_families(space, cfg)
        metric = search.metric or task_score(cfg.task)
        direction = search.direction or ("minimize" if mode(metric) == "min" else "maximize")
        directions = [direction, "minimize"] if search.objectives == 2 else [direction]
        n_trials = search.n_trials
        grid = studies.grid_points(space, options_have) if search.sampler == "grid" else []
        if grid:
            n_trials = min(n_trials, len(grid))
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
        url = studies.storage_url(search, sweep_dir)
        storage = studies.open_storage(url)
        study = optuna.create_study(
            study_name=search.study_name,
            storage=storage,
            sampler=studies.sampler(search, space, len(directions) > 1),
            pruner=studies.pruner(search),
            directions=directions,
            load_if_exists=True,
        )
        if [d.name.lower() for d in study.directions] != directions:
            raise ConfigError(
                f"search.study_name={search.study_name}: the study in {url} optimizes"
                f" {[d.name.lower() for d in study.directions]}, not {directions}"
            )
        killed = studies.recover_killed(study, storage, search.retry_failed)
        if killed:
            print(f"search: trials {killed} were left running by a killed worker: marked failed")
        batch = search.batch_size or parallel_jobs(config.hydra.launcher)
        worker = studies.worker_id()
        returns = []
        while True:
            with studies.ask_lock(url, sweep_dir):
                existing = study.get_trials(deepcopy=False)
                if grid and not existing:  # a new grid search: queue every point once
                    for point in grid:
                        study.enqueue_trial(point)
                queued = TrialState.WAITING
                room = n_trials - sum(t.state != queued for t in existing)
                trials = [study.ask() for _ in range(min(batch, room))]
                for trial in trials:
                    trial.set_user_attr(studies.WORKER, worker)
            if not trials:
                break
            jobs = []
            for trial in trials:
                suggested = spaces.suggest(trial, space, options_have)
                jobs.append(
                    [
                        *fixed,
                        *suggested,
                        f"search.trial={trial.number}",
                        f"search.storage='{url}'",
                        f"hydra.sweep.subdir={trial.number}",
                    ]
                )
            results = self.launcher.launch(jobs, initial_job_idx=trials[0].number)
            returns.append(results)
            for trial in trials:
                self._tell(study, trial, sweep_dir / str(trial.number), search, metric, direction)
        finished = study.get_trials(deepcopy=False)
        counts = {s.name.lower(): sum(t.state == s for t in finished) for s in TrialState}
        print(
            f"search: {len(finished)} of {n_trials} trials: {counts['complete']} complete,"
            f" {counts['pruned']} pruned, {counts['fail']} failed -> {sweep_dir}"
        )
        from dnnexp.config.overrides import privacy_warning
        from dnnexp.search.summary import print_failed, print_top, private_runs, write_best
        from dnnexp.sweep.callbacks import search_failed

        print_failed(finished)
        print_top(study, metric, directions)
        write_best(study, sweep_dir, fixed, directions)
        private = private_runs(sweep_dir)
        if private:
            print(privacy_warning(private))
        if not counts["complete"]:
            search_failed("no trial completed")
        elif search.confirm_seeds and not counts["running"] and not counts["waiting"]:
            self._confirm(study, sweep_dir, fixed, search, metric, directions)
        return returns

    def _confirm(
        self,
        study: Any,
        sweep_dir: Path,
        fixed: list[str],
        search: Any,
        metric: str,
        directions: list[str],
    ) -> None:
        from dnnexp.search import confirm
        from dnnexp.search.summary import ranked

        best = ranked(study, directions)[0]
        jobs = confirm.jobs(fixed, best.params, search.confirm_seeds)
        print(f"search: confirming trial {best.number} against the start on fresh seeds")
        self.launcher.launch(jobs, initial_job_idx=len(study.trials))
        busy = confirm.held_elsewhere(sweep_dir, jobs)
        if busy is not None:  # another worker confirms too: its own end compares them all
            print(
                f"search: confirmation jobs are still running in {busy.describe()}; that"
                f" process compares them when they end (then: dnnexp report {sweep_dir})"
            )
            return
        confirm.print_confirmation(
            confirm.compare_runs(sweep_dir, search.confirm_seeds, best, metric)
        )

    def _tell(
        self, study: Any, trial: Any, job_dir: Path, search: Any, metric: str, direction: str
    ) -> None:
        import json

        from optuna.trial import TrialState

        from dnnexp.utils.run_files import SUMMARY

        try:
            summary = json.loads((job_dir / SUMMARY).read_text())
        except (OSError, ValueError):
            summary = {"status": "failed", "error": f"no readable {SUMMARY} in {job_dir}"}
        trial.set_user_attr("dir", str(job_dir))
        trial.set_user_attr("epochs", summary.get("epochs"))
        pruned_at = (summary.get("search") or {}).get("pruned_at_epoch")
        if summary.get("status") != "completed":
            trial.set_user_attr("error", summary.get("error", "failed"))
            study.tell(trial, state=TrialState.FAIL)
            return
        trial.set_user_attr("params_count", summary.get("params", 0))
        if pruned_at is not None:
            study.tell(trial, state=TrialState.PRUNED)
            return
        value = objective_of(summary, search, metric, direction)
        if value is None:
            trial.set_user_attr("error", f"no {metric} in {SUMMARY}")
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, value)
