"""`task.heads` of task=multitask: each head a target column, its kind, loss and weight, and a
name (its metrics are `val/<name>/acc`, ...). Import-light (no torch): the config layer, the
metrics table and every later reader share this one reading of a head.

A head is a mapping (`{column: stress, kind: classification, weight: 0.5}`) or, compactly, a
string `COLUMN[:KIND[:WEIGHT]]` (`stress`, `stress:classification`, `len:regression:0.5`); the
kind defaults to classification, the name to the column, the loss to the kind's own
(cross_entropy; mse), the weight to 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEAD_KINDS = ("classification", "regression")
HEAD_LOSSES = {"classification": ("cross_entropy",), "regression": ("mse", "huber", "l1")}
DEFAULT_LOSS = {kind: losses[0] for kind, losses in HEAD_LOSSES.items()}
COMPACT = "COLUMN[:KIND[:WEIGHT]]"


class HeadError(ValueError):
    """A head that cannot be read (the config layer turns it into a one-line ConfigError)."""


def expand(item: Any, index: int) -> dict[str, Any]:
    """A head as a plain dict of the keys it was given (a compact string split into them)."""
    if isinstance(item, str):
        parts = item.split(":")
        if len(parts) > 3 or not parts[0].strip():
            raise HeadError(
                f"task.heads[{index}]={item!r} is not {COMPACT} (e.g. stress:classification)"
                " or {column: C, kind: K, loss: L, weight: W, name: N}"
            )
        head: dict[str, Any] = {"column": parts[0].strip()}
        if len(parts) > 1:
            head["kind"] = parts[1].strip()
        if len(parts) > 2:
            try:
                head["weight"] = float(parts[2])
            except ValueError:
                raise HeadError(
                    f"task.heads[{index}]={item!r}: the weight {parts[2]!r} is not a number"
                ) from None
        return head
    if isinstance(item, Mapping):
        return {str(k): v for k, v in item.items()}
    raise HeadError(
        f"task.heads[{index}]={item!r} is neither {COMPACT} nor a mapping"
        " {column: C, kind: K, ...}"
    )


def complete(head: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults filled in: name = column, kind classification, the kind's loss, weight 1."""
    kind = head.get("kind") or "classification"
    return {
        "name": head.get("name") or head.get("column"),
        "column": head.get("column"),
        "kind": kind,
        "loss": head.get("loss") or DEFAULT_LOSS.get(kind, "mse"),
        "weight": float(head["weight"]) if head.get("weight") is not None else 1.0,
    }


def heads_of(task: Any) -> list[dict[str, Any]]:
    """The heads of a task config (a DictConfig, a dict; compact or full), completed; [] for a
    task without heads."""
    raw = _get(task, "heads") or []
    return [complete(expand(_plain(item), i)) for i, item in enumerate(raw)]


def head_score(kind: str) -> str:
    """A head's own headline metric: acc (classification) or r2 (regression)."""
    return "acc" if kind == "classification" else "r2"


def _get(task: Any, key: str) -> Any:
    if isinstance(task, str) or task is None:
        return None
    getter = getattr(task, "get", None)
    return getter(key) if getter is not None else getattr(task, key, None)


def _plain(item: Any) -> Any:
    """An OmegaConf node as a plain container (strings and dicts pass through)."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(item, DictConfig):
            return OmegaConf.to_container(item, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return item
