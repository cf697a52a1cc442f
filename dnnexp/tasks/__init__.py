"""Tasks: one training loop (`module.TrainingModule`) and an objective per task."""

from __future__ import annotations

from typing import Any

from dnnexp.tasks.classification import Classification
from dnnexp.tasks.multitask import MultiTask
from dnnexp.tasks.objective import Objective
from dnnexp.tasks.regression import Regression
from dnnexp.tasks.seq2seq import Seq2Seq


def build_objective(
    cfg: Any,
    num_outputs: int,
    target_stats: dict | None,
    target_text: dict | None = None,
    heads: list[dict] | None = None,
) -> Objective:
    """The objective of `cfg.task.name` (`conf/task/<name>.yaml`); `target_text`: a seq2seq
    run's target vocabulary (`preprocess["target_text"]`), for BLEU where targets are words;
    `heads`: a multitask run's (`preprocess["heads"]`: each with its width and classes)."""
    task = cfg.task
    if task.name == "multitask":
        if heads is None or target_stats is None:
            raise ValueError("multitask needs the data's heads and their target statistics")
        return MultiTask(
            heads, target_stats["std"], cfg.reg.label_smoothing, task.huber_delta, task.score
        )
    if task.name == "regression":
        if target_stats is None:
            raise ValueError("regression needs the training split's target statistics")
        return Regression(target_stats["std"], task.loss, task.huber_delta)
    if task.name == "seq2seq":
        return Seq2Seq(
            num_outputs,
            cfg.reg.label_smoothing,
            task.teacher_forcing,
            cfg.data.target_max_length,
            cfg.eval.beam,
            cfg.eval.length_penalty,
            target_text,
        )
    return Classification(num_outputs, cfg.reg.label_smoothing)
