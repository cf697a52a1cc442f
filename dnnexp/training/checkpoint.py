"""Checkpoints: loaded safely (`weights_only=True` always, one-line errors for bad files),
written atomically and at most every `trainer.checkpoint_interval_s`, and carrying the RNG
states an exact resume needs."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from dnnexp.utils.run_files import writing

_UMASK = os.umask(0o022)  # read once (os.umask can only read it by setting it), then put back
os.umask(_UMASK)
# checkpoint entries Lightning builds anew for each save and never changes after (no tensors):
# a checkpoint held in memory shares them instead of copying ~300 small containers
BUILT_FRESH = frozenset({"loops", "hyper_parameters", "hparams_name", "dnnexp_history"})


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints atomically and no more often than every `interval_s` seconds.

    Atomic: each file is written to a temporary name in the same directory, then renamed over
    the old one, so a kill in the middle of a save never leaves a truncated last.ckpt or
    best.ckpt.

    Rate-limited: a save that comes sooner than `interval_s` after the last write is kept as an
    in-memory copy (tensors cloned to the CPU) and written at the next save that is due, when
    the trainer tears down (the end of fit, an error, Ctrl-C or SIGTERM) or before that file is
    read. On small data an epoch can take less than two `torch.save` calls, so writing
    best.ckpt and last.ckpt after every epoch would halve the training speed; when epochs are
    longer than the interval, every epoch is written as it ends. Only a SIGKILL or a power cut
    can lose the unwritten epochs, at most `interval_s` seconds of training (an interruption
    that tears down loses at most BestAndLastCheckpoint.HOLD_INTERVAL_S). `interval_s=0`
    writes every save at once.
    """

    def __init__(self, interval_s: float = 0.0, hold_dir: Path | None = None) -> None:
        """`hold_dir`: only checkpoints in it are held; others, such as the weights ddp_spawn
        hands back to the main process through a temporary file, are written at once."""
        super().__init__()
        self.interval_s = interval_s
        self.hold_dir = None if hold_dir is None else Path(hold_dir).resolve()
        self._pending: dict[Path, dict[str, Any]] = {}  # in save order: best before last
        self.last_write = time.monotonic()
        self._written_step: tuple[Any, Any] | None = None
        self._copied_step: tuple[Any, Any] | None = None
        self._copies: dict = {}

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        path = Path(path)
        if self.hold_dir is not None and path.resolve().parent != self.hold_dir:
            _write_atomically(checkpoint, path)  # not a run checkpoint: never held
            return
        step = (checkpoint.get("epoch"), checkpoint.get("global_step"))
        # best.ckpt and last.ckpt of one step are written together, or held together
        due = step == self._written_step or time.monotonic() - self.last_write >= self.interval_s
        if due:
            self._pending.pop(path, None)
            self.flush()
            _write_atomically(checkpoint, path)
            self.last_write = time.monotonic()
            self._written_step = step
        else:  # training goes on changing these tensors in place: keep a copy
            if step != self._copied_step:  # best.ckpt and last.ckpt of one step share copies
                self._copied_step, self._copies = step, {}
            self._pending.pop(path, None)  # re-inserted last, so files are written in save order
            self._pending[path] = {
                key: value if key in BUILT_FRESH else _copy_to_cpu(value, self._copies)
                for key, value in checkpoint.items()
            }

    def flush(self) -> None:
        """Write every checkpoint still held in memory. If one cannot be written (a full disk),
        the others are dropped too: the files on disk stay the last good ones."""
        while self._pending:
            path = next(iter(self._pending))
            checkpoint = self._pending.pop(path)
            try:
                _write_atomically(checkpoint, path)
            except BaseException:
                self._pending.clear()
                raise
        self.last_write = time.monotonic()

    def load_checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        self.flush()
        return super().load_checkpoint(*args, **kwargs)

    def remove_checkpoint(self, path: Any) -> None:
        self._pending.pop(Path(path), None)
        super().remove_checkpoint(path)

    def teardown(self) -> None:
        self.flush()


class BestAndLastCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose best.ckpt holds the best epoch's weights and whose last.ckpt holds
    everything a resume needs from the latest epoch.

    - best.ckpt is weights-only (Lightning's `save_weights_only`: weights, loop counters,
      hyperparameters and history; no optimizer or callback state): it is what `eval`, the
      test split and transfer learning read. With Adam that leaves out two thirds of the
      file, and of the cost of collecting and copying the state at every new best.
    - Lightning >= 2.6 writes last.ckpt only at steps where it also writes a top-k checkpoint,
      so last.ckpt would be a copy of best.ckpt and a resume would restart from the best epoch,
      not the latest: here last.ckpt is saved at every save point.
    - While AtomicCheckpointIO holds saves in memory, last.ckpt's state is taken at most every
      `HOLD_INTERVAL_S` seconds, and always at the final epoch: it only matters if the run is
      interrupted (Ctrl-C, SIGTERM, an error), which then loses at most that much training,
      and taking it costs a tenth of a digits epoch.
    """

    HOLD_INTERVAL_S = 1.0
    _last_handled_step: int | None = None  # last.ckpt saved or held back at this step
    _last_taken = float("-inf")  # time.monotonic() when last.ckpt's state was last taken

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """last.ckpt at the end of every epoch, also of one without a validation
        (check_val_every_n_epoch > 1) or whose last validation came before its last batch."""
        super().on_train_epoch_end(trainer, pl_module)
        self._save_last_if_skipped(trainer)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Lightning 2.6 saves a missing last.ckpt here even in a fast_dev_run, which is to
        write no checkpoints."""
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_skipped(trainer)

    def _save_last_if_skipped(self, trainer: Any) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        if (
            self.save_last
            and self._last_handled_step != trainer.global_step
            and trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
            and not trainer.fast_dev_run
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _monitor_candidates(self, trainer: Any) -> dict[str, torch.Tensor]:
        """Lightning deep-copies all callback metrics for each save point; the task publishes
        new tensors each epoch, so clones are enough."""
        candidates = {
            key: value.detach().clone() if isinstance(value, torch.Tensor) else value
            for key, value in trainer.callback_metrics.items()
        }
        for key, value in (("epoch", trainer.current_epoch), ("step", trainer.global_step)):
            logged = candidates.get(key)  # as in Lightning: a logged value, cast to int
            is_tensor = isinstance(logged, torch.Tensor)
            candidates[key] = logged.int() if is_tensor else torch.tensor(value)
        return candidates

    def _save_last_checkpoint(self, trainer: Any, monitor_candidates: dict) -> None:
        self._last_handled_step = trainer.global_step  # decided once per step
        if self._last_can_wait(trainer):
            return
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_taken = time.monotonic()

    def _last_can_wait(self, trainer: Any) -> bool:
        """True where this step's last.ckpt would only be held in memory, one was taken less
        than HOLD_INTERVAL_S ago, and training goes on. One process only: every DDP rank must
        take the same branch (a save has a barrier), and their clocks differ."""
        io = trainer.strategy.checkpoint_io
        now = time.monotonic()
        return (
            isinstance(io, AtomicCheckpointIO)
            and trainer.world_size == 1
            and now - io.last_write < io.interval_s  # the write is not due
            and now - self._last_taken < self.HOLD_INTERVAL_S
            and not _final_epoch(trainer)
        )

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        self.save_weights_only = filepath != self.last_model_path  # set before a last save
        super()._save_checkpoint(trainer, filepath)


def _final_epoch(trainer: Any) -> bool:
    """Whether training stops after this epoch (max_epochs, max_steps or a callback's stop)."""
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps  # -1 or None: no limit
    return (
        trainer.should_stop
        or (max_epochs is not None and 0 <= max_epochs <= trainer.current_epoch + 1)
        or (max_steps is not None and 0 <= max_steps <= trainer.global_step)
    )


def _write_atomically(checkpoint: dict[str, Any], path: Path) -> None:
    """A failed write (a full disk: torch.save raises a RuntimeError from the OSError) leaves
    no temporary file and the earlier file as it was, and raises WriteFailed naming the file."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would create it; mkstemp's files are 0600
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(tmp).unlink(missing_ok=True)
            raise


def _copy_to_cpu(obj: Any, copies: dict) -> Any:
    """A copy of a checkpoint's containers and tensors (on the CPU); other leaves are shared.

    `copies` maps a tensor's memory (pointer, dtype, shape, strides) to (tensor, copy): the
    best.ckpt and last.ckpt of one step hold the same weights, and they are copied once. The
    tensor is kept alive with its copy, so its memory cannot be reused by another tensor.
    """
    if isinstance(obj, torch.Tensor):
        key = (obj.data_ptr(), obj.dtype, obj.device, tuple(obj.shape), tuple(obj.stride()))
        if key not in copies:  # clone() is ~2x cheaper than to("cpu", copy=True) for a CPU tensor
            cpu = obj.device.type == "cpu"
            copies[key] = (obj, obj.detach().clone() if cpu else obj.detach().to("cpu", copy=True))
        return copies[key][1]
    if isinstance(obj, dict):
        return {key: _copy_to_cpu(value, copies) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy_to_cpu(value, copies) for value in obj)
    return obj


class RNGState(Callback):
    """Saves and restores the torch, numpy and Python RNG states with each checkpoint (Lightning
    does not), as plain containers so the checkpoint still loads with weights_only=True. With the
    per-(seed, epoch) shuffle of the loaders, a resumed run draws the same dropout masks and
    augmentations as an uninterrupted one."""

    def state_dict(self) -> dict[str, Any]:
        _, keys, pos, has_gauss, cached = np.random.get_state()
        version, state, gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "numpy": [
                torch.from_numpy(keys.astype(np.int64)),
                int(pos),
                int(has_gauss),
                float(cached),
            ],
            "python": [int(version), torch.from_numpy(np.array(state, dtype=np.int64)), gauss],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, values, gauss = state["python"]
        values = values.tolist() if isinstance(values, torch.Tensor) else values
        random.setstate((version, tuple(values), gauss))
