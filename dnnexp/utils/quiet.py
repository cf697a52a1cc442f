"""Silence exactly the Lightning messages that are noise for dnnexp users; keep the rest."""

from __future__ import annotations

import logging
import warnings


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")  # litmodels / litlogger adverts


def silence_lightning_noise() -> None:
    """Lightning's INFO lines (devices found, checkpoint restored) go to <run dir>/train.log
    through the root logger Hydra configured; the terminal keeps its warnings and errors; its
    adverts go nowhere."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                if name == "lightning":
                    handler.setLevel(logging.WARNING)
                else:  # the parent "lightning" handler shows what matters
                    logger.removeHandler(handler)
        logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
    # our loaders slice in-memory tensors: worker processes would only slow them down
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # we log once per epoch by design (a per-step log costs as much as an MLP step)
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    # a resumed run writes its checkpoints next to the ones it continues from
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # metrics.csv is written into the run dir, which already holds .hydra/ and summary.json
    warnings.filterwarnings(
        "ignore", message=r"Experiment logs directory .* exists and is not empty"
    )
    # the task all-reduces its epoch metrics itself (EpochStats.compute) before logging them
    warnings.filterwarnings(
        "ignore", message=r".*when logging on epoch level in distributed setting.*"
    )
    # an internal deprecation between lightning 2.6 and torch >= 2.10, nothing a user can act on
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Opacus bounding a PRV accountant's domain with RDP (a hint for RDP users, not an error)
    warnings.filterwarnings("ignore", message=r"Optimal order is the largest alpha")
