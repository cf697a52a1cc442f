"""The private names of Hydra, Lightning and Optuna that dnnexp uses (dnnexp/compat.py): each
is still there in the shape dnnexp relies on, or this fails naming it (an upgrade breaks here,
not by silently skipping a patch)."""

from __future__ import annotations

import types

import pytest

from dnnexp import compat


@pytest.mark.parametrize(
    "accessor",
    [
        compat.hydra_error_reporting,
        compat.hydra_class,
        compat.hydra_version_module,
        compat.hydra_plugin_table,
        compat.lightning_subprocess_launcher,
    ],
    ids=lambda f: f.__name__,
)
def test_every_private_internal_is_there_in_the_expected_shape(accessor) -> None:
    assert accessor() is not None


def test_a_choice_value_is_written_back_as_hydra_writes_it() -> None:
    assert compat.override_value_as_str(0.5) == "0.5"
    assert compat.override_value_as_str([1, 2]) == "[1,2]"


def test_a_changed_internal_fails_loudly_naming_it() -> None:
    module = types.ModuleType("hydra._internal.utils")
    with pytest.raises(
        compat.CompatError, match=r"hydra\._internal\.utils\.run_and_report is gone"
    ):
        compat._require(module, "run_and_report", "print config errors as one line")
    module.run_and_report = lambda task, extra: None  # renamed parameters
    with pytest.raises(
        compat.CompatError, match=r"run_and_report now takes \('task',\), not \('func',\)"
    ):
        compat._require(module, "run_and_report", "print errors", ("func",))


def test_the_patches_take_effect() -> None:
    """What the accessors are for: each patch is installed where Hydra and Lightning look."""
    from dnnexp.config import hydra_setup
    from dnnexp.training.ddp import launch_ranks_as_this_job

    hydra_setup.install_one_line_errors([])
    assert getattr(compat.hydra_error_reporting().run_and_report, "_dnnexp", False)
    hydra_setup.validate_before_run_dir()
    assert getattr(compat.hydra_class().run, "_dnnexp", False)
    hydra_setup.register_search_sweeper()
    assert any(name.endswith("DnnexpSearchSweeper") for name in compat.hydra_plugin_table())
    launcher = compat.lightning_subprocess_launcher()
    saved = launcher._hydra_subprocess_cmd
    try:
        from pathlib import Path

        launch_ranks_as_this_job(Path("/tmp/run"), ["seed=1"])
        command, _ = launcher._hydra_subprocess_cmd(local_rank=1)
        assert command[1:4] == ["-m", "dnnexp", "train"] and "hydra.run.dir=/tmp/run" in command
    finally:
        launcher._hydra_subprocess_cmd = saved


def test_the_epoch_progress_the_training_loader_resumes_from_is_there() -> None:
    """A resumed run's loader skips the items of the epoch already trained, as Lightning's
    fit loop counts them (`compat.epoch_items_done`)."""
    import lightning as L

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert compat.epoch_items_done(trainer) == 0
