"""`dnnexp eval ckpt=PATH [key=value ...]`: rebuild a run's model and data from the config stored
in its checkpoint, evaluate on the test split, print the metrics and write them to JSON."""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = """\
usage: dnnexp eval ckpt=PATH [out=FILE.json] [attack=fgsm|pgd [attack.eps=E ...]] [key=value ...]

Evaluates a checkpoint on the test split of the data its run was trained on. The model and data
are rebuilt from the config stored in the checkpoint; key=value changes it (e.g.
data.eval_batch_size=256 trainer.accelerator=cpu). Metrics go to the terminal and to
out= (default: <run dir>/eval/<checkpoint name>.json).

attack=pgd (or fgsm, or [fgsm,pgd]) adds the accuracy under that L-inf attack (test/acc_pgd);
attack.eps (raw input units: digits' pixels 0..16, 8-bit images 0..255), attack.steps and
attack.alpha set it: they are the config's eval.attacks, eval.eps, eval.steps, eval.alpha.
"""


def main(args: list[str]) -> int:
    if not args or "-h" in args or "--help" in args:
        print(USAGE, end="")
        return 0 if args else 2
    from dnnexp.config.errors import ConfigError, RunError

    try:
        ckpt, out, overrides = _parse(args)
        from dnnexp.evaluation.evaluate import evaluate

        evaluate(ckpt, out, overrides)
    except (ConfigError, RunError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _parse(args: list[str]) -> tuple[Path, Path | None, list[str]]:
    from dnnexp.config.errors import ConfigError

    ckpt = out = None
    overrides = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(
                f"'{arg}' is not key=value; usage: dnnexp eval ckpt=PATH [key=value ...]"
            )
        if key == "ckpt":
            ckpt = Path(value) if value.strip() else None
        elif key == "out":
            out = Path(value)
        elif key == "attack":  # eval.attacks, one or a list
            overrides.append(f"eval.attacks={value if value.startswith('[') else f'[{value}]'}")
        elif key.startswith("attack."):
            overrides.append(f"eval.{key[len('attack.') :]}={value}")
        else:
            overrides.append(arg)
    if ckpt is None:
        raise ConfigError(
            "ckpt= is missing: dnnexp eval ckpt=outputs/<date>/<time>/checkpoints/best.ckpt"
        )
    return ckpt, out, overrides
