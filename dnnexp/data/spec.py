"""What the task and every later reader (eval, predict, export) know of a run's data, in one
object: shapes, the splits' fingerprints, the statistics the inputs and targets were
standardized with. Plain containers only: it is stored in each checkpoint's hyperparameters,
which load with `torch.load(weights_only=True)`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DataSpec:
    """`target_stats`: the training split's target mean and std (regression); `input_stats`:
    the per-channel mean and std of uint8 images; `input_range`: the standardized inputs'
    valid range and raw unit (what adversarial examples are clipped to); `preprocess`: what a
    raw input needs before the model (`dnnexp predict`, `dnnexp export`); `fingerprint`: the
    three splits' hash; `test_fingerprint`: the test split's alone (an ensemble's members share
    it, though their training splits may differ)."""

    input_shape: list[int]
    num_outputs: int
    fingerprint: str = ""
    test_fingerprint: str = ""
    target_stats: dict | None = None
    input_stats: dict | None = None
    classes: list[str] | None = None
    input_range: dict | None = None
    preprocess: dict | None = None
    vocab_size: int | None = None  # text: token ids below it

    def hparams(self) -> dict[str, Any]:
        """The hyperparameters a checkpoint stores, under the keys checkpoints have always
        used (`data_fingerprint` for the fingerprint)."""
        fields = dataclasses.asdict(self)
        fields["input_shape"] = list(self.input_shape)
        fields["data_fingerprint"] = fields.pop("fingerprint")
        return fields

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any]) -> DataSpec:
        """The data a checkpoint was trained on (older checkpoints: `num_classes`, fewer keys)."""
        return cls(
            input_shape=list(hparams["input_shape"]),
            num_outputs=hparams.get("num_outputs", hparams.get("num_classes")),
            fingerprint=hparams.get("data_fingerprint", ""),
            test_fingerprint=hparams.get("test_fingerprint", ""),
            target_stats=hparams.get("target_stats"),
            input_stats=hparams.get("input_stats"),
            classes=hparams.get("classes"),
            input_range=hparams.get("input_range"),
            preprocess=hparams.get("preprocess"),
            vocab_size=hparams.get("vocab_size"),
        )

    def replace(self, **changes: Any) -> DataSpec:
        return dataclasses.replace(self, **changes)
