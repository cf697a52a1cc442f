"""A search space in Hydra's own override grammar, checked before any trial runs.

    optimizer.lr: tag(log, interval(1e-4, 1e-1))   # a float, log-uniform
    model.blocks: range(1, 4)                       # an int: 1, 2 or 3
    model.hidden: tag(int, interval(16, 256))       # an int from an interval
    model: choice(mlp, cnn, resnet)                 # a config group option (NAS)
    reg.dropout: 0.0,0.1,0.3                        # a choice, as for a plain -m sweep

A key under a swept config group (`model.depth` with `model: choice(...)`) is suggested only in
the trials whose option has that key, so one space can hold several model families.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dnnexp.config.errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One searched key: `choices` (override strings) or a numeric range [low, high]."""

    key: str
    choices: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None  # ints and range(): the grid's step
    log: bool = False
    integer: bool = False

    @property
    def group(self) -> str | None:
        """`model` for `model.depth`: the config group whose option decides if it applies."""
        return self.key.split(".", 1)[0] if "." in self.key else None

    def grid(self) -> list[Any]:
        """Every value, for grid search (choices, or the points of a range)."""
        if self.choices:
            return list(self.choices)
        if self.step is None:
            raise ConfigError(
                f"hydra.sweeper.params.{self.key}: grid search needs choice(...) or range(...),"
                " not interval(...)"
            )
        count = int(round((self.high - self.low) / self.step)) + 1
        values = [self.low + i * self.step for i in range(count)]
        return [int(v) for v in values] if self.integer else values

    def suggest(self, trial: Any) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)


def parse_space(params: dict[str, str], arguments: list[str]) -> tuple[list[Param], list[str]]:
    """The searched params (the sweep YAML's `hydra.sweeper.params` and any sweep syntax on
    the command line, which wins) and the fixed overrides (the rest of the command line)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    searched: dict[str, Param] = {}
    fixed: list[str] = []
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    for line in lines:
        try:
            override = parser.parse_override(line)
        except HydraException as err:
            raise ConfigError(f"search space: {line}: {str(err).splitlines()[0]}") from None
        key = override.get_key_element()
        if not override.is_sweep_override():
            searched.pop(key, None)  # a plain value on the command line fixes a searched key
            fixed.append(line)
            continue
        fixed = [f for f in fixed if parser.parse_override(f).get_key_element() != key]
        searched[key] = _param(key, override.value(), line)
    return list(searched.values()), fixed


def _param(key: str, sweep: Any, line: str) -> Param:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    from dnnexp.compat import override_value_as_str

    tags = set(getattr(sweep, "tags", set()) or set())
    unknown = tags - {"log", "int"}
    if unknown:
        raise ConfigError(
            f"search space: {line}: unknown tag {sorted(unknown)[0]!r}; use log or int"
        )
    log = "log" in tags
    if isinstance(sweep, ChoiceSweep):
        if log:
            raise ConfigError(
                f"search space: {line}: tag(log, ...) applies to interval(), not choice()"
            )
        choices = tuple(override_value_as_str(v) for v in sweep.list)
        if not choices:
            raise ConfigError(f"search space: {line}: an empty choice")
        if len(set(choices)) != len(choices):
            raise ConfigError(f"search space: {line}: a value is listed twice")
        return Param(key, choices=choices)
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step or 1
        integer = all(float(v).is_integer() for v in (start, stop, step))
        if step <= 0 or start >= stop:
            raise ConfigError(
                f"search space: {line}: range(start, stop[, step]) needs start < stop and a"
                " positive step"
            )
        last = start + math.floor((stop - start - 1e-12) / step) * step
        param = Param(key, low=start, high=last, step=step, integer=integer, log=log)
        return _checked_bounds(param, line)
    if isinstance(sweep, IntervalSweep):
        param = Param(key, low=float(sweep.start), high=float(sweep.end), log=log)
        if "int" in tags:
            if not (param.low.is_integer() and param.high.is_integer()):
                raise ConfigError(f"search space: {line}: tag(int, ...) needs whole-number bounds")
            param = dataclasses.replace(param, integer=True, step=1)
        return _checked_bounds(param, line)
    raise ConfigError(f"search space: {line}: use choice(), range() or interval()")


def _checked_bounds(param: Param, line: str) -> Param:
    if param.low > param.high:
        raise ConfigError(f"search space: {line}: low {param.low:g} > high {param.high:g}")
    if param.log and param.low <= 0:
        raise ConfigError(
            f"search space: {line}: tag(log, ...) needs positive bounds, got low {param.low:g}"
        )
    if param.log and param.step not in (None, 1):
        raise ConfigError(f"search space: {line}: a log scale takes no step")
    return param


def check_keys(space: list[Param], cfg: Any, options_have: Any) -> None:
    """Every searched key must be in the composed config, or, under a searched group, in at
    least one of its options (`options_have(group, option, leaf) -> bool`)."""
    from omegaconf import OmegaConf

    groups = {p.key: p for p in space if p.group is None}
    for param in space:
        if param.group is None:
            if param.key not in cfg:
                raise ConfigError(f"search space: {param.key}: not a key of the config")
            continue
        swept = groups.get(param.group)
        leaf = param.key.split(".", 1)[1]
        if swept is not None and swept.choices:
            if not any(options_have(param.group, option, leaf) for option in swept.choices):
                raise ConfigError(
                    f"search space: {param.key}: no option of {param.group}="
                    f"choice({', '.join(swept.choices)}) has it"
                )
        elif OmegaConf.select(cfg, param.key, default=_MISSING) is _MISSING:
            raise ConfigError(f"search space: {param.key}: not a key of the config")


_MISSING = object()


def check_families(space: list[Param], cfg: Any) -> None:
    """Every model family a search may pick reads the data's inputs: a text search over image
    families fails here, in one line, not in each of its trials."""
    from dnnexp.config.schema import GROUP_SCHEMAS, MODEL_SCHEMAS
    from dnnexp.config.validate import check_model_input

    kind = GROUP_SCHEMAS["data"][cfg.data.name].input_kind(cfg.data)
    for param in space:
        if param.key != "model":
            continue
        for option in (o for o in param.choices if o in MODEL_SCHEMAS):
            try:
                check_model_input(option, kind, cfg.data.name)
            except ConfigError as err:
                raise ConfigError(
                    f"search space: model=choice({', '.join(param.choices)}): {err}"
                ) from None


def applies(key: str, chosen: dict[str, str], options_have: Any) -> bool:
    """Whether `key` is set in a trial whose top-level choices are `chosen`: a key under a
    searched group (`model.depth`) only where the chosen option has it."""
    group, _, leaf = key.partition(".")
    return not leaf or group not in chosen or options_have(group, chosen[group], leaf)


def suggest(trial: Any, space: list[Param], options_have: Any) -> list[str]:
    """The overrides of one trial: groups first (define-by-run), then each key that applies to
    the chosen options."""
    chosen: dict[str, str] = {}
    overrides = []
    for param in sorted(space, key=lambda p: p.group is not None):
        if not applies(param.key, chosen, options_have):
            continue
        value = param.suggest(trial)
        if param.group is None:
            chosen[param.key] = str(value)
        overrides.append(f"{param.key}={value}")
    return overrides
