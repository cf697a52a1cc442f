"""Turn config errors (ours, Hydra's, OmegaConf's) into one line that names the key and the fix."""

from __future__ import annotations

import dataclasses
import difflib

from hydra.errors import CompactHydraException
from omegaconf.errors import OmegaConfBaseException


class ConfigError(CompactHydraException):
    """A bad config value or combination; Hydra prints its message as one line and exits 1."""


class RunError(CompactHydraException):
    """A run that cannot start or go on (bad checkpoint, run dir in use); printed as one line."""


class RunStopped(RunError):
    """A run that a failed write stopped (a full disk, a quota, a vanished mount): its message
    names the file and the reason and says how to go on; it is resumable, and a sweep stops
    with it (the next job would fail the same way)."""


def describe_omegaconf_error(
    err: OmegaConfBaseException, prefix: str = "", schema: type | None = None
) -> str:
    """One line for an OmegaConf error; `schema` (a dataclass) lists the allowed keys."""
    key = str(getattr(err, "full_key", None) or getattr(err, "key", None) or "")
    full = ".".join(part for part in (prefix, key) if part)
    msg = str(getattr(err, "msg", None) or err).splitlines()[0]
    if "not in struct" in msg or ("Key '" in msg and "not in" in msg):
        allowed = [f.name for f in dataclasses.fields(schema)] if schema else []
        return unknown_key_message(full, allowed)
    return f"{full}: {msg}"


def unknown_key_message(full_key: str, allowed: list[str]) -> str:
    from dnnexp.config.schema import ELSEWHERE

    if full_key.lstrip("+~") in ELSEWHERE:  # a knob dnnexp has under another name
        return f"{full_key}: not a dnnexp key; {ELSEWHERE[full_key.lstrip('+~')]}"
    parent, _, leaf = full_key.rpartition(".")
    where = f" in '{parent}'" if parent else " at the top level"
    close = difflib.get_close_matches(leaf, allowed, n=1)
    hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
    listed = f"; allowed: {', '.join(allowed)}" if allowed else ""
    return f"{full_key}: no such key{where}{hint}{listed}"
