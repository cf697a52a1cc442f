"""The `experiment` and `debug` groups: recipes and debugging modes that compose with the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dnnexp.config import conf_dir
from dnnexp.config.errors import ConfigError
from tests.conftest import compose, metrics_rows, run_cli, run_here


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def test_the_groups_have_the_presets_the_docs_name() -> None:
    assert {"cifar10_resnet", "tabular_mlp", "text_gru"} <= set(_options("experiment"))
    assert set(_options("debug")) == {"default", "fdr", "limit", "overfit", "profiler"}


@pytest.mark.parametrize("option", _options("experiment"))
def test_each_experiment_composes_and_validates(option: str, tmp_path: Path) -> None:
    files = {
        "cifar10_resnet": [f"data.root={tmp_path}"],
        "text_gru": [f"data.path={conf_dir() / 'train.yaml'}"],
    }
    cfg = compose(f"experiment={option}", *files.get(option, []))
    assert cfg.name == option  # the recipe's own label, in summary.json and reports


def test_an_experiment_sets_groups_and_the_command_line_still_wins() -> None:
    cfg = compose("experiment=tabular_mlp", "reg.dropout=0.5", "optimizer.lr=0.01")
    assert (cfg.data.name, cfg.model.name, cfg.optimizer.name) == ("breast_cancer", "mlp", "adamw")
    assert cfg.reg.early_stopping.enabled and cfg.reg.weight_decay == 0.01
    assert cfg.reg.dropout == 0.5 and cfg.optimizer.lr == 0.01


@pytest.mark.parametrize("option", _options("debug"))
def test_each_debug_mode_composes_on_the_cpu(option: str) -> None:
    cfg = compose(f"debug={option}")
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.devices == 1


def test_overfit_batches_is_refused_for_seq2seq_and_checked_like_the_limits() -> None:
    with pytest.raises(ConfigError, match="trainer.overfit_batches=2.5 must be a share"):
        compose("trainer.overfit_batches=2.5")
    with pytest.raises(ConfigError, match="trainer.overfit_batches=-1.0 is out of range"):
        compose("trainer.overfit_batches=-1")


def test_help_lists_the_presets(tmp_path: Path) -> None:
    out = run_here("train", "--help", cwd=tmp_path).stdout
    for group, option in (("experiment", "tabular_mlp"), ("debug", "overfit")):
        assert f"\n  {group}\n" in out and option in out


def test_overfit_batches_trains_and_validates_on_the_same_first_batches() -> None:
    from dnnexp.data.datamodule import ArrayDataModule

    cfg = compose("trainer.overfit_batches=2", "data.batch_size=16")
    data = ArrayDataModule.for_run(cfg)
    data.setup()
    x, y = data.splits["train"]
    assert len(y) == 32 and data.splits["val"][0] is x
    loader = data.train_dataloader()
    assert not loader.shuffle and loader.num_batches == 2


@pytest.mark.slow
def test_debug_overfit_drives_the_loss_of_its_batches_down(tmp_path: Path) -> None:
    done = run_cli("train", "debug=overfit", "trainer.progress_bar=false", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run,) = (tmp_path / "outputs" / "debug").glob("*/*")  # debugging runs apart from the rest
    rows = metrics_rows(run)
    assert len(rows) == 30
    assert float(rows[-1]["train/loss"]) < 0.1 * float(rows[0]["train/loss"])
    assert float(rows[-1]["val/acc"]) == 1.0  # the same batches, learnt
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
