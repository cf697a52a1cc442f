"""Every option of every group composes and validates; bad values fail with one clear line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dnnexp.config import conf_dir
from dnnexp.config.errors import ConfigError
from dnnexp.config.schema import GROUP_SCHEMAS, MODEL_SCHEMAS, RegConfig, TrainerConfig
from tests.conftest import compose

GROUPS = ("task", "data", "model", "optimizer", "scheduler", "reg", "trainer", "logger", "sweep")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in GROUPS for o in options(g)], ids=lambda v: str(v)
)
def test_every_option_composes_and_validates(group: str, option: str) -> None:
    if (group, option) == ("logger", "tensorboard") and not _has_tensorboard():
        with pytest.raises(ConfigError, match="logger=tensorboard needs the tensorboard package"):
            compose("logger=tensorboard")
        return
    cfg = compose(f"{group}={option}", *_partner(group, option))
    if group in GROUP_SCHEMAS:
        assert cfg[group].name == option


def _partner(group: str, option: str) -> list[str]:
    """A regression dataset composes with task=regression, and task=regression with one; the
    options that read the user's files are given an existing one."""
    files = GROUP_SCHEMAS["data"][option].files if group == "data" else None
    if files is not None:
        key, kind = files
        path = [f"data.{key}={conf_dir() if kind == 'dir' else conf_dir() / 'train.yaml'}"]
        return path + (["model=lstm"] if option == "text" else [])  # text: a family of tokens
    if group == "data" and "classification" not in GROUP_SCHEMAS["data"][option].tasks:
        return ["task=regression"]
    if group == "task" and option == "regression":
        return ["data=diabetes"]
    if group == "task" and option == "multitask":  # a table's columns as heads
        return ["data=csv", f"data.path={conf_dir() / 'train.yaml'}", "task.heads=[a,b]"]
    text = ["data=text", f"data.path={conf_dir() / 'train.yaml'}"]
    if (group, option) == ("task", "seq2seq"):
        return [*text, "model=seq2seq_rnn"]
    if group == "model" and not MODEL_SCHEMAS[option].classifier:
        return [*text, "task=seq2seq"]
    if group == "model" and MODEL_SCHEMAS[option].reads == "tokens":  # reads text only
        return text
    if (group, option) == ("sweep", "nas_text"):
        return text
    if (group, option) == ("reg", "token_dropout"):  # text only
        return [*text, "model=gru"]
    return []


def _has_tensorboard() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX"))


@pytest.mark.parametrize("group", sorted(GROUP_SCHEMAS))
def test_each_option_yaml_lists_every_schema_key(group: str) -> None:
    """The YAML shows users every knob; the schema types it. They must not drift apart."""
    for option, schema in GROUP_SCHEMAS[group].items():
        keys = set(OmegaConf.load(conf_dir() / group / f"{option}.yaml").keys())
        assert keys == {f.name for f in dataclasses.fields(schema)}, option


def test_reg_options_compose_as_a_list() -> None:
    cfg = compose("reg=[dropout,weight_decay,early_stopping,l1,label_smoothing,grad_clip,augment]")
    reg = cfg.reg
    assert reg.dropout > 0 and reg.weight_decay > 0 and reg.l1 > 0
    assert reg.label_smoothing > 0 and reg.grad_clip > 0
    assert reg.early_stopping.enabled and reg.augment.enabled


def test_reg_none_is_all_off() -> None:
    assert OmegaConf.to_container(compose().reg) == dataclasses.asdict(RegConfig())


def test_trainer_options_only_change_what_they_name() -> None:
    base = OmegaConf.to_container(compose().trainer)
    assert base == dataclasses.asdict(TrainerConfig())
    smoke = OmegaConf.to_container(compose("trainer=smoke").trainer)
    changed = {k for k in base if base[k] != smoke[k]}
    assert changed == {
        "max_epochs",
        "limit_train_batches",
        "limit_val_batches",
        "limit_test_batches",
        "model_summary",
    }


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("reg.dropout=1.5", "reg.dropout=1.5 is out of range: must be less than 1"),
        ("reg.dropout=-0.1", "reg.dropout=-0.1 is out of range: must be at least 0"),
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1 is out of range: must be greater than 0"),
        ("optimizer.lr=0", "optimizer.lr=0.0 is out of range"),
        ("data.batch_size=0", "data.batch_size=0 is out of range"),
        ("trainer.max_epochs=-1", "trainer.max_epochs=-1 is out of range"),
        ("data.train_fraction=0", "data.train_fraction=0.0 is out of range"),
        ("model.activation=swish", "model.activation='swish' is not allowed; choose one of: relu"),
        ("model.hidden=[64,-3]", "model.hidden=[64, -3] is out of range"),
        (
            "optimizer.lr=fast",
            "optimizer.lr: Value 'fast' of type 'str' could not be converted to Float",
        ),
        ("data.val_fraction=0.85", "leaves nothing to train on"),
        ("trainer.limit_train_batches=2.5", "must be a share (<= 1.0) or a whole number"),
        # adversarial training, robust evaluation, distillation
        (
            "reg.adversarial.method=cw",
            "reg.adversarial.method='cw' is not allowed; choose one of: fgsm, pgd",
        ),
        (
            "reg.adversarial.eps=0",
            "reg.adversarial.eps=0.0 is out of range: must be greater than 0",
        ),
        (
            "reg.adversarial.ratio=1.5",
            "reg.adversarial.ratio=1.5 is out of range: must be at most 1",
        ),
        (
            "reg.adversarial.steps=0",
            "reg.adversarial.steps=0 is out of range: must be greater than 0",
        ),
        (
            "eval.attacks=[pgd,cw]",
            "eval.attacks=['pgd', 'cw'] is not allowed; each must be one of: fgsm, pgd",
        ),
        ("eval.eps=-1", "eval.eps=-1.0 is out of range: must be greater than 0"),
        (
            "distill.temperature=0",
            "distill.temperature=0.0 is out of range: must be greater than 0",
        ),
        ("distill.alpha=1.5", "distill.alpha=1.5 is out of range: must be at most 1"),
    ],
)
def test_bad_values_fail_with_the_key_and_what_is_allowed(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        compose(override)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["model=resnext", "model.cardinality=3"],
            "model.cardinality=3 does not divide the stage width 64",
        ),
        (
            ["model=mlp", "model.norm=group", "model.hidden=[60]"],
            "model.norm_groups=8 does not divide model.hidden=60",
        ),
        (["model=lstm", "model.activation=relu"], "does not apply to lstm"),
        (["model=rnn", "model.activation=gelu"], "not possible for rnn"),
        (["model=mlp", "trainer.channels_last=true"], "applies to image models .* not model=mlp"),
        (["trainer.steps_per_call=0"], "trainer.steps_per_call=0"),
        (["optimizer=rmsprop", "optimizer.implementation=fused"], "torch has no fused rmsprop"),
        (["optimizer.implementation=fast"], "optimizer.implementation='fast' is not allowed"),
        (["trainer.checkpoint_interval_s=-1"], "trainer.checkpoint_interval_s=-1"),
    ],
)
def test_incompatible_combinations_are_refused(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        compose(*overrides)


def test_resnext_width_per_group_lifts_the_divisibility_rule() -> None:
    assert (
        compose("model=resnext", "model.cardinality=3", "model.width_per_group=4").model.cardinality
        == 3
    )


def test_help_lists_every_group_and_option() -> None:
    from dnnexp.config.help import render

    text = render()
    for group in GROUPS:
        assert f"\n  {group}\n" in text
        for option in options(group):
            assert f" {option} " in text or text.rstrip().endswith(option), (group, option)


def test_help_includes_a_user_config_dir(tmp_path: Path) -> None:
    from dnnexp.config.help import render

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tiny.yaml").write_text("# my tiny MLP\nname: mlp\n")
    import re

    text = render([str(tmp_path)])
    assert re.search(r"\n      tiny +my tiny MLP\n", text)
    # the descriptions start in one column, after the longest option name
    options = [line for line in text.splitlines() if re.match(r"^    [* ] \w", line)]
    columns = {len(re.match(r"^    [* ] \w+ +", line).group(0)) for line in options}
    assert len(options) > 30 and len(columns) == 1


def test_one_table_says_which_way_each_metric_improves() -> None:
    from dnnexp.config.metrics import LOWER_IS_BETTER, lower_is_better, mode

    for name in ("loss", "mse", "rmse", "mae"):
        assert lower_is_better(f"val/{name}") and mode(f"test/{name}") == "min"
    for name in ("acc", "f1", "precision", "recall", "r2", "acc_fgsm", "acc_pgd"):
        assert not lower_is_better(f"val/{name}") and mode(f"test/{name}") == "max"
    assert set(LOWER_IS_BETTER) == {
        "loss",
        "mse",
        "rmse",
        "mae",
        "acc",
        "f1",
        "precision",
        "recall",
        "r2",
        "acc_fgsm",
        "acc_pgd",
        "ter",
        "ser",
        "ter_beam",
        "ser_beam",
        "bleu",
        "bleu_beam",
    }
    for name in ("ter", "ser", "ter_beam", "ser_beam"):  # error rates of task=seq2seq
        assert lower_is_better(f"test/{name}") and mode(f"val/{name}") == "min"
    for name in ("bleu", "bleu_beam"):
        assert not lower_is_better(f"test/{name}") and mode(f"val/{name}") == "max"
    assert lower_is_better("train/loss_step") and lower_is_better("test/error")
