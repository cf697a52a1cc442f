"""`dnnexp eval ckpt=PATH [key=value ...]`: rebuild a run's model and data from the config stored
in its checkpoint, evaluate on the test split, print the metrics and write them to JSON."""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = """\
usage: dnnexp eval ckpt=PATH [out=FILE.json] [attack=fgsm|pgd [attack.eps=E ...]] [key=value ...]
       dnnexp eval ckpt=[A,B,...]|SWEEP_DIR ensemble=mean|vote [out=FILE.json]

Evaluates a checkpoint on the test split of the data its run was trained on. The model and data
are rebuilt from the config stored in the checkpoint; key=value changes it (e.g.
data.eval_batch_size=256 trainer.accelerator=cpu; the run's trainer.limit_test_batches holds
unless changed: trainer.limit_test_batches=1.0 scores the whole split). Metrics go to the
terminal and to out= (default: <run dir>/eval/<checkpoint name>.json).

attack=pgd (or fgsm, or [fgsm,pgd]) adds the accuracy under that L-inf attack (test/acc_pgd);
attack.eps (raw input units: digits' pixels 0..16, 8-bit images 0..255), attack.steps and
attack.alpha set it: they are the config's eval.attacks, eval.eps, eval.steps, eval.alpha.

Ensembles: ckpt=[A,B,...] (checkpoints or run dirs) or ckpt=SWEEP_DIR (its completed runs)
with ensemble=mean (the mean of the members' probabilities) or vote (majority vote) prints each
member's, the mean member's and the ensemble's test metrics (default out:
<the members' common dir>/ensemble_<mode>.json). Members must share inputs, classes and test
split. dnnexp export takes the same ckpt= and ensemble= to export the ensemble as one model.
"""


def main(args: list[str]) -> int:
    if not args or "-h" in args or "--help" in args:
        print(USAGE, end="")
        return 0 if args else 2
    from dnnexp.config.errors import ConfigError, RunError

    try:
        ckpt, out, overrides = _parse(args)
        ensemble = next((o.split("=", 1)[1] for o in overrides if o.startswith("ensemble=")), None)
        if ensemble is not None or _several(str(ckpt)):
            return _ensemble(str(ckpt), ensemble, out, overrides)
        from dnnexp.models.weights import checkpoint_path, load_checkpoint

        path = checkpoint_path("ckpt", ckpt)
        loaded = load_checkpoint(path)  # a bad file is one line before Lightning is imported
        from dnnexp.evaluation.evaluate import evaluate

        evaluate(path, out, overrides, loaded)
    except (ConfigError, RunError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _several(ckpt: str) -> bool:
    """A [list] of checkpoints, or a dir that is not one run's (a sweep dir)."""
    path = Path(ckpt)
    return ckpt.startswith("[") or (path.is_dir() and not (path / "checkpoints").is_dir())


def _ensemble(ckpt: str, ensemble: str | None, out: Path | None, overrides: list[str]) -> int:
    from dnnexp.config.errors import ConfigError

    others = [o for o in overrides if not o.startswith("ensemble=")]
    if others:
        raise ConfigError(f"{others[0]}: an ensemble takes only ckpt=, ensemble= and out=")
    if ensemble not in (None, "mean", "vote"):
        raise ConfigError(f"ensemble={ensemble}: allowed values are mean, vote")
    from dnnexp.inference.ensemble import evaluate_ensemble
    from dnnexp.inference.model import load_source

    evaluate_ensemble(load_source(ckpt, ensemble or "mean"), out)
    return 0


def _parse(args: list[str]) -> tuple[str, Path | None, list[str]]:
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
            ckpt = value if value.strip() else None
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
