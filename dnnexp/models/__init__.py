"""Model families and the registry that builds one from `cfg.model`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from dnnexp.models import cnn, densenet, mlp, recurrent, resnet, resnext

Builder = Callable[[Any, tuple[int, ...], int, float], nn.Module]

MODELS: dict[str, Builder] = {
    "mlp": mlp.build,
    "cnn": cnn.build,
    "resnet": resnet.build,
    "resnext": resnext.build,
    "densenet": densenet.build,
    "rnn": recurrent.build,
    "lstm": recurrent.build,
    "gru": recurrent.build,
}


def build_model(
    cfg: Any, input_shape: Sequence[int], num_classes: int, dropout: float
) -> nn.Module:
    """Build the model named by `cfg.name` for inputs of `input_shape` (no batch dimension)."""
    try:
        builder = MODELS[cfg.name]
    except KeyError:
        raise ValueError(f"unknown model {cfg.name!r}; choose one of {sorted(MODELS)}") from None
    return builder(cfg, tuple(input_shape), num_classes, dropout)
