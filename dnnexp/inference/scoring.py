"""The task's own metrics for a trained model's outputs against known labels: the same
`EpochStats` the training loop reports with, so `predict`, ensembles and `summary.json` agree."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dnnexp.tasks import build_objective
from dnnexp.tasks.metrics import ClassificationStats


def metrics_of(
    outputs: torch.Tensor,
    labels: torch.Tensor,
    cfg,
    target_stats: dict | None,
    heads: list[dict] | None = None,
) -> tuple[dict[str, float], list[list[int]] | None]:
    """Metrics of `outputs` (probabilities, or values in the targets' units) and, for
    classification, the confusion matrix (row: label, column: prediction). `heads`: a
    multitask run's (`preprocess["heads"]`); its labels are (N, heads), NaN where missing."""
    objective = build_objective(cfg, outputs.shape[1], target_stats, heads=heads)
    stats = objective.new_stats()
    if heads is not None:  # each head's slice as the training loop scores it
        assert target_stats is not None
        mean = torch.tensor(target_stats["mean"], dtype=torch.float64)
        std = torch.tensor(target_stats["std"], dtype=torch.float64)
        parts, start = [], 0
        for j, head in enumerate(heads):
            part = outputs[:, start : start + int(head["width"])].double()
            start += int(head["width"])
            regression = head["kind"] == "regression"
            parts.append((part - mean[j]) / std[j] if regression else part.clamp_min(1e-300).log())
        predicted = torch.cat(parts, dim=1)
        target = (labels.double() - mean) / std
        stats.update(predicted, target, objective.eval_loss(predicted, target))
        return stats.compute(), None
    if isinstance(stats, ClassificationStats):
        log_probs = outputs.double().clamp_min(1e-300).log()
        stats.update(log_probs, labels, F.nll_loss(log_probs, labels))
        sums = stats.sums()
        c = stats.c
        confusion = sums[: c * c].long().reshape(c, c).tolist()
        return stats.metrics_from(sums), confusion
    mean = torch.tensor(target_stats["mean"], dtype=torch.float64)
    std = torch.tensor(target_stats["std"], dtype=torch.float64)
    predicted = (outputs.double() - mean) / std  # standardized, as the training loop scores
    target = (labels.double().reshape(predicted.shape) - mean) / std
    stats.update(predicted, target, objective.eval_loss(predicted, target))
    return stats.compute(), None
