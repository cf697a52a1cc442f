"""The registry of model families: `@register("name")` on a family's `build` function."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

# build(cfg.model, input_shape without the batch dimension, outputs, dropout) -> module; a family
# that reads token ids also takes `vocab_size=` (given only for data=text)
Builder = Callable[..., nn.Module]
MODELS: dict[str, Builder] = {}


def register(*names: str) -> Callable[[Builder], Builder]:
    """Register a family's builder under its `model.name`(s)."""

    def add(build: Builder) -> Builder:
        for name in names:
            MODELS[name] = build
        return build

    return add
