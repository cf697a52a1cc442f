"""The registry of model families: `@register("name")` on a family's `build` function."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

# build(cfg.model, input_shape without the batch dimension, outputs, dropout) -> module; a family
# that reads token ids also takes `vocab_size=` (given only for data=text)
Builder = Callable[..., nn.Module]
MODELS: dict[str, Builder] = {}  # one output vector per input (classification, regression)
DECODERS: dict[str, Builder] = {}  # encoder-decoders emitting token sequences (task=seq2seq)


def register(*names: str, decoder: bool = False) -> Callable[[Builder], Builder]:
    """Register a family's builder under its `model.name`(s); `decoder=True`: its
    encoder-decoder form, built under task=seq2seq (`outputs` = the target vocabulary)."""

    def add(build: Builder) -> Builder:
        for name in names:
            (DECODERS if decoder else MODELS)[name] = build
        return build

    return add
