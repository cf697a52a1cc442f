"""Hooks into Hydra: the unique run-dir resolver and one-line error reporting."""

from __future__ import annotations

import functools
import os
import re
import sys
from typing import Any

from dnnexp.config.errors import (
    ConfigError,
    RunError,
    describe_omegaconf_error,
    unknown_key_message,
)


def unique_dir(path: str) -> str:
    """Claim `path` (or `path-1`, `path-2`, ...) by creating it: atomic, so two runs started in
    the same second, even in parallel processes, never share (and overwrite) a directory."""
    candidate, n = path, 0
    while True:
        try:
            os.makedirs(candidate, exist_ok=False)
            return candidate
        except FileExistsError:
            n += 1
            candidate = f"{path}-{n}"


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    from dnnexp.config.ranks import shared_dir

    if not OmegaConf.has_resolver("dnnexp.unique_dir"):
        # use_cache: resolved once per config; Hydra copies the cache into each sweep job's config.
        # Under torchrun or srun, rank 0 claims the dir and every rank uses it.
        OmegaConf.register_new_resolver(
            "dnnexp.unique_dir", lambda path: shared_dir(path, unique_dir), use_cache=True
        )
    if not OmegaConf.has_resolver("dnnexp.fold_range"):
        OmegaConf.register_new_resolver("dnnexp.fold_range", fold_range)


def fold_range(folds: Any) -> str:
    """sweep=kfold's swept `data.fold`: range(K) for data.folds=K. Hydra expands a sweep
    before any job validates its config, so K is checked here."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(
            f"data.folds={'null' if folds is None else folds}: sweep=kfold runs one job per"
            " fold and needs data.folds=K, a whole number of at least 2"
        )
    return f"range({folds})"


def one_line(ex: BaseException) -> str | None:
    """A one-line description of a config/input error, or None for anything else."""
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(ex, (ConfigError, RunError)):
        return str(ex)
    resolver_error = _cause_of_type(ex, ConfigError)  # raised by a resolver (fold_range)
    if resolver_error is not None:
        return str(resolver_error)
    if isinstance(ex, MissingConfigException):
        missing = ex.missing_cfg_file or ""
        group, _, option = missing.rpartition("/")
        if group and ex.options is not None:
            return f"{group}={option}: no such option; available: {', '.join(ex.options)}"
        return str(ex).splitlines()[0]
    from dnnexp.utils.run_files import write_failure

    failed = write_failure(ex)
    if failed is not None:  # one of a sweep's or a search's own files (a run's: RunStopped)
        return f"{failed}; free some space (or fix the disk), then run the same command again"
    os_error = _os_error_in(ex)
    if os_error is not None:  # e.g. a read-only or full disk, or a file where a dir should be
        where = os_error.filename or "the output directory"
        return (
            f"cannot write {where}: {os_error.strerror or os_error}; pick a writable"
            " hydra.run.dir (or hydra.sweep.dir), or free some space"
        )
    if isinstance(ex, OverrideParseException):
        first = str(ex).splitlines()[0]
        if first.startswith("LexerNoViableAltException: "):
            return unquoted_value_hint(first.split(": ", 1)[1])
        return f"{first} (overrides look like key=value, +new_key=value, ~key)"
    if isinstance(ex, ConfigCompositionException):
        cause = ex.__cause__
        if isinstance(cause, OmegaConfBaseException):
            return _describe_cause(cause)
        return " ".join(str(ex).split())
    if isinstance(ex, OmegaConfBaseException):
        return _describe_cause(ex)
    if type(ex) is ValueError and "--multirun" in str(ex):  # Hydra's flag checks, e.g. -m --cfg
        return str(ex).splitlines()[0]
    if isinstance(ex, (ValueError, TypeError)) and _raised_in_hydra(ex):  # e.g. model=0
        return f"{str(ex).split(' : ')[0].splitlines()[0]} (check the override syntax: key=value)"
    return None


def unquoted_value_hint(override: str) -> str:
    """Hydra's grammar takes unquoted values of letters a-z, digits and a few symbols only: a
    value with é, a space or a quote mark fails in its lexer. Say so, and how to quote it."""
    key, sep, value = override.partition("=")
    if not sep:
        return f"{override}: not an override Hydra can parse (they look like key=value)"
    if value.startswith("[") and value.endswith("]"):
        items = [item.strip().strip("'\"") for item in value[1:-1].split(",")]
        quoted = "[" + ",".join(f'"{item}"' for item in items) + "]"
    else:
        quoted = '"' + value.strip("'\"") + '"'
    return (
        f"{override}: Hydra's override grammar takes this value only in quotes (it has a"
        f" character outside letters a-z, digits and -_./:): write '{key}={quoted}'"
    )


def _raised_in_hydra(ex: BaseException) -> bool:
    """Whether ex was raised inside Hydra's own override handling (not in a job)."""
    tb = ex.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("hydra.")


def _os_error_in(ex: BaseException) -> OSError | None:
    """The OSError that caused ex (directly, or wrapped by Hydra/OmegaConf), if any."""
    return _cause_of_type(ex, OSError)


def _cause_of_type(ex: BaseException, kind: type) -> Any:
    """The exception of type `kind` that caused ex (itself, or wrapped by Hydra/OmegaConf)."""
    from omegaconf.errors import OmegaConfBaseException

    seen = 0
    while ex is not None and seen < 10:
        if isinstance(ex, kind):
            return ex
        # OmegaConf wraps a resolver's error (e.g. creating the run dir) as mere context
        wrapped = ex.__context__ if isinstance(ex, OmegaConfBaseException) else None
        ex, seen = ex.__cause__ or wrapped, seen + 1
    return None


def _describe_cause(cause: Any) -> str:
    text = str(getattr(cause, "msg", None) or cause)
    full_key = getattr(cause, "full_key", "") or ""
    if "not in struct" in text or "not in '" in text:
        parent = getattr(cause, "parent_node", None)
        allowed = (
            [str(k) for k in parent.keys()]
            if parent is not None and hasattr(parent, "keys")
            else []
        )
        return unknown_key_message(full_key, allowed)
    return describe_omegaconf_error(cause)


def install_one_line_errors(args: list[str] | None = None) -> None:
    """Make Hydra print config errors as one line (exit 2); HYDRA_FULL_ERROR=1 keeps tracebacks.
    `args`: the command line, for the hint on a key of a group that `-m` sweeps."""
    from dnnexp.compat import hydra_error_reporting

    hydra_utils = hydra_error_reporting()
    original = hydra_utils.run_and_report
    if getattr(original, "_dnnexp", False):
        return

    @functools.wraps(original)
    def run_and_report(func: Any) -> Any:
        try:
            return func()
        except Exception as ex:  # noqa: BLE001 - re-raised or reported below
            line = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else one_line(ex)
            if line is None:
                return original(lambda err=ex: _reraise(err))
            print(f"error: {swept_group_hint(line, args or [])}", file=sys.stderr)
            sys.exit(2)

    run_and_report._dnnexp = True  # type: ignore[attr-defined]
    hydra_utils.run_and_report = run_and_report


def register_search_sweeper() -> None:
    """Hydra finds plugins by scanning the `hydra_plugins` namespace on disk, which an editable
    install (`pip install -e .`) hides behind an import hook: register dnnexp's search sweeper
    by name, so `hydra/sweeper: dnnexp_search` works however dnnexp was installed."""
    import hydra_plugins.dnnexp_search.search_sweeper as module
    from dnnexp.compat import hydra_plugin_table

    name = f"{module.__name__}.{module.DnnexpSearchSweeper.__name__}"
    hydra_plugin_table().setdefault(name, module.DnnexpSearchSweeper)


def swept_group_hint(line: str, args: list[str]) -> str:
    """Under `-m data=mnist,cifar10 data.root=X`, Hydra composes the config once with the
    default `data` before the sweep (its documented staging: facebookresearch/hydra#2888), so a
    key only the swept options have is refused there. Say so, and what sets it in every job."""
    match = re.match(r"([\w]+)\.([\w.]+): no such key", line)
    if not match or not {"-m", "--multirun"} & set(args):
        return line
    group = match.group(1)
    swept = any(
        arg.split("=", 1)[0].lstrip("+") == group and _is_sweep(arg.split("=", 1)[1])
        for arg in args
        if "=" in arg
    )
    if not swept:
        return line
    key = f"{group}.{match.group(2)}"
    return (
        f"{line}. Under -m, Hydra checks {key} against the default {group} before it composes"
        f" the swept ones: write ++{key}=... to set it in every job"
    )


def _is_sweep(value: str) -> bool:
    return "," in value or value.startswith(("choice(", "glob(", "range("))


def _reraise(ex: BaseException) -> None:
    raise ex


def speed_up_hydra(args: list[str]) -> None:
    """Two startup costs of Hydra 1.3 (`dnnexp --help` and a refusal's time, README):

    - `hydra.version.base_at_least` parses version strings with `packaging` at each call,
      hundreds of times per composition: the parse is memoized (a pure function of a string).
    - Before running, Hydra composes the whole config once just to read `hydra.mode`, then
      composes it again. dnnexp's configs never set `hydra.mode`; only an override or
      a user's --config-dir could, and then Hydra's own probe runs as before.
    """

    from dnnexp.compat import hydra_class, hydra_version_module

    hydra_version, Hydra = hydra_version_module(), hydra_class()

    if not getattr(hydra_version._get_version, "cache_info", None):
        hydra_version._get_version = functools.lru_cache(maxsize=None)(hydra_version._get_version)
    from dnnexp.config import config_dirs

    if any(a.startswith(("hydra.mode", "+hydra.mode", "++hydra.mode")) for a in args) or (
        config_dirs(args)
    ):
        return
    if not getattr(Hydra.get_mode, "_dnnexp", False):

        @functools.wraps(Hydra.get_mode)
        def get_mode(self: Any, config_name: Any, overrides: Any) -> None:
            return None  # no config sets hydra.mode: -m alone decides

        get_mode._dnnexp = True  # type: ignore[attr-defined]
        Hydra.get_mode = get_mode


def validate_before_run_dir() -> None:
    """Check a single run's config (and that its devices exist) as soon as Hydra has composed
    it: before Hydra claims the run dir, writes .hydra/ and sets up logging. A typo then fails
    sooner and leaves nothing behind. The job validates again: it is also what each multirun
    job runs, where a bad config fails that job alone."""
    from omegaconf import OmegaConf

    from dnnexp.compat import hydra_class

    Hydra = hydra_class()
    if getattr(Hydra.run, "_dnnexp", False):
        return
    original = Hydra.run

    @functools.wraps(original)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        compose = self.compose_config

        def compose_and_validate(*c_args: Any, **c_kwargs: Any) -> Any:
            cfg = compose(*c_args, **c_kwargs)
            from dnnexp.config.hardware import check_devices
            from dnnexp.config.validate import validate

            job = validate(OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]))
            check_devices(job.trainer)
            return cfg

        self.compose_config = compose_and_validate
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.compose_config

    run._dnnexp = True  # type: ignore[attr-defined]
    Hydra.run = run
