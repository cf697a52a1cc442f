"""Every private name of Hydra, Lightning and Optuna that dnnexp uses, in one place.

Each accessor checks that the internal is still there in the shape dnnexp relies on, and raises
CompatError naming the upstream symbol when it is not: an upgrade that renames one breaks
loudly (in `tests/test_compat.py` first), never by silently skipping what the patch did.
Nothing heavy is imported at module level (the config layer imports this before torch).
"""

from __future__ import annotations

import inspect
from typing import Any


class CompatError(RuntimeError):
    """An internal of a library dnnexp patches or calls has changed."""


def _require(owner: Any, name: str, why: str, params: tuple[str, ...] | None = None) -> Any:
    """owner.name, checked to exist (and, for a function, to take `params` first)."""
    where = getattr(owner, "__name__", type(owner).__name__)
    if not hasattr(owner, name):
        raise CompatError(f"{where}.{name} is gone; dnnexp needs it to {why} (dnnexp/compat.py)")
    value = getattr(owner, name)
    if params is not None:
        original = inspect.unwrap(value)  # under dnnexp's own patch (functools.wraps)
        got = tuple(inspect.signature(original).parameters)[: len(params)]
        if got != params:
            raise CompatError(
                f"{where}.{name} now takes {got}, not {params}; dnnexp needs it to {why}"
                " (dnnexp/compat.py)"
            )
    return value


# --- Hydra 1.3 ------------------------------------------------------------------------------


def hydra_error_reporting() -> Any:
    """`hydra._internal.utils`, whose `run_and_report(func)` dnnexp wraps to print config errors
    as one line."""
    import hydra._internal.utils as module

    _require(module, "run_and_report", "print config errors as one line", ("func",))
    return module


def hydra_class() -> Any:
    """`hydra._internal.hydra.Hydra`: `run` (validation before the run dir is claimed) and
    `get_mode` (the second composition it costs) are wrapped, `compose_config` called."""
    from hydra._internal.hydra import Hydra

    _require(Hydra, "run", "validate a run before its dir is created", ("self", "config_name"))
    _require(Hydra, "get_mode", "skip the composition that only reads hydra.mode", ("self",))
    _require(Hydra, "compose_config", "validate the composed config", ("self", "config_name"))
    return Hydra


def hydra_version_module() -> Any:
    """`hydra.version`, whose `_get_version(str)` parse dnnexp memoizes (hundreds of calls per
    composition)."""
    import hydra.version as module

    _require(module, "_get_version", "memoize Hydra's version parsing", ("ver",))
    return module


def hydra_plugin_table() -> dict[str, type]:
    """Hydra's class table of plugins (`Plugins.instance().class_name_to_class`), where the
    search sweeper is registered by name (an editable install hides it from Hydra's scan)."""
    from hydra.core.plugins import Plugins

    table = _require(Plugins.instance(), "class_name_to_class", "register the search sweeper")
    if not isinstance(table, dict):
        raise CompatError("Plugins.class_name_to_class is no longer a dict (dnnexp/compat.py)")
    return table


def hydra_completions(config_dir: str, config_name: str, line: str) -> list[str]:
    """Hydra's own completer (`CompletionPlugin._query`, as `-sc query=bash` runs it) for the
    overrides typed so far in `line`: groups, their options, config keys."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.bash_completion import BashCompletion
    from hydra._internal.utils import create_config_search_path

    _require(BashCompletion, "_query", "complete dnnexp train's overrides", ("self", "config_name"))
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(config_dir))
    return list(BashCompletion(loader)._query(config_name=config_name, line=line))


def override_value_as_str(value: Any) -> str:
    """A sweep value as Hydra writes it into an override (`Override._get_value_element_as_str`),
    for the search's choice() values."""
    from hydra.core.override_parser.types import Override

    to_str = _require(Override, "_get_value_element_as_str", "write a choice() value back")
    return to_str(value)


# --- Lightning 2.x --------------------------------------------------------------------------


def lightning_subprocess_launcher() -> Any:
    """`lightning.pytorch.strategies.launchers.subprocess_script`, whose
    `_hydra_subprocess_cmd(local_rank)` builds the command of DDP ranks > 0 under Hydra: dnnexp
    replaces it so a rank runs this job, not the whole sweep."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    why = "start DDP ranks as this job"
    _require(subprocess_script, "_hydra_subprocess_cmd", why, ("local_rank",))
    return subprocess_script


def check_lightning_optimizer_hooks(optimizer: Any) -> None:
    """A `LightningOptimizer` still has `_on_before_step` and `_on_after_step`: Lightning's
    manual-optimization loop sets them per batch (its step count and before/after-step
    callbacks), and the task calls them around the steps it takes itself (`lightning_step`)."""
    for name in ("_on_before_step", "_on_after_step"):
        _require(optimizer, name, "count an optimizer step that the task takes itself")


def lightning_step(optimizer: Any, step: Any) -> None:
    """`step()` between the `LightningOptimizer`'s own before/after-step hooks (checked by
    `check_lightning_optimizer_hooks` when training starts): what `LightningOptimizer.step()`
    does on one fp32 device, without the precision plugin's detour."""
    optimizer._on_before_step()
    step()
    optimizer._on_after_step()


def epoch_items_done(trainer: Any) -> int:
    """The items (Lightning's batches) of the current training epoch already trained, as
    Lightning restores them on a resume mid-epoch (`fit_loop.epoch_loop.batch_progress`): the
    training loader skips them."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed
