"""Knowledge distillation as a loss term: the student learns from a frozen teacher's softened
outputs (Hinton et al. 2015). With temperature T and weight alpha, the training loss is
alpha x T^2 x KL(teacher_T || student_T) + (1 - alpha) x the task's own loss.

The teacher is an earlier run's best checkpoint, loaded safely (weights only), rebuilt from its
own config, frozen and in eval mode. It is kept off the student's modules, so the student's
checkpoints hold the student alone. It sees exactly the batch the student sees (augmented or
adversarial inputs included), in the same standardized space: it must come from a run on the
same data splits (its data fingerprint), with the same inputs and classes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dnnexp.config.errors import RunError


class Distillation:
    """A loss term: alpha x T^2 x KL of the student's softened output from the teacher's. Its
    `task_weight` (1 - alpha) scales the task's own loss."""

    def __init__(self, teacher: nn.Module, temperature: float, alpha: float) -> None:
        self.teacher, self.t, self.alpha = teacher, float(temperature), float(alpha)
        self.task_weight = 1.0 - self.alpha

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        output: torch.Tensor,
        teacher_output: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`teacher_output`: the teacher's outputs for this batch, computed once for the whole
        training split when the batches are not transformed; else the teacher runs here."""
        if teacher_output is None:
            with torch.no_grad():
                teacher_output = self.teacher(x)
        soft_targets = F.log_softmax(teacher_output / self.t, dim=1)
        soft = F.log_softmax(output / self.t, dim=1)
        kl = F.kl_div(soft, soft_targets, reduction="batchmean", log_target=True)
        return self.alpha * self.t * self.t * kl


def load_teacher(
    path: str, input_shape: list[int], num_outputs: int, fingerprint: str
) -> nn.Module:
    """The teacher of `distill.teacher=path` (a checkpoint or a run dir), frozen, in eval mode;
    RunError (one line) when it cannot teach this student."""
    from omegaconf import OmegaConf

    from dnnexp.models.weights import load_run_weights, rebuild_model

    key = "distill.teacher"
    ckpt = load_run_weights(key, path)
    hparams: dict[str, Any] = ckpt["hyper_parameters"]
    cfg = OmegaConf.create(hparams["config"])
    outputs = hparams.get("num_outputs", hparams.get("num_classes"))
    if list(hparams["input_shape"]) != list(input_shape) or outputs != num_outputs:
        raise RunError(
            f"{key}={path} takes inputs {list(hparams['input_shape'])} with {outputs} outputs;"
            f" this run has {list(input_shape)} with {num_outputs}: train the teacher on the"
            " same data"
        )
    if cfg.get("task", {}).get("name", "classification") != "classification":
        raise RunError(f"{key}={path} is a {cfg.task.name} model: distillation needs classes")
    if hparams.get("data_fingerprint") and hparams["data_fingerprint"] != fingerprint:
        raise RunError(
            f"{key}={path} was trained on other data splits than this run (data.* differ):"
            " its standardized inputs would not match; train it with the same data settings"
        )
    what = f"{key}={path}: its weights do not fit its model {cfg.model.name}"
    teacher = rebuild_model(ckpt, what)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher
