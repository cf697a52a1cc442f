"""The safe checkpoint loader: `torch.load(weights_only=True)` always, one-line errors for bad
files. Free of Lightning, so `dnnexp predict` starts without importing it."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import torch

from dnnexp.config.errors import RunError
from dnnexp.utils.run_files import BEST_CKPT

REQUIRED = ("state_dict", "hyper_parameters")


def load_checkpoint(path: str | Path, name: str | None = None) -> dict[str, Any]:
    """The checkpoint's contents, or RunError naming what is wrong and what to do; `name` is
    how the errors call it (default `ckpt=PATH`; `init_from=RUN`, `resume=RUN: ...`).

    Never falls back to `weights_only=False`: unpickling a crafted file runs arbitrary code.
    """
    path = Path(path)
    name = name or f"ckpt={path}"
    if not path.exists():
        raise RunError(f"{name}: no such file; pass a run's checkpoints/best.ckpt")
    if path.is_dir():
        raise RunError(
            f"{name} is a directory; pass a .ckpt file, e.g. {path}/checkpoints/best.ckpt"
        )
    if path.stat().st_size == 0:
        raise RunError(f"{name} is empty (0 bytes): the run that wrote it did not finish")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except torch.serialization.pickle.UnpicklingError as err:
        if "global" in str(err).lower():  # a class or function that only pickle can rebuild
            raise RunError(
                f"{name} refused: it holds Python objects that only a full unpickle could"
                " load, which can run arbitrary code; dnnexp loads weights only"
            ) from None
        raise RunError(f"{name} is not a readable checkpoint (not a torch file)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise RunError(
            f"{name} is not a readable checkpoint (truncated or corrupt: {first})"
        ) from None
    if not isinstance(ckpt, dict) or any(key not in ckpt for key in REQUIRED):
        raise RunError(f"{name} is not a dnnexp checkpoint (no state_dict/hyper_parameters)")
    hparams = ckpt["hyper_parameters"]
    if not isinstance(hparams, dict) or "config" not in hparams:
        raise RunError(f"{name} was not written by dnnexp train (no config in its hyperparameters)")
    return ckpt


def checkpoint_path(key: str, value: str | Path) -> Path:
    """The .ckpt file `key=value` names: a .ckpt file, or a run dir's checkpoints/best.ckpt;
    RunError naming `key` when it is neither."""
    path = Path(value)
    if path.is_dir() and (path / BEST_CKPT).is_file():
        return path / BEST_CKPT
    if path.is_dir():
        raise RunError(f"{key}={value}: a directory without checkpoints/best.ckpt (not a run dir)")
    if not path.exists():
        raise RunError(f"{key}={value}: no such file or run dir")
    return path


def load_run_weights(key: str, value: str | Path) -> dict[str, Any]:
    """The checkpoint that `key=value` names (a .ckpt file, or a run dir: its best.ckpt),
    loaded safely; errors name `key` (distill.teacher, init_from, ckpt), one line each."""
    return load_checkpoint(checkpoint_path(key, value), f"{key}={value}")


def load_model_weights(model: torch.nn.Module, state_dict: dict[str, Any], what: str) -> None:
    """Load a checkpoint's `model.*` tensors into `model`; RunError in one line when they do not
    fit it (another architecture or size): "`what` does not match the model (the first
    mismatch)"."""
    weights = {k[len("model.") :]: v for k, v in state_dict.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise RunError(f"{what} ({lines[1] if len(lines) > 1 else lines[0]})") from None


def rebuild_model(ckpt: dict[str, Any], what: str, cfg: Any = None) -> torch.nn.Module:
    """The network of a loaded checkpoint, with its weights: built from `cfg` (default: the
    checkpoint's own config; a resume passes its overrides') at the checkpoint's input shape and
    outputs. RunError "`what` (the first mismatch)" when the weights do not fit it."""
    from omegaconf import OmegaConf

    from dnnexp.models import build_model

    hparams = ckpt["hyper_parameters"]
    cfg = cfg if cfg is not None else OmegaConf.create(hparams["config"])
    outputs = hparams.get("num_outputs", hparams.get("num_classes"))  # older checkpoints
    shape, vocab = tuple(hparams["input_shape"]), hparams.get("vocab_size")
    decoder = cfg.task.name == "seq2seq"
    model = build_model(cfg.model, shape, outputs, cfg.reg.dropout, vocab, decoder=decoder)
    load_model_weights(model, ckpt["state_dict"], what)
    return model
