"""Model families, one per module, each registered with `@register` from `registry.py`.

Every module of this package is imported here, so a new family is its module, its
`conf/model/<name>.yaml` and its schema dataclass (`config/schema.py`, `@model_schema`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from typing import Any

from torch import nn

from dnnexp.config.schema import MODEL_SCHEMAS, models_reading
from dnnexp.models.registry import DECODERS, MODELS, register

__all__ = ["DECODERS", "MODELS", "build_model", "register"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def build_model(
    cfg: Any,
    input_shape: Sequence[int],
    num_outputs: int,
    dropout: float,
    vocab_size: int | None = None,
    decoder: bool = False,
) -> nn.Module:
    """Build the model named by `cfg.name` for inputs of `input_shape` (no batch dimension),
    with `num_outputs` outputs (classes, or regression targets); `vocab_size`: the inputs are
    token ids below it (data=text), read through an embedding. `decoder`: the family's
    encoder-decoder form (task=seq2seq), `num_outputs` its target vocabulary."""
    table = DECODERS if decoder else MODELS
    if cfg.name not in table:
        if cfg.name in MODELS or cfg.name in DECODERS:
            kind = "no encoder-decoder form" if decoder else "only an encoder-decoder form"
            raise ValueError(f"model={cfg.name} has {kind} (task=seq2seq builds that form)")
        raise ValueError(f"unknown model {cfg.name!r}; choose one of {sorted(table)}")
    builder = table[cfg.name]
    if vocab_size is not None:
        if not MODEL_SCHEMAS[cfg.name].tokens:
            raise ValueError(f"model={cfg.name} does not read token ids")
        return builder(cfg, tuple(input_shape), num_outputs, dropout, vocab_size=vocab_size)
    if MODEL_SCHEMAS[cfg.name].reads == "tokens":
        raise ValueError(f"model={cfg.name} reads token ids (data=text)")
    if len(input_shape) != 3 and MODEL_SCHEMAS[cfg.name].reads != "flat":
        raise ValueError(
            f"model={cfg.name} needs (channels, height, width) inputs, not {tuple(input_shape)}:"
            f" use model={' or model='.join(models_reading('flat'))} for tabular features"
        )
    return builder(cfg, tuple(input_shape), num_outputs, dropout)
