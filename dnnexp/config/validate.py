"""Check a composed config against the schema before anything heavy is imported.

`validate(cfg)` returns a typed copy of the config or raises `ConfigError` with a one-line
message that names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import typing
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dnnexp.config import heads as head_forms
from dnnexp.config.errors import ConfigError, describe_omegaconf_error, unknown_key_message
from dnnexp.config.hardware import requested_devices
from dnnexp.config.metrics import TASK_METRICS, task_metrics
from dnnexp.config.schema import (
    FUSED_OPTIMIZERS,
    GROUP_SCHEMAS,
    MODEL_SCHEMAS,
    HeadConfig,
    TrainSchema,
    models_reading,
    models_reading_tokens,
    models_with_decoder,
)


def validate(cfg: DictConfig) -> DictConfig:
    """Type, range and cross-field checks; returns the config with each group typed."""
    cfg = _typed(TrainSchema, cfg, "")  # top level, reg, trainer, logger
    for group, schemas in GROUP_SCHEMAS.items():
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{group}: missing; pick one of {sorted(schemas)} with {group}=NAME")
        name = node.get("name")
        if name not in schemas:
            raise ConfigError(f"{group}.name={name!r} is unknown; allowed: {', '.join(schemas)}")
        typed = _typed(schemas[name], node, group)
        OmegaConf.set_readonly(typed, False)
        with _open(cfg):
            cfg[group] = typed
    _check_ranges(cfg, TrainSchema, "")
    for group, schemas in GROUP_SCHEMAS.items():
        _check_ranges(cfg[group], schemas[cfg[group].name], group + ".")
    _check_combinations(cfg)
    return cfg


def _typed(schema: type, node: DictConfig, prefix: str) -> DictConfig:
    """`node` merged into its schema: unknown keys and wrong types fail here."""
    _refuse_unknown_keys(node, schema, prefix)
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as err:
        key = str(getattr(err, "full_key", "") or "")
        parent = _schema_at(schema, key.split(".")[:-1])
        raise ConfigError(describe_omegaconf_error(err, prefix=prefix, schema=parent)) from None


def _refuse_unknown_keys(node: DictConfig, schema: type, prefix: str) -> None:
    """Every key must be a field of the schema (Hydra lets `+key=...` add anything)."""
    fields = {f.name for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key in node:
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(unknown_key_message(full, sorted(fields)))
        inner = _dataclass_of(hints[key])
        if inner is not None and isinstance(node[key], DictConfig):
            _refuse_unknown_keys(node[key], inner, full)


def _dataclass_of(hint: Any) -> type | None:
    """The dataclass a field holds: itself, or X of Optional[X]."""
    if dataclasses.is_dataclass(hint):
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 and dataclasses.is_dataclass(args[0]) else None


def _schema_at(schema: type | None, path: list[str]) -> type | None:
    """The dataclass that types the node at `path` below `schema` (None where it is untyped)."""
    for part in path:
        if schema is None or not dataclasses.is_dataclass(schema):
            return None
        schema = _dataclass_of(typing.get_type_hints(schema).get(part))
    return schema


class _open:
    """Temporarily lift Hydra's struct flag so a group node can be replaced by its typed twin."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg

    def __enter__(self) -> None:
        self.flag = OmegaConf.is_struct(self.cfg)
        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc: object) -> None:
        OmegaConf.set_struct(self.cfg, self.flag)


def _check_ranges(node: DictConfig, schema: type, prefix: str) -> None:
    """Apply the ge/gt/le/lt/choices limits declared in the schema's field metadata."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if f.name not in node:
            continue
        inner = _dataclass_of(hints[f.name])
        if inner is not None:
            if node[f.name] is not None:  # an optional section (search) that is not set
                _check_ranges(node[f.name], inner, prefix + f.name + ".")
        else:
            _check_value(prefix + f.name, node[f.name], f.metadata)


def check_knob(schema: type, name: str, key: str, value: Any, **stricter: Any) -> None:
    """`value` against the limits the schema declares for its field `name` (plus `stricter`
    ones), ConfigError naming `key`: a command's own argument that sets a config knob
    (`dnnexp prune amount=`) is held to the knob's limits, not to a copy of them."""
    field = next(f for f in dataclasses.fields(schema) if f.name == name)
    _check_value(key, value, {**field.metadata, **stricter})


def _check_value(key: str, value: Any, limits: Any) -> None:
    choices, also = limits.get("choices"), limits.get("also") or (lambda item: False)
    items = list(value) if isinstance(value, (list, ListConfig)) else [value]
    if choices is not None and not all(item in choices or also(item) for item in items):
        allowed = ", ".join("null" if c is None else str(c) for c in choices)
        if isinstance(value, (list, ListConfig)):
            raise ConfigError(f"{key}={items} is not allowed; each must be one of: {allowed}")
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of: {allowed}")
    for item in items:
        if item is None or isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        for _name, bound, ok, words in (
            ("gt", limits.get("gt"), lambda v, b: v > b, "greater than"),
            ("ge", limits.get("ge"), lambda v, b: v >= b, "at least"),
            ("lt", limits.get("lt"), lambda v, b: v < b, "less than"),
            ("le", limits.get("le"), lambda v, b: v <= b, "at most"),
        ):
            if bound is not None and not ok(item, bound):
                shown = value if len(items) == 1 else list(items)
                raise ConfigError(f"{key}={shown} is out of range: must be {words} {bound}")
    if isinstance(value, (list, ListConfig)) and key.endswith(
        ("hidden", "channels", "block_layers")
    ):
        if len(value) == 0:
            raise ConfigError(f"{key}=[] is empty: give at least one width, e.g. {key}=[64]")


def _check_combinations(cfg: DictConfig) -> None:
    """Cross-field rules no single field can express."""
    data, model, trainer = cfg.data, cfg.model, cfg.trainer
    if data.val_fraction + data.test_fraction >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {data.val_fraction + data.test_fraction:g}"
            " leaves nothing to train on: keep their sum below 1"
        )
    if "shape" in data and len(data.shape) not in (1, 3):
        raise ConfigError(
            f"data.shape={list(data.shape)} must be [channels, height, width] or [features]"
        )
    _check_folds(data)
    _check_task(cfg)
    _check_transfer(cfg)
    _check_pruning(cfg)
    _check_averaging(cfg)
    _check_lr_find(cfg)
    _check_privacy(cfg)
    _check_inputs(cfg)
    _check_data_files(data)
    limits = ("limit_train_batches", "limit_val_batches", "limit_test_batches")
    if trainer.overfit_batches and cfg.task.name == "seq2seq":
        raise ConfigError(
            "trainer.overfit_batches is not built for task=seq2seq (its validation decodes"
            " references, its training reads pairs): use trainer.limit_train_batches"
        )
    for key in (*limits, "val_check_interval", "overfit_batches"):
        value = trainer[key]
        if value > 1 and value != int(value):
            raise ConfigError(
                f"trainer.{key}={value} must be a share (<= 1.0) or a whole number of batches"
            )
    _check_lightning_knobs(cfg)
    if model.name == "resnext" and model.width_per_group is None:
        for width in model.channels:
            if width % model.cardinality:
                raise ConfigError(
                    f"model.cardinality={model.cardinality} does not divide the stage width {width}"
                    f" of model.channels={list(model.channels)}: pick a divisor or set"
                    " model.width_per_group"
                )
    if model.norm == "group":
        for key, width in MODEL_SCHEMAS[model.name].norm_widths(model):
            if width % model.norm_groups:
                raise ConfigError(
                    f"model.norm_groups={model.norm_groups} does not divide {key}={width}:"
                    " pick a divisor of every width, or another model.norm"
                )
    if model.name == "rnn" and model.activation not in ("tanh", "relu"):
        raise ConfigError(
            f"model.activation={model.activation} is not possible for rnn: use tanh or relu"
        )
    if model.name in ("lstm", "gru") and model.activation != "tanh":
        raise ConfigError(
            f"model.activation={model.activation} does not apply to {model.name} (its gates fix"
            " tanh/sigmoid): leave it at tanh, or use model=rnn"
        )
    _check_loggers(cfg.logger)
    if trainer.channels_last and model.name not in models_reading("image"):
        raise ConfigError(
            "trainer.channels_last=true applies to image models"
            f" ({', '.join(models_reading('image'))}),"
            f" not model={model.name}: leave it false"
        )
    optimizer = cfg.optimizer
    if optimizer.implementation == "fused" and optimizer.name not in FUSED_OPTIMIZERS:
        raise ConfigError(
            f"optimizer.implementation=fused: torch has no fused {optimizer.name}; fused kernels"
            f" exist for {', '.join(FUSED_OPTIMIZERS)}: use auto or foreach"
        )
    if trainer.strategy.startswith("ddp") and trainer.compile:
        raise ConfigError("trainer.compile=true with a ddp strategy is not supported: pick one")


def _check_loggers(logger: DictConfig) -> None:
    """A tracker whose package is not installed: one line, before the run dir exists."""
    needs = {
        "tensorboard": ("tensorboard", "tensorboardX"),
        "mlflow": ("mlflow",),
        "wandb": ("wandb",),
    }
    for name, modules in needs.items():
        if logger[name].enabled and not any(importlib.util.find_spec(m) for m in modules):
            raise ConfigError(
                f"logger={name} needs the {modules[0]} package: pip install {modules[0]}"
                f" (or pip install 'dnnexp[{name}]'), or leave it out of logger=[...]"
            )


MAX_TIME = re.compile(r"^\d+:\d{1,2}:\d{1,2}:\d{1,2}$")  # Lightning's DD:HH:MM:SS


def _check_lightning_knobs(cfg: DictConfig) -> None:
    """Lightning's Trainer knobs whose values one field's limits cannot express."""
    trainer = cfg.trainer
    fast = trainer.fast_dev_run
    if not isinstance(fast, bool) and (not isinstance(fast, int) or fast < 0):
        raise ConfigError(
            f"trainer.fast_dev_run={fast!r} must be true, false or a number of batches (>= 0)"
        )
    if trainer.max_steps == 0:
        raise ConfigError("trainer.max_steps=0 trains nothing: give a step count, or -1 for none")
    if trainer.max_time is not None and not MAX_TIME.match(str(trainer.max_time)):
        raise ConfigError(
            f"trainer.max_time={trainer.max_time!r} must be DD:HH:MM:SS, e.g."
            " trainer.max_time=00:01:30:00 for 90 minutes"
        )
    if fast and cfg.get("resume"):
        raise ConfigError(
            f"trainer.fast_dev_run with resume={cfg.resume} would overwrite that run's"
            " summary.json: run the fast dev run on its own"
        )


def _check_folds(data: DictConfig) -> None:
    """data.fold names one of data.folds (a class too small for the folds is refused when the
    data are split: its size is known only then)."""
    folds, fold = data.get("folds"), data.get("fold", 0)
    if folds is None and fold:
        raise ConfigError(
            f"data.fold={fold} needs data.folds: k-fold cross-validation is off; set"
            f" data.folds=K (K > {fold}), or leave data.fold at 0"
        )
    if folds is not None and fold >= folds:
        raise ConfigError(
            f"data.fold={fold} is out of range for data.folds={folds}: must be 0 .. {folds - 1}"
        )


def _check_task(cfg: DictConfig) -> None:
    """The task fits the data, and no knob of another task is set."""
    task, data = cfg.task.name, cfg.data
    fits = GROUP_SCHEMAS["data"][data.name].tasks
    if task not in fits:
        others = [n for n, s in GROUP_SCHEMAS["data"].items() if task in s.tasks]
        raise ConfigError(
            f"task={task} does not fit data={data.name}, whose targets are for"
            f" {' or '.join(fits)}: use task={fits[0]}, or data={'/'.join(others)}"
        )
    if task == "multitask":
        _check_heads(cfg)
        if data.get("stratify"):
            raise ConfigError(
                "data.stratify=true: task=multitask has a label per head, and splits are random"
                " (fixed by data.split_seed); leave it null"
            )
        if cfg.eval.attacks:
            raise ConfigError(
                f"eval.attacks={list(cfg.eval.attacks)} scores one classifier's accuracy under"
                " attack: leave it [] under task=multitask"
            )
        if cfg.distill.teacher is not None:
            raise ConfigError(
                "distill.teacher distils one classifier's outputs: leave it null under"
                " task=multitask"
            )
    if task == "regression":
        if cfg.reg.label_smoothing > 0:
            raise ConfigError(
                f"reg.label_smoothing={cfg.reg.label_smoothing} applies to classification only:"
                " leave it at 0 under task=regression"
            )
        if data.get("stratify"):
            raise ConfigError(
                "data.stratify=true needs class labels: regression splits are random"
                " (fixed by data.split_seed); leave it null"
            )
        if cfg.eval.attacks:
            raise ConfigError(
                f"eval.attacks={list(cfg.eval.attacks)} scores accuracy under attack, a"
                " classification metric: leave it [] under task=regression"
            )
    family = MODEL_SCHEMAS[cfg.model.name]
    if task == "seq2seq" and not family.decoder:
        raise ConfigError(
            f"task=seq2seq needs a model with a decoder; model={cfg.model.name} has none: use"
            f" model={' or model='.join(models_with_decoder())}"
        )
    if task != "seq2seq" and not family.classifier:
        raise ConfigError(
            f"model={cfg.model.name} is an encoder-decoder (it emits token sequences): use it"
            f" with task=seq2seq, not task={task}"
        )
    if task == "seq2seq":
        if cfg.model.name == "transformer" and cfg.task.teacher_forcing < 1:
            raise ConfigError(
                f"task.teacher_forcing={cfg.task.teacher_forcing}: scheduled sampling steps an"
                " RNN decoder token by token; model=transformer trains with 1.0 only"
            )
        if cfg.distill.teacher is not None:
            raise ConfigError("distill.teacher distils class outputs: leave it null for seq2seq")
        if data.get("classes"):
            raise ConfigError("data.classes picks classes: leave it null under task=seq2seq")
    metrics = [f"val/{m}" for m in task_metrics(cfg.task)]
    monitors = [("reg.early_stopping.monitor", cfg.reg.early_stopping.monitor)]
    if "monitor" in cfg.scheduler:
        monitors.append(("scheduler.monitor", cfg.scheduler.monitor))
    if cfg.get("search") is not None and cfg.search.metric is not None:
        monitors.append(("search.metric", cfg.search.metric))  # searches read validation only
    for key, monitor in monitors:
        if monitor not in metrics:
            raise ConfigError(
                f"{key}={monitor} is not a metric of task={task}; choose one of:"
                f" {', '.join(metrics)}"
            )


HEAD_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _check_heads(cfg: DictConfig) -> None:
    """task.heads (each typed and range-checked as a HeadConfig, the compact form expanded),
    their names unique, their columns not the inputs, and task.score one of their metrics;
    the heads are then stored completed (name, kind, loss, weight), so every later reader and
    the checkpoint see one form."""
    task, data = cfg.task, cfg.data
    raw = task.heads
    if not isinstance(raw, (list, ListConfig)) or len(raw) == 0:
        raise ConfigError(
            "task.heads is empty: task=multitask needs a list of heads, e.g."
            " 'task.heads=[syllables,stress]' or"
            " 'task.heads=[{column:syllables},{column:length,kind:regression,weight:0.5}]'"
        )
    completed = []
    for i, item in enumerate(raw):
        key = f"task.heads[{i}]"
        try:
            given = head_forms.expand(
                OmegaConf.to_container(item, resolve=True)
                if isinstance(item, DictConfig)
                else item,
                i,
            )
        except head_forms.HeadError as err:
            raise ConfigError(str(err)) from None
        node = _typed(HeadConfig, OmegaConf.create(given), key)
        _check_ranges(node, HeadConfig, key + ".")
        if not node.column:
            raise ConfigError(f"{key}.column is not set: name the head's target column")
        head = head_forms.complete(OmegaConf.to_container(node))
        allowed = head_forms.HEAD_LOSSES[head["kind"]]
        if head["loss"] not in allowed:
            raise ConfigError(
                f"{key}.loss={head['loss']} is not a loss of a {head['kind']} head; choose one"
                f" of: {', '.join(allowed)}"
            )
        if not HEAD_NAME.match(head["name"]):
            raise ConfigError(
                f"{key}.name={head['name']!r}: a head's name (its metrics' val/<name>/...) takes"
                f" letters, digits, _ . - only; set {key}.name"
            )
        completed.append(head)
    names = [h["name"] for h in completed]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise ConfigError(
            f"task.heads: two heads named {twice!r} (a head's name defaults to its column):"
            " give one of them another name (name: ...)"
        )
    if not any(h["weight"] > 0 for h in completed):
        raise ConfigError("task.heads: every weight is 0, so nothing trains: give one a weight > 0")
    texts = data.get("text")
    texts = [texts] if isinstance(texts, str) else list(texts or [])
    features = list(data.get("features") or [])
    for i, head in enumerate(completed):
        if head["column"] in texts + features:
            which = "data.text" if head["column"] in texts else "data.features"
            raise ConfigError(
                f"task.heads[{i}].column={head['column']} is an input ({which}): a head's column"
                " is a target, never a feature"
            )
    with _open(task):
        task.heads = completed
    if task.score is not None:
        score = str(task.score).removeprefix("val/")
        head, _, metric = score.partition("/")
        kinds = {h["name"]: h["kind"] for h in completed}
        if score.startswith("test/"):
            raise ConfigError(
                f"task.score={task.score}: the score is a validation metric (the test split is"
                f" only reported); give HEAD/METRIC, e.g. task.score={names[0]}/acc"
            )
        if head not in kinds:
            raise ConfigError(
                f"task.score={task.score} names no head; give HEAD/METRIC with HEAD one of:"
                f" {', '.join(names)}"
            )
        metrics = TASK_METRICS[kinds[head]]
        if metric not in metrics:
            raise ConfigError(
                f"task.score={task.score}: {metric or '(none)'} is not a metric of the"
                f" {kinds[head]} head {head!r}; choose one of:"
                f" {', '.join(f'{head}/{m}' for m in metrics)}"
            )
        task.score = score


def prune_end_epoch(cfg: DictConfig) -> int:
    """The first epoch that trains at the full `prune.amount` (0 for schedule=once)."""
    prune = cfg.prune
    if prune.schedule != "gradual":
        return 0
    return int(prune.end_epoch) if prune.end_epoch is not None else cfg.trainer.max_epochs - 1


def _check_pruning(cfg: DictConfig) -> None:
    """prune.* knobs that cannot work together."""
    prune = cfg.prune
    if prune.end_epoch is not None and prune.schedule != "gradual":
        raise ConfigError(
            f"prune.end_epoch={prune.end_epoch} ends the ramp of prune.schedule=gradual: set"
            " it, or leave prune.end_epoch null"
        )
    if prune.amount > 0 and prune.schedule == "gradual":
        epochs = cfg.trainer.max_epochs
        if epochs < 2:
            raise ConfigError(
                "prune.schedule=gradual raises the sparsity epoch by epoch: it needs"
                " trainer.max_epochs >= 2 (or prune.schedule=once)"
            )
        if prune_end_epoch(cfg) > epochs - 1:
            raise ConfigError(
                f"prune.end_epoch={prune.end_epoch} must leave an epoch at the full amount:"
                f" at most trainer.max_epochs - 1 = {epochs - 1}"
            )


def swa_start_epoch(start: float, max_epochs: int) -> int:
    """`reg.swa.start`: a share of `max_epochs` (< 1) or an epoch number (>= 1)."""
    return int(max_epochs * start) if start < 1 else int(start)


def _check_lr_find(cfg: DictConfig) -> None:
    knobs = cfg.lr_find
    if knobs.min_lr >= knobs.max_lr:
        raise ConfigError(
            f"lr_find.min_lr={knobs.min_lr:g} must be below lr_find.max_lr={knobs.max_lr:g}"
        )


# families whose layers Opacus cannot give per-sample gradients for as dnnexp builds them
# (nn.RNN/LSTM/GRU, nn.MultiheadAttention: Opacus's DP replacements are not wired in)
NOT_PRIVATE_FAMILIES = ("rnn", "lstm", "gru", "transformer", "seq2seq_rnn")


def private(cfg: DictConfig) -> bool:
    """Whether the run trains with differential privacy (`privacy.epsilon=inf` does not)."""
    privacy = cfg.get("privacy")
    return privacy is not None and privacy.name == "dp" and privacy.epsilon != float("inf")


def _check_privacy(cfg: DictConfig) -> None:
    """privacy=dp: what DP-SGD needs (one noise setting, per-sample gradients that are each
    sample's own, one clipping), refused in one line before anything trains."""
    privacy = cfg.privacy
    if privacy.name == "none":
        changed = [k for k in ("epsilon", "noise_multiplier", "delta") if privacy[k] is not None]
        if changed:
            raise ConfigError(
                f"privacy.{changed[0]}={privacy[changed[0]]} applies to differentially private"
                " training: add privacy=dp"
            )
        return
    if (privacy.epsilon is None) == (privacy.noise_multiplier is None):
        raise ConfigError(
            "privacy=dp needs exactly one of privacy.epsilon (a target) and"
            " privacy.noise_multiplier: set one, the other null"
        )
    if not private(cfg):
        return
    if importlib.util.find_spec("opacus") is None:
        raise ConfigError(
            "privacy=dp needs the opacus package: pip install 'dnnexp[privacy]' (or opacus)"
        )
    model, trainer, reg = cfg.model, cfg.trainer, cfg.reg
    why = None
    if model.name in NOT_PRIVATE_FAMILIES:
        why = (
            f"model={model.name} has layers (recurrent or attention) whose per-sample gradients"
            " Opacus cannot compute as dnnexp builds them: use model=mlp, cnn, textcnn, resnet,"
            " resnext or densenet"
        )
    elif model.norm == "batch":
        why = (
            "model.norm=batch mixes the samples of a batch, so no sample's gradient is its own:"
            " add model.norm=group (or layer, none)"
        )
    elif cfg.task.name == "seq2seq":
        why = "task=seq2seq is not supported: train a classification or regression task"
    elif reg.grad_clip > 0:
        why = (
            f"reg.grad_clip={reg.grad_clip} clips the batch's gradient; DP-SGD clips each"
            " sample's: set privacy.max_grad_norm instead and leave reg.grad_clip at 0"
        )
    elif trainer.accumulate_grad_batches > 1:
        why = (
            f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches}: the accountant"
            " counts one noisy step per sampled batch; raise data.batch_size instead"
        )
    elif reg.l1 > 0:
        why = (
            f"reg.l1={reg.l1} adds a gradient that is no sample's, so DP-SGD would drop it:"
            " use reg.weight_decay"
        )
    elif reg.adversarial.enabled:
        why = "reg=adversarial computes extra gradients through the model: leave it off"
    elif cfg.distill.teacher is not None:
        why = (
            "distill.teacher: a teacher trained on the same data without privacy leaks it"
            " through its outputs: leave distill.teacher null"
        )
    elif cfg.freeze != "none":
        why = f"freeze={cfg.freeze} is not supported: leave freeze=none"
    elif trainer.compile:
        why = "trainer.compile=true: Opacus's per-sample hooks do not compile; leave it false"
    elif str(trainer.precision) not in ("32-true", "32"):
        why = f"trainer.precision={trainer.precision}: train in 32-true"
    elif trainer.strategy != "auto" or trainer.num_nodes > 1 or _several(trainer.devices):
        why = (
            "DDP is not supported (Opacus's DP-DDP is not wired into dnnexp's loop): train on"
            " one device (trainer.devices=1, trainer.strategy=auto)"
        )
    elif trainer.overfit_batches:
        why = "trainer.overfit_batches trains fixed batches, not Poisson samples: leave it 0"
    elif cfg.data.get("bucket"):
        why = "data.bucket=true groups texts by length, not Poisson samples: leave it false"
    elif cfg.lr_find.mode != "off":
        why = (
            "a learning-rate range test on the private data spends privacy that no ledger"
            " records: find the rate on public data, or leave lr_find.mode=off"
        )
    if why is not None:
        raise ConfigError(f"privacy=dp: {why}")


def _several(devices: Any) -> bool:
    """More than one device asked for, or all there are (-1); `auto` counts as one: the check
    at the start of training holds where it finds several."""
    return (requested_devices(devices) or 0) > 1 or str(devices).strip() == "-1"


def _check_averaging(cfg: DictConfig) -> None:
    """reg.ema and reg.swa: one average at a time, one that starts before the run ends."""
    ema, swa = cfg.reg.ema, cfg.reg.swa
    if ema.decay > 0 and swa.start is not None:
        raise ConfigError(
            "reg.ema and reg.swa both average the weights: pick one (reg.ema.decay=0 or"
            " reg.swa.start=null)"
        )
    if swa.start is None:
        if swa.lr is not None:
            raise ConfigError(
                f"reg.swa.lr={swa.lr} applies once SWA starts: add reg=swa (or reg.swa.start)"
            )
    else:
        epochs = cfg.trainer.max_epochs
        if swa_start_epoch(swa.start, epochs) >= epochs:
            raise ConfigError(
                f"reg.swa.start={swa.start} is epoch {swa_start_epoch(swa.start, epochs)}, not"
                f" before trainer.max_epochs={epochs}: pick a share below 1 or an epoch below"
                f" {epochs}"
            )
    if (ema.decay > 0 or swa.start is not None) and cfg.prune.amount > 0:
        raise ConfigError(
            "reg.ema / reg.swa with prune.amount > 0: an average of pruned weights is not"
            " sparse; prune the averaged run afterwards (dnnexp prune RUN_DIR amount=A)"
        )


def _check_transfer(cfg: DictConfig) -> None:
    """The transfer-learning knobs act on the layers `init_from` loads; `data.classes` picks
    classes."""
    if cfg.init_from is None:
        if cfg.freeze != "none":
            raise ConfigError(
                f"freeze={cfg.freeze} freezes the layers init_from loads: set init_from=RUN_DIR"
                " (or a .ckpt), or leave freeze=none"
            )
        if cfg.optimizer.backbone_lr_ratio != 1.0:
            raise ConfigError(
                f"optimizer.backbone_lr_ratio={cfg.optimizer.backbone_lr_ratio} scales the lr of"
                " the layers init_from loads: set init_from=RUN_DIR, or leave it at 1.0"
            )
    if cfg.freeze_epochs is not None and cfg.freeze == "none":
        raise ConfigError(
            f"freeze_epochs={cfg.freeze_epochs} says when freeze=backbone ends: set"
            " freeze=backbone, or leave freeze_epochs null"
        )
    wanted = cfg.data.get("classes")
    if wanted is not None:
        if cfg.task.name != "classification":
            raise ConfigError(
                f"data.classes picks classes: leave it null under task={cfg.task.name}"
            )
        if len(wanted) < 2 or len(set(wanted)) != len(wanted):
            raise ConfigError(
                f"data.classes={list(wanted)}: give at least 2 different classes, e.g. [0,1,2]"
            )


def _check_inputs(cfg: DictConfig) -> None:
    """Image and recurrent models need (C, H, W) inputs; tabular features fit the MLP only;
    text (token ids) fits the families with an embedding, and no technique made for pixels."""
    data = cfg.data
    kind = GROUP_SCHEMAS["data"][data.name].input_kind(data)
    check_model_input(cfg.model.name, kind, data.name)
    if data.get("tokens") == "sentencepiece":
        import importlib.util

        if importlib.util.find_spec("sentencepiece") is None:
            raise ConfigError(SENTENCEPIECE_MISSING)
    if kind != "tokens":
        if cfg.reg.get("token_dropout", 0.0) > 0:
            raise ConfigError(
                f"reg.token_dropout={cfg.reg.token_dropout} replaces token ids: data={data.name}"
                " is not text (data=text); leave it at 0"
            )
        return
    pixels = [
        (cfg.reg.augment.enabled, "reg=augment shifts, rotates and adds noise to pixels"),
        (cfg.reg.adversarial.enabled, "reg=adversarial perturbs continuous inputs"),
        (
            bool(cfg.eval.attacks),
            f"eval.attacks={list(cfg.eval.attacks)} perturbs continuous inputs",
        ),
    ]
    for on, what in pixels:
        if on:
            raise ConfigError(f"{what}; data={data.name} is token ids: leave it off for text")


SENTENCEPIECE_MISSING = "data.tokens=sentencepiece needs sentencepiece: pip install 'dnnexp[text]'"


def check_model_input(model: str, kind: str, data: str) -> None:
    """`kind`: "image", "tabular" (the data's inputs), or "unknown" (files not read yet)."""
    reads = MODEL_SCHEMAS[model].reads
    if kind == "tokens" and not MODEL_SCHEMAS[model].tokens:
        raise ConfigError(
            f"model={model} does not read tokens; data={data} is text: use"
            f" model={' or model='.join(models_reading_tokens())} (sweep=nas_text searches them)"
        )
    if kind in ("image", "tabular") and reads == "tokens":
        raise ConfigError(
            f"model={model} reads token ids (data=text); data={data} has {kind} inputs"
        )
    if kind == "tabular" and reads != "flat":
        what = "a sequence of image rows" if reads == "rows" else "images (channels, height, width)"
        raise ConfigError(
            f"model={model} reads {what}; data={data} has tabular features: use"
            f" model={' or model='.join(models_reading('flat'))}"
        )


def _check_data_files(data: DictConfig) -> None:
    """The files exist (their contents are checked when they are read, before training)."""
    import os

    files = GROUP_SCHEMAS["data"][data.name].files
    if files is None:
        return
    key, kind = files
    keys = [key] + (["test_path"] if "test_path" in data else [])
    for name in keys:
        value = data.get(name)
        if value is None:
            if name == key:
                raise ConfigError(
                    f"data.{key} is not set: data={data.name} reads your own {kind}, e.g."
                    f" data.{key}={'DIR' if kind == 'dir' else 'FILE'}"
                )
            continue
        path = os.path.expanduser(str(value))
        if not os.path.exists(path):
            raise ConfigError(
                f"data.{name}={value}: no such {'directory' if kind == 'dir' else 'file'}"
            )
        if kind == "dir" and not os.path.isdir(path):
            raise ConfigError(f"data.{name}={value} is a file; data={data.name} reads a directory")
