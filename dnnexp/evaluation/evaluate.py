"""Evaluate a checkpoint on the test split of its run's data (the `dnnexp eval` command)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dnnexp.config.errors import ConfigError, RunError, describe_omegaconf_error
from dnnexp.config.validate import validate
from dnnexp.data.datamodule import ArrayDataModule, task_heads
from dnnexp.data.spec import DataSpec
from dnnexp.models.weights import load_checkpoint, load_model_weights
from dnnexp.tasks.module import TrainingModule
from dnnexp.utils import console
from dnnexp.utils.quiet import silence_lightning_noise
from dnnexp.utils.run_files import write_json


def evaluate(
    ckpt_path: Path, out: Path | None, overrides: list[str], ckpt: dict | None = None
) -> dict[str, Any]:
    """`ckpt`: the checkpoint's contents when the caller has loaded them already."""
    silence_lightning_noise()
    ckpt = ckpt if ckpt is not None else load_checkpoint(ckpt_path)
    hparams = ckpt["hyper_parameters"]
    cfg = OmegaConf.create(hparams["config"])
    if "task" not in cfg:  # a checkpoint from before the task group: classification
        cfg.task = {"name": "classification"}
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(describe_omegaconf_error(err)) from None
    cfg = validate(cfg)

    data = run_data(cfg, hparams, ckpt_path)
    # the same splits as the run's (the fingerprint says so): their range and preprocessing
    spec = DataSpec.from_hparams(hparams).replace(
        fingerprint=data.fingerprint, input_range=data.input_range, preprocess=data.preprocess
    )
    task = TrainingModule(OmegaConf.to_container(cfg, resolve=True), spec)
    what = f"ckpt={ckpt_path} does not match the model {cfg.model.name} of its config"
    load_model_weights(task.model, ckpt["state_dict"], what)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=cfg.trainer.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(task, datamodule=data, verbose=False)
    result = {
        "checkpoint": str(Path(ckpt_path).resolve()),
        "split": "test",
        "overrides": overrides,
        "epoch": ckpt.get("epoch"),
        "metrics": task.test_metrics,
    }
    out = out or _default_out(Path(ckpt_path))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    console.print_metrics(
        f"{cfg.name}: {Path(ckpt_path).name} on the test split",
        task.test_metrics,
        {"written to": str(out)},
    )
    return result


def run_data(cfg: Any, hparams: dict[str, Any], ckpt_path: Path) -> ArrayDataModule:
    """The data module of the run a checkpoint came from (its config, possibly changed by
    overrides), set up; RunError if its inputs, outputs or split fingerprint differ from the
    checkpoint's: its test metrics would not be comparable."""
    data = ArrayDataModule(
        cfg.data,
        seed=cfg.seed,
        task=cfg.task.name,
        data_on_device=cfg.trainer.get("data_on_device", "auto"),
        heads=task_heads(cfg.task),
        # `dnnexp eval ... trainer.limit_test_batches=N` scores the first N test batches
        limit_eval_batches=(1.0, cfg.trainer.get("limit_test_batches", 1.0)),
    )
    data.setup()
    outputs = hparams.get("num_outputs", hparams.get("num_classes"))
    if list(data.input_shape) != list(hparams["input_shape"]) or data.num_outputs != outputs:
        what = "targets" if cfg.task.name == "regression" else "classes"
        raise RunError(
            f"ckpt={ckpt_path} expects inputs {hparams['input_shape']} with"
            f" {outputs} {what}, but data={cfg.data.name} gives"
            f" {list(data.input_shape)} with {data.num_outputs}"
        )
    expected = hparams.get("data_fingerprint")
    if expected and expected != data.fingerprint:
        raise RunError(
            f"ckpt={ckpt_path} was trained on other data splits than data={cfg.data.name} gives"
            " now (the data or split code changed): its test metrics would not be comparable"
        )
    return data


def _default_out(ckpt: Path) -> Path:
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run_dir / "eval" / f"{ckpt.stem}.json"
