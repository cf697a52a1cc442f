"""A trained run as one self-contained model: raw inputs in, probabilities (or values in the
targets' own units) out. The training preprocessing is baked in from the statistics saved in
the checkpoint, never recomputed from new data. `predict`, `export` and ensembles all use it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from dnnexp.config.errors import RunError
from dnnexp.data.columns import ColumnEncoder, raw_columns
from dnnexp.utils.run_files import BEST_CKPT


class InferenceModel(nn.Module):
    """[a table's columns encoded] -> standardize (the training split's mean and std) -> the
    model -> softmax, or under regression the outputs scaled back to the targets' units; under
    multitask each head's slice so (`preprocess["heads"]`: softmax over a classification
    head's classes, a regression head's value in its units), side by side. Takes float or uint8
    inputs of the training inputs' shape (a table's raw columns: numbers with NaN for missing,
    categories as codes), any batch size."""

    def __init__(
        self,
        model: nn.Module,
        preprocess: dict[str, Any],
        input_shape: list[int],
        task: str = "classification",
        target_stats: dict[str, list[float]] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        spec = preprocess.get("columns")
        self.columns = ColumnEncoder(spec) if spec else None
        self.tokens = preprocess["dtype"] == "int64"  # token ids (data=text): not standardized
        shape = _broadcast_shape(preprocess, input_shape)
        self.register_buffer("mean", torch.tensor(preprocess["mean"]).view(shape))
        self.register_buffer("std", torch.tensor(preprocess["std"]).view(shape))
        self.regression = task == "regression"
        # multitask: (start, end, regression, head index) of each head's slice of the outputs
        self.slices: list[tuple[int, int, bool, int]] = []
        if self.regression or task == "multitask":
            assert target_stats is not None
            self.register_buffer("target_mean", torch.tensor(target_stats["mean"]))
            self.register_buffer("target_std", torch.tensor(target_stats["std"]))
        if task == "multitask":
            start = 0
            for j, head in enumerate(preprocess["heads"]):
                end = start + int(head["width"])
                self.slices.append((start, end, head["kind"] == "regression", j))
                start = end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            return self._outputs(self.model(x))
        if self.columns is not None:
            x = self.columns(x.to(self.mean.dtype))
        return self._outputs(self.model((x.to(self.mean.dtype) - self.mean) / self.std))

    def _outputs(self, out: torch.Tensor) -> torch.Tensor:
        if self.slices:
            parts = []
            for start, end, regression, j in self.slices:
                part = out[:, start:end]
                parts.append(
                    part * self.target_std[j] + self.target_mean[j]
                    if regression
                    else torch.softmax(part, dim=1)
                )
            return torch.cat(parts, dim=1)
        if self.regression:
            return out * self.target_std + self.target_mean
        return torch.softmax(out, dim=1)


def _broadcast_shape(preprocess: dict[str, Any], input_shape: list[int]) -> tuple[int, ...]:
    """The view of the mean and std over (batch, *input_shape): per channel (uint8 images),
    per feature (tables), or one for everything."""
    count = len(preprocess["mean"])
    if count == 1:
        return (1,) * (len(input_shape) + 1)
    if preprocess["dtype"] == "uint8":  # (N, C, H, W): per channel
        return (1, count, 1, 1)
    return (1, count)  # (N, F): per feature


@dataclass
class TrainedRun:
    """A loaded checkpoint: the model in eval mode with its preprocessing, and what it knows."""

    model: InferenceModel
    hparams: dict[str, Any]
    cfg: Any  # the run's config (DictConfig)
    path: Path  # the .ckpt file (an ensemble's: its first member's)
    epoch: int | None
    members: list[TrainedRun] | None = None  # an ensemble's runs
    root: Path | None = None  # an ensemble's: the dir its members share
    ensemble: str | None = None  # mean | vote

    @property
    def task(self) -> str:
        return self.cfg.task.name

    @property
    def heads(self) -> list[dict[str, Any]]:
        """task=multitask: each head (name, column, kind, classes, width); [] otherwise."""
        return list((self.hparams.get("preprocess") or {}).get("heads") or [])

    @property
    def classes(self) -> list[str]:
        """Class names (indices as names when the data had none); [] under regression and
        multitask (each head has its own: `heads`)."""
        if self.task in ("regression", "multitask"):
            return []
        names = self.hparams.get("classes")
        return list(names) if names else [str(i) for i in range(self.hparams["num_outputs"])]

    @property
    def input_shape(self) -> list[int]:
        """What a new input holds per sample: the training inputs' shape, or a table's raw
        columns (the model's features are encoded from them)."""
        spec = (self.hparams.get("preprocess") or {}).get("columns")
        return [len(raw_columns(spec))] if spec else list(self.hparams["input_shape"])

    @property
    def run_dir(self) -> Path:
        if self.root is not None:
            return self.root
        parent = self.path.parent
        return parent.parent if parent.name == "checkpoints" else parent


def load_trained(value: str | Path, key: str = "ckpt") -> TrainedRun:
    """The run `key=value` names (a .ckpt file or a run dir), loaded safely (weights only) and
    rebuilt from its own config; RunError in one line when it is not a usable dnnexp run."""
    from dnnexp.models.weights import checkpoint_path, load_run_weights, rebuild_model

    path = checkpoint_path(key, value)
    ckpt = load_run_weights(key, value)
    hparams = ckpt["hyper_parameters"]
    if not hparams.get("preprocess"):
        raise RunError(
            f"{key}={value} was trained by an older dnnexp that did not save its input"
            " preprocessing; train it again to predict or export with it"
        )
    cfg = OmegaConf.create(hparams["config"])
    if "task" not in cfg:
        cfg.task = {"name": "classification"}
    what = f"{key}={value} does not match the model {cfg.model.name} of its config"
    model = rebuild_model(ckpt, what, cfg)
    wrapped = InferenceModel(
        model,
        hparams["preprocess"],
        hparams["input_shape"],
        cfg.task.name,
        hparams.get("target_stats"),
    ).eval()
    return TrainedRun(wrapped, hparams, cfg, path, ckpt.get("epoch"))


def predict_batches(
    model: nn.Module, x: torch.Tensor, batch_size: int = 1024, progress: Any = None
) -> torch.Tensor:
    """The model's outputs for every row of `x`, `batch_size` rows at a time; `progress`
    (a callable taking the rows done) is called after each batch."""
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            outputs.append(model(x[start : start + batch_size]))
            if progress is not None:
                progress(min(start + batch_size, len(x)))
    if not outputs:
        return torch.empty(0)
    return torch.cat(outputs)


def raw_test_split(run: TrainedRun) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's test split as raw inputs (the standardization undone) and its labels (class
    indices, or targets in their own units): what an exported model is checked on."""
    from dnnexp.evaluation.evaluate import run_data

    data = run_data(run.cfg, run.hparams, run.path)
    x, y = data.splits["test"]
    model = run.members[0].model if run.members else run.model  # its preprocessing
    if data.raw_test is not None:  # a table: its raw columns, before they were encoded
        x = data.raw_test
    elif x.dtype not in (torch.uint8, torch.int64):  # (images as stored; token ids)
        x = x * model.std + model.mean
    if run.task in ("regression", "multitask"):  # multitask: NaN stays where a label is missing
        y = y * model.target_std + model.target_mean
    return x.cpu(), y.cpu()


class EnsembleModel(nn.Module):
    """Several trained runs as one model. mean: the mean of their probabilities (or values);
    vote: each member votes for its top class, the output is the share of votes per class
    (ties go to the class with the higher mean probability, added at 1e-6)."""

    def __init__(self, members: list[InferenceModel], mode: str = "mean") -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.vote = mode == "vote"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([member(x) for member in self.members])
        mean = outputs.mean(0)
        if not self.vote:
            return mean
        votes = torch.nn.functional.one_hot(outputs.argmax(2), outputs.shape[2])
        return votes.to(mean.dtype).mean(0) + 1e-6 * mean


def load_source(value: str, ensemble: str | None = None, key: str = "ckpt") -> TrainedRun:
    """One run (a .ckpt or a run dir), or an ensemble: a list `[a,b,...]` of those, or a sweep
    dir (every completed run in it). Members must share inputs, classes and the test split (not
    the training split: the folds of a k-fold sweep make a cross-validation ensemble)."""
    paths = _members(value, key)
    if len(paths) == 1 and ensemble is None:
        return load_trained(paths[0], key)
    runs = [load_trained(path, key) for path in paths]
    first = runs[0]
    if first.task == "seq2seq":
        raise RunError(
            f"{key}={value}: ensembles average class probabilities or values; task=seq2seq runs"
            " decode sequences one run at a time"
        )
    for run in runs[1:]:
        for what, get in (
            ("task", lambda r: r.task),
            ("input shape", lambda r: r.input_shape),
            ("classes", lambda r: r.classes or r.hparams["num_outputs"]),
            ("heads", lambda r: r.heads),
            ("test split (fingerprint)", _test_split),
        ):
            if get(run) != get(first):
                raise RunError(
                    f"{key}={value}: the ensemble's members differ in {what}: {first.path} has"
                    f" {get(first)}, {run.path} has {get(run)}"
                )
    mode = ensemble or "mean"
    if mode == "vote" and first.task in ("regression", "multitask"):
        raise RunError(f"ensemble=vote is for classification; {first.task} members use mean")
    model = EnsembleModel([run.model for run in runs], mode).eval()
    root = Path(os.path.commonpath([str(run.run_dir.resolve()) for run in runs]))
    return TrainedRun(model, first.hparams, first.cfg, first.path, None, runs, root, mode)


def _test_split(run: TrainedRun) -> str | None:
    """What an ensemble's members must share besides inputs and classes: the test split (the
    folds of k-fold do; their training splits differ). Checkpoints from before the test
    split's own fingerprint: all their splits'."""
    return run.hparams.get("test_fingerprint") or run.hparams.get("data_fingerprint")


def _members(value: str, key: str) -> list[str]:
    """The checkpoints `key=value` names: one, a [list], or a sweep dir's completed runs."""
    text = value.strip()
    if text.startswith("["):
        items = [item.strip().strip("'\"") for item in text.strip("[]").split(",") if item.strip()]
        if not items:
            raise RunError(f"{key}=[]: no checkpoints given")
        return items
    path = Path(text)
    if path.is_dir() and not (path / BEST_CKPT).is_file():
        runs = [
            summary.parent
            for summary in sorted(path.glob("**/summary.json"), key=_natural)
            if (summary.parent / BEST_CKPT).is_file()
            and json.loads(summary.read_text()).get("status") == "completed"
        ]
        if not runs:
            raise RunError(
                f"{key}={value}: no completed run with checkpoints/best.ckpt under it"
                " (not a run dir or a sweep dir)"
            )
        return [str(run) for run in runs]
    return [text]


def _natural(path: Path) -> list[Any]:
    """Sort key: sweep job dirs 2 before 10."""
    return [int(part) if part.isdigit() else part for part in path.parts]
