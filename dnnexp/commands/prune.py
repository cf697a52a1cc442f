"""`dnnexp prune RUN_DIR amount=A [scope=global|layer] [epochs=N] [key=value ...]`: a new run
that starts from RUN_DIR's best.ckpt, prunes it by magnitude and fine-tunes it with the mask
kept. A thin wrapper of `dnnexp train`: the run's own overrides, then init_from=RUN_DIR
prune.amount=A prune.schedule=once trainer.max_epochs=N, then the key=value given here."""

from __future__ import annotations

import sys
from pathlib import Path

from dnnexp.utils.run_files import BEST_CKPT

USAGE = """\
usage: dnnexp prune RUN_DIR amount=A [scope=global|layer] [epochs=N] [key=value ...]

Prunes a trained run by weight magnitude and fine-tunes it, as a NEW run dir (RUN_DIR is only
read): dnnexp train with RUN_DIR's own overrides (.hydra/overrides.yaml) plus
init_from=RUN_DIR prune.amount=A prune.scope=S prune.schedule=once trainer.max_epochs=N and the
key=value given here (any dnnexp train override, e.g. optimizer.lr=1e-4 hydra.run.dir=DIR).

  amount=A      the share of weights set to zero, 0 < A < 1: the weights of every Linear and
                Conv layer and the weight matrices of RNN/LSTM/GRU layers (biases and norms
                stay dense)
  scope=S       global (default): one magnitude threshold over all those layers;
                layer: A of each layer's weights
  epochs=N      fine-tuning epochs with the mask kept; the best of them is tested (default: a
                third of RUN_DIR's trainer.max_epochs, at least 1: 10 for the default 30. On
                digits' default MLP that keeps test/acc within a point up to A=0.75; A=0.9 gets
                0.942 after 10 epochs, 0.981 after epochs=30)

The new run's summary.json has "pruning": the measured sparsity of the pruned weights, nonzero
and total parameters, best.ckpt's size and gzip-compressed size, and "before": RUN_DIR's test
metrics and the same measures. A sweep over amounts is a dnnexp train -m (add RUN_DIR's own
overrides, if it had any); its report plots the accuracy against the sparsity:
  dnnexp train -m init_from=RUN_DIR prune.amount=0.25,0.5,0.75,0.9 seed=0,1 trainer.max_epochs=10
  dnnexp report outputs/multirun/<date>/<time>
"""

OWN_KEYS = ("amount", "scope", "epochs")
# the source's overrides that this command sets itself, or that make no sense for the new run
DROPPED = (
    "init_from=",
    "resume=",
    "prune.",
    "trainer.max_epochs=",
    "freeze=",  # the source's own transfer: its backbone would stay frozen
    "freeze_epochs=",
    "optimizer.backbone_lr_ratio=",
    "sweep=",  # the source was a sweep's job or a search's trial
    "search.",
    "hydra.",
)


class PruneError(Exception):
    """Bad input: one line on stderr, exit status 2, nothing written."""


def main(args: list[str]) -> int:
    if not args or "-h" in args or "--help" in args:
        print(USAGE, end="")
        return 0 if args else 2
    try:
        argv = train_args(args)
    except PruneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from dnnexp.commands.train import main as train_main

    return train_main(argv)


def train_args(args: list[str]) -> list[str]:
    """The `dnnexp train` argv of `dnnexp prune ARGS`, or PruneError."""
    positional = [a for a in args if "=" not in a and not a.startswith("-")]
    if len(positional) != 1:
        given = f" (got {', '.join(positional)})" if positional else ""
        raise PruneError(f"give one RUN_DIR{given}: dnnexp prune RUN_DIR amount=0.5")
    flags = [a for a in args if a.startswith("-")]
    if flags:
        raise PruneError(
            f"{flags[0]}: dnnexp prune takes RUN_DIR and key=value only (a sweep over amounts:"
            " dnnexp train -m init_from=RUN_DIR prune.amount=0.25,0.5,0.75)"
        )
    run_dir = _run_dir(positional[0])
    own = {}
    extra = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            continue
        if key in OWN_KEYS:
            own[key] = value
        else:
            extra.append(arg)
    amount = _amount(own.get("amount"))
    scope = own.get("scope", "global")
    _check("scope", "scope", scope)
    epochs = _epochs(own["epochs"]) if "epochs" in own else default_epochs(run_dir)
    from omegaconf import OmegaConf

    earlier = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml"))
    given = {_key(a) for a in extra}  # set again here: the new value alone
    kept = [
        str(o)
        for o in earlier
        if not str(o).lstrip("+~").startswith(DROPPED) and _key(str(o)) not in given
    ]
    return [
        *_config_dirs(run_dir),
        *kept,
        f"init_from={run_dir}",
        f"prune.amount={amount}",
        f"prune.scope={scope}",
        "prune.schedule=once",
        f"trainer.max_epochs={epochs}",
        *extra,
    ]


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def _run_dir(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise PruneError(f"{value}: no such run dir")
    if not path.is_dir():
        raise PruneError(f"{value} is a file: give the run dir (the one holding checkpoints/)")
    if not (path / ".hydra" / "overrides.yaml").is_file():
        raise PruneError(f"{value}: not a dnnexp run dir (no .hydra/overrides.yaml there)")
    if not (path / BEST_CKPT).is_file():
        raise PruneError(f"{value}: no checkpoints/best.ckpt there (no epoch finished)")
    return path.resolve()


def _amount(value: str | None) -> float:
    if value is None:
        raise PruneError("amount= is missing: dnnexp prune RUN_DIR amount=0.5")
    try:
        amount = float(value)
    except ValueError:
        raise PruneError(f"amount={value}: expected a number between 0 and 1, e.g. 0.5") from None
    _check("amount", "amount", amount, gt=0)  # prune.amount's limits; 0 (off) prunes nothing
    return amount


def _check(name: str, key: str, value: object, **stricter: object) -> None:
    """An argument against its prune.* knob's limits in the schema (one line, PruneError)."""
    from dnnexp.config.errors import ConfigError
    from dnnexp.config.schema import PruneConfig
    from dnnexp.config.validate import check_knob

    try:
        check_knob(PruneConfig, name, key, value, **stricter)
    except ConfigError as err:
        raise PruneError(str(err)) from None


def _epochs(value: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        raise PruneError(f"epochs={value}: expected a whole number >= 1")
    return int(value)


def default_epochs(run_dir: Path) -> int:
    """A third of the source run's trainer.max_epochs, at least 1."""
    from omegaconf import OmegaConf

    try:
        epochs = int(OmegaConf.load(run_dir / ".hydra" / "config.yaml").trainer.max_epochs)
    except Exception:  # noqa: BLE001 - an unreadable config: the default run's 30 epochs
        epochs = 30
    return max(1, epochs // 3)


def _config_dirs(run_dir: Path) -> list[str]:
    """--config-dir DIR for each config dir the source run was given (its own groups and
    options), as recorded in its .hydra/hydra.yaml."""
    from omegaconf import OmegaConf

    try:
        sources = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.runtime.config_sources
    except Exception:  # noqa: BLE001 - no record: only the shipped groups
        return []
    dirs = []
    for source in sources:
        if source.provider == "command-line" and source.schema == "file":
            dirs += ["--config-dir", str(source.path)]
    return dirs
