"""Which way each metric improves: the one table that checkpoint selection, early stopping, the
plateau schedule, a run's returned score and the report all read. Import-light (no torch)."""

from __future__ import annotations

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
}
TASK_SCORE = {"classification": "val/acc", "regression": "val/r2", "seq2seq": "val/ter"}


def headline(task: str, split: str = "test") -> str:
    """The metric shown first for a task: `test/acc`, `test/r2`."""
    return f"{split}/" + TASK_SCORE[task].split("/", 1)[1]
