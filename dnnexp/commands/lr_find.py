"""`dnnexp lr-find [overrides]`: the learning-rate range test of the run those overrides
describe (`dnnexp/training/lr_find.py`), as `dnnexp train lr_find.mode=only` into
outputs/lr_find/<date>/<time>/."""

from __future__ import annotations

USAGE = """\
usage: dnnexp lr-find [overrides...]

The learning-rate range test of the run `dnnexp train [overrides...]` would train: the rate grows
exponentially from lr_find.min_lr to lr_find.max_lr over lr_find.steps optimizer steps of the
run's own loss, on a throwaway copy of its model; the ramp stops when the smoothed loss diverges.
Suggests the rate where the smoothed loss falls fastest, and writes lr_find.json and
lr_find.png to outputs/lr_find/<date>/<time>/ (or hydra.run.dir=DIR).

examples:
  dnnexp lr-find model=cnn optimizer=sgd
  dnnexp lr-find data=text data.path=words.tsv model=gru lr_find.max_lr=0.1
  dnnexp train model=cnn lr_find.mode=apply      the test, then the run at its suggestion

knobs: lr_find.min_lr (1e-7), lr_find.max_lr (1.0), lr_find.steps (100),
  lr_find.smoothing (0.98), lr_find.divergence (4.0)
"""

# quoted: Hydra's override grammar takes interpolations with these characters in quotes only
RUN_DIR = "hydra.run.dir='${dnnexp.unique_dir:outputs/lr_find/${now:%Y-%m-%d}/${now:%H-%M-%S}}'"
SWEEP_DIR = (
    "hydra.sweep.dir="
    "'${dnnexp.unique_dir:outputs/lr_find/multirun/${now:%Y-%m-%d}/${now:%H-%M-%S}}'"
)


def main(args: list[str]) -> int:
    if "--help" in args or "-h" in args:
        print(USAGE, end="")
        return 0
    from dnnexp.commands.train import main as train_main

    given = {a.split("=", 1)[0] for a in args if "=" in a}
    defaults = [d for d in (RUN_DIR, SWEEP_DIR) if d.split("=", 1)[0] not in given]
    return train_main([*args, "lr_find.mode=only", *defaults])
