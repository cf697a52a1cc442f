"""In a search trial's job: report each validation to Optuna, stop the run when it says prune.

The trial is reached through the study's storage (the job may run in another process than the
sweeper: a joblib worker, a SLURM job). A pruned run stops like an early-stopped one, its
summary.json says `search.pruned`, and the sweeper tells Optuna the trial was pruned.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback


class TrialPruning(Callback):
    def __init__(self, search: Any, metric: str) -> None:
        import optuna

        from dnnexp.search.study import open_storage, pruner

        storage = open_storage(str(search.storage))
        # the pruner lives in the process that asks it, here: the search's own settings
        study = optuna.load_study(
            study_name=search.study_name, storage=storage, pruner=pruner(search)
        )
        study_id = storage.get_study_id_from_name(search.study_name)  # the storage's public API
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(search.trial))
        self.trial = optuna.trial.Trial(study, trial_id)
        self.metric = metric
        self.pruned_at: int | None = None
        self._multi_objective = len(study.directions) > 1  # Optuna prunes single objectives only

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or self._multi_objective:
            return
        prune = False
        if trainer.global_rank == 0:  # one report per epoch; the decision goes to every rank
            value = trainer.callback_metrics.get(self.metric)
            if value is not None:
                self.trial.report(float(value), step=trainer.current_epoch)
                prune = self.trial.should_prune()
        if trainer.world_size > 1:  # every DDP rank must stop at the same epoch, or they hang
            prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune:
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True
