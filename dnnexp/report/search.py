"""`dnnexp report` on a search dir: every trial of the study, the best trial (or the Pareto
front of two objectives), the parameters' importance and the confirmation on fresh seeds.

The study is read from the storage the search used (`multirun.yaml`'s `search.storage`, else
the journal file in the dir). Optuna is imported only here, when the dir is a search.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dnnexp.report.collect import ReportError

MIN_IMPORTANCE_TRIALS = 4  # fewer completed trials: no importance (both evaluators need a spread)
# Optuna's evaluators: PED-ANOVA (Optuna's default, no extra package) assesses every parameter,
# a family's own keys included; fANOVA (scikit-learn's random forest) only the parameters that
# every completed trial has.
EVALUATORS = ("PED-ANOVA", "fANOVA")


@dataclass
class TrialRow:
    number: int
    state: str  # complete, pruned, fail, running, waiting
    values: list[float] | None
    params: dict[str, Any]
    params_count: int | None
    epochs: int | None  # epochs trained (a pruned trial: where it stopped)
    last_value: float | None  # the last reported validation score
    duration_s: float | None
    error: str | None
    dir: str | None


@dataclass
class SearchReport:
    root: Path
    study_name: str
    storage: str
    metric: str
    directions: list[str]
    n_trials: int
    trials: list[TrialRow]
    best: list[int]  # the best trial, or the Pareto front's trials (two objectives)
    importance: dict[str, dict[str, float]] = field(default_factory=dict)  # param -> evaluator
    notes: list[str] = field(default_factory=list)
    confirmation: dict[str, Any] | None = None

    def count(self, state: str) -> int:
        return sum(t.state == state for t in self.trials)

    @property
    def objectives(self) -> list[str]:
        return [self.metric, "params"][: len(self.directions)]


def search_config(root: Path) -> Any | None:
    """The `search` node of the dir's multirun.yaml, or None when the dir is not a search."""
    path = root / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        config = OmegaConf.load(path)
    except Exception:  # noqa: BLE001 - not a readable config: not a search for the report
        return None
    return config.get("search") if config.get("search") is not None else None


def build(root: Path) -> SearchReport:
    import optuna

    from dnnexp.config.errors import ConfigError
    from dnnexp.config.metrics import task_score
    from dnnexp.search.confirm import CONFIRMATION
    from dnnexp.search.study import JOURNAL, open_storage, storage_url

    search = search_config(root)
    config = OmegaConf.load(root / "multirun.yaml")
    url = storage_url(search, root)
    if not search.storage and not (root / JOURNAL).is_file():
        raise ReportError(f"{root}: a search dir without its study ({JOURNAL} is missing)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=search.study_name, storage=open_storage(url))
    except ConfigError as err:
        raise ReportError(str(err)) from None
    except KeyError:
        raise ReportError(f"{root}: no study {search.study_name!r} in {url}") from None
    directions = [d.name.lower() for d in study.directions]
    metric = search.metric or task_score(config.task)
    trials = [_row(t) for t in study.get_trials(deepcopy=False)]
    report = SearchReport(
        root, search.study_name, url, metric, directions, search.n_trials, trials, best=[]
    )
    if report.count("complete"):
        if len(directions) > 1:
            report.best = sorted(t.number for t in study.best_trials)
        else:
            from dnnexp.search.summary import ranked

            report.best = [ranked(study, directions)[0].number]
    report.importance, report.notes = importances(study, directions)
    from dnnexp.config.overrides import privacy_warning
    from dnnexp.search.summary import private_runs

    private = private_runs(root)
    if private:
        report.notes.append(privacy_warning(private))
    confirmation = root / CONFIRMATION
    if confirmation.is_file():
        try:
            report.confirmation = json.loads(confirmation.read_text())
        except ValueError:
            report.notes.append(f"{CONFIRMATION}: not readable JSON; left out")
    return report


def _row(trial: Any) -> TrialRow:
    steps = trial.intermediate_values
    duration = trial.duration.total_seconds() if trial.duration else None
    return TrialRow(
        number=trial.number,
        state=trial.state.name.lower(),
        values=list(trial.values) if trial.values else None,
        params=dict(trial.params),
        params_count=trial.user_attrs.get("params_count"),
        epochs=trial.user_attrs.get("epochs") or len(steps) or None,
        last_value=steps[max(steps)] if steps else None,
        duration_s=duration,
        error=trial.user_attrs.get("error"),
        dir=trial.user_attrs.get("dir"),
    )


def importances(study: Any, directions: list[str]) -> tuple[dict[str, dict[str, float]], list]:
    """{param: {evaluator: importance}} of the first objective, and notes on what was left out."""
    from optuna.importance import (
        FanovaImportanceEvaluator,
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < MIN_IMPORTANCE_TRIALS:
        return {}, [f"importance: needs at least {MIN_IMPORTANCE_TRIALS} completed trials"]
    target = None
    if len(directions) > 1:  # of the metric; PED-ANOVA reads a target as lower-is-better
        sign = -1.0 if directions[0] == "maximize" else 1.0
        target = lambda t: sign * t.values[0]  # noqa: E731
    evaluators = {
        "PED-ANOVA": PedAnovaImportanceEvaluator(),
        "fANOVA": FanovaImportanceEvaluator(seed=0),
    }
    table: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for name, evaluator in evaluators.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = get_param_importances(study, evaluator=evaluator, target=target)
            except (ValueError, RuntimeError) as err:
                notes.append(f"{name}: {err}")
                continue
        sparse = []
        for warning in caught:
            text = str(warning.message)
            regime = re.match(r"Some regimes for parameter `(.+?)` have less than", text)
            if regime:
                sparse.append(regime.group(1))
            elif "computes the importances of params to achieve low" not in text:
                notes.append(f"{name}: {text}")
        if sparse:
            notes.append(f"{name}: too few trials with some values of {', '.join(sparse)}:"
                         " their importance is rough")  # fmt: skip
        for param, value in result.items():
            table.setdefault(param, {})[name] = float(value)
    left_out = sorted({k for t in done for k in t.params} - set(table))
    if left_out:
        notes.append(f"importance: {', '.join(left_out)} not assessed (too few trials with it)")
    order = sorted(table, key=lambda p: -table[p].get("PED-ANOVA", table[p].get("fANOVA", 0.0)))
    return {p: table[p] for p in order}, list(dict.fromkeys(notes))
