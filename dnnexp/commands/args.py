"""key=value arguments of the commands that are not Hydra apps (predict, export): each key known,
each value of its type, or one line saying what is allowed."""

from __future__ import annotations

import sys
from collections.abc import Callable

from dnnexp.config.errors import ConfigError, RunError

TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_keys(
    args: list[str], keys: dict[str, type | tuple[str, ...]], command: str
) -> dict[str, object]:
    """`keys`: name -> str, int, bool, or a tuple of the allowed strings."""
    found: dict[str, object] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(f"'{arg}' is not key=value; dnnexp {command} --help lists the keys")
        kind = keys.get(key)
        if kind is None:
            raise ConfigError(f"{key}: not a key of dnnexp {command}; allowed: {', '.join(keys)}")
        if isinstance(kind, tuple):
            if value not in kind:
                raise ConfigError(f"{key}={value}: allowed values are {', '.join(kind)}")
            found[key] = value
        elif kind is bool:
            if value.lower() not in TRUE + FALSE:
                raise ConfigError(f"{key}={value}: expected true or false")
            found[key] = value.lower() in TRUE
        elif kind is int:
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"{key}={value}: expected a whole number >= 1")
            found[key] = int(value)
        else:
            if not value.strip():
                raise ConfigError(f"{key}= is empty")
            found[key] = value
    return found


def run_command(
    args: list[str],
    usage: str,
    keys: dict[str, type | tuple[str, ...]],
    command: str,
    example: str,
    action: Callable[[dict[str, object]], object],
) -> int:
    """--help, or parse `args` (the keys of `example` are required) and run `action` on them;
    a bad argument, file or checkpoint is one line on stderr and exit status 2."""
    if not args or "-h" in args or "--help" in args:
        print(usage, end="")
        return 0 if args else 2
    try:
        found = parse_keys(args, keys, command)
        for word in example.split()[2:]:
            key = word.split("=", 1)[0]
            if key not in found:
                raise ConfigError(f"{key}= is missing: {example}")
        action(found)
    except (ConfigError, RunError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
