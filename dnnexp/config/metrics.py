"""Which way each metric improves: the one table that checkpoint selection, early stopping, the
plateau schedule, a run's returned score and the report all read. Import-light (no torch)."""

from __future__ import annotations

from typing import Any

# the last part of a metric's name (`val/loss` -> `loss`) -> True where lower is better
LOWER_IS_BETTER = {
    "loss": True,
    "mse": True,
    "rmse": True,
    "mae": True,
    "acc": False,
    "acc_fgsm": False,  # accuracy under attack (eval.attacks)
    "acc_pgd": False,
    "f1": False,
    "precision": False,
    "recall": False,
    "r2": False,
    "ter": True,  # token error rate (task=seq2seq): edit distance / reference length
    "ser": True,  # sequence error rate: outputs that match no reference
    "ter_beam": True,  # the same, decoded with beam search (the test split)
    "ser_beam": True,
    "bleu": False,  # corpus BLEU, 0-100 (sacrebleu; seq2seq where the target is words)
    "bleu_beam": False,
}


INF = float("inf")
# the range a metric's values live in (same keys): the report clips its intervals to it
BOUNDS = {
    **dict.fromkeys(("loss", "mse", "rmse", "mae"), (0.0, INF)),
    **dict.fromkeys(("acc", "acc_fgsm", "acc_pgd", "f1", "precision", "recall"), (0.0, 1.0)),
    "r2": (-INF, 1.0),
    **dict.fromkeys(("ter", "ter_beam"), (0.0, INF)),
    **dict.fromkeys(("ser", "ser_beam"), (0.0, 1.0)),
    **dict.fromkeys(("bleu", "bleu_beam"), (0.0, 100.0)),
}


def bounds(metric: str) -> tuple[float, float]:
    """The range of `metric`'s values (`test/acc`: 0..1); unbounded for a name not in BOUNDS."""
    return BOUNDS.get(metric.rsplit("/", 1)[-1].lower(), (-INF, INF))


def lower_is_better(metric: str) -> bool:
    """Whether `metric` (e.g. `val/loss`, `test/acc`) improves downwards. A name the table does
    not hold counts as loss-like when it ends in loss or err(or) (`train/loss_step`)."""
    name = metric.rsplit("/", 1)[-1].lower()
    if name in LOWER_IS_BETTER:
        return LOWER_IS_BETTER[name]
    return "loss" in name or "err" in name


def mode(metric: str) -> str:
    """Lightning's and torch's word for the direction: 'min' or 'max'."""
    return "min" if lower_is_better(metric) else "max"


# what each task computes per split, and the validation metric a run returns as its score (to
# Hydra's multirun, to a search): never a test metric, the test split is only ever reported
TASK_METRICS = {
    "classification": ("loss", "acc", "precision", "recall", "f1"),
    "regression": ("loss", "mse", "rmse", "mae", "r2"),
    "seq2seq": ("loss", "ter", "ser"),
    # task=multitask: the weighted sum of the heads' losses, then each head's metrics under its
    # name (`stress/acc`, `length/r2`: those of its kind, `task_metrics`)
    "multitask": ("loss",),
}
# multitask: the score is `task.score` or the first head's (`task_score`); val/loss only where
# the heads are unknown (a summary from before they were recorded)
TASK_SCORE = {
    "classification": "val/acc",
    "regression": "val/r2",
    "seq2seq": "val/ter",
    "multitask": "val/loss",
}


def _name(task: Any) -> str:
    """A task's name, from its name or its config (a DictConfig or dict with `name`)."""
    if isinstance(task, str):
        return task
    getter = getattr(task, "get", None)
    return str((getter("name") if getter else None) or "classification")


def task_metrics(task: Any) -> tuple[str, ...]:
    """What a task computes per split (without the split): its own, and under multitask each
    head's as `<head>/<metric>`. `task`: a name, or the task config (multitask needs it)."""
    name = _name(task)
    if name != "multitask":
        return TASK_METRICS[name]
    from dnnexp.config.heads import heads_of

    per_head = (f"{h['name']}/{m}" for h in heads_of(task) for m in TASK_METRICS[h["kind"]])
    return (*TASK_METRICS[name], *per_head)


def task_score(task: Any) -> str:
    """The validation metric a run returns: the task's; under multitask `val/<task.score>`, by
    default the first head's acc (classification) or r2 (regression)."""
    name = _name(task)
    if name != "multitask" or isinstance(task, str):
        return TASK_SCORE[name]
    from dnnexp.config.heads import head_score, heads_of

    chosen = task.get("score")
    if chosen:
        return "val/" + str(chosen).removeprefix("val/")
    heads = heads_of(task)
    if not heads:
        return TASK_SCORE[name]
    return f"val/{heads[0]['name']}/{head_score(heads[0]['kind'])}"


def headline(task: Any, split: str = "test") -> str:
    """The metric shown first for a task: `test/acc`, `test/r2`; multitask: its score's
    (`test/stress/acc`). `task`: a name, or the task config (multitask needs it)."""
    return f"{split}/" + task_score(task).split("/", 1)[1]


def summary_task(summary: dict[str, Any]) -> dict[str, Any]:
    """The task a run's summary.json records, as `task_score` and `headline` read a task:
    its name (classification for an older summary without one) and, under multitask, its
    heads and score."""
    name = summary.get("task")
    return {
        "name": name if name in TASK_SCORE else "classification",
        "heads": summary.get("heads") or [],
        "score": summary.get("score"),
    }
