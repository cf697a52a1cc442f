"""Magnitude pruning (`prune.*`): the weights of smallest magnitude are set to zero and kept
there for the rest of training.

What is pruned: the weight of every Linear and Conv layer and the weight matrices of recurrent
layers (RNN/LSTM/GRU `weight_ih_l*`, `weight_hh_l*`); biases and norm parameters stay dense.
`prune.scope=global` ranks all of them together (one threshold: layers with many small weights
lose more), `layer` prunes `amount` of each. The masks come from `torch.nn.utils.prune`'s
`L1Unstructured` (its `global_unstructured` is the same mask over the concatenated weights).

The parameters stay plain tensors named `weight`: no `weight_orig`/`weight_mask`
reparametrization (which `prune.l1_unstructured` and Lightning's `ModelPruning` install until
`prune.remove`): every checkpoint (best.ckpt, last.ckpt, the copies AtomicCheckpointIO holds)
holds the pruned weights as zeros under the model's own names, so `dnnexp eval`, `init_from`,
the test of the best checkpoint after fit and `resume` load it into a plain model, and the
names `init_from` and `freeze=backbone` keep stay valid. The mask holds after every optimizer
step (a post-step hook on the optimizer zeroes the pruned entries again, also inside one
Lightning call of `trainer.steps_per_call` steps; ModelPruning acts at epoch ends only) and
the pruned entries get no gradient (a hook on each weight), as under the reparametrization, at
two multiplications per pruned tensor per step (within the noise of a digits MLP step here). A
resumed run takes its mask back from the zeros in its checkpoint: pruning the same sparsity
again selects exactly those.

Schedules: `once` prunes when fit starts (meant for `init_from=RUN_DIR`: a trained model, then
fine-tuned with the mask kept); `gradual` raises the sparsity at the start of each epoch with
Zhu & Gupta's cubic schedule s(e) = amount x (1 - (1 - e / E)^3), E = `prune.end_epoch` (null:
max_epochs - 1), so training goes on at the full `amount` from epoch E. Under `gradual` the best
checkpoint (and early stopping) only count validations from epoch E on: a less sparse model of
the ramp is never the one tested.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from omegaconf import DictConfig
from torch import nn
from torch.nn.utils import prune as torch_prune

from dnnexp.config.errors import RunError
from dnnexp.config.validate import prune_end_epoch
from dnnexp.utils.run_files import BEST_CKPT, SUMMARY

PRUNED_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every weight that pruning acts on, in the model's order."""
    found = []
    for prefix, module in model.named_modules():
        if isinstance(module, PRUNED_LAYERS):
            names = ["weight"]
        elif isinstance(module, nn.RNNBase):
            names = [n for n, _ in module.named_parameters(recurse=False) if n.startswith("weight")]
        else:
            continue
        for name in names:
            param = module._parameters.get(name)
            if param is not None:
                found.append((f"{prefix}.{name}" if prefix else name, param))
    return found


def compute_masks(
    weights: list[torch.Tensor],
    amount: float,
    scope: str,
    previous: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Masks like torch's (1 = kept, 0 = pruned; in each weight's dtype and device): the
    `amount` of smallest magnitude over all `weights` together (scope global) or in each
    (layer); what `previous` masks pruned stays pruned."""
    with torch.no_grad():
        flat = [w.detach().reshape(-1) for w in weights]
        old = [m.reshape(-1) for m in previous] if previous else None
        method = torch_prune.L1Unstructured(amount)
        if scope == "layer":
            masks = [
                method.compute_mask(w, old[i] if old else torch.ones_like(w))
                for i, w in enumerate(flat)
            ]
        else:
            joined = torch.cat(flat)
            default = torch.cat(old) if old else torch.ones_like(joined)
            masks = list(method.compute_mask(joined, default).split([w.numel() for w in flat]))
    return [m.view(w.shape) for m, w in zip(masks, weights, strict=True)]


def target_sparsity(amount: float, epoch: int, end: int) -> float:
    """Zhu & Gupta's cubic schedule from 0 at epoch 0 to `amount` at epoch `end`."""
    if epoch >= end:
        return amount
    return amount * (1.0 - (1.0 - epoch / end) ** 3)


class MagnitudePruning(Callback):
    """Prunes `pl_module.model` to the scheduled sparsity and keeps the pruned weights at zero
    after every optimizer step (see the module's docstring)."""

    def __init__(self, amount: float, scope: str, schedule: str, end: int) -> None:
        self.amount, self.scope, self.schedule, self.end = amount, scope, schedule, end
        self.applied = 0.0  # the sparsity the masks were last computed for
        self._weights: list[nn.Parameter] = []
        self._masks: list[torch.Tensor] | None = None
        self._handles: list[Any] = []

    @classmethod
    def from_config(cls, cfg: DictConfig) -> MagnitudePruning:
        p = cfg.prune
        return cls(float(p.amount), p.scope, p.schedule, prune_end_epoch(cfg))

    def target(self, epoch: int) -> float:
        if self.schedule == "once":
            return self.amount
        return target_sparsity(self.amount, epoch, self.end)

    # ------------------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """The optimizers exist (and the weights are loaded: init_from, or a resume's)."""
        self._weights = [p for _, p in prunable_weights(pl_module.model)]
        # privacy=dp's DPOptimizer steps the run's own optimizer, which holds the hooks
        optimizers = [getattr(o, "original_optimizer", o) for o in trainer.optimizers]
        self._handles = [o.register_step_post_hook(self._after_step) for o in optimizers]
        for i, weight in enumerate(self._weights):
            self._handles.append(weight.register_hook(self._masked_grad(i)))
        if self.schedule == "once":  # before the sanity check, if there is one
            self.prune_to(self.amount)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """A resumed run (its epoch restored now; mid-epoch it skips on_train_epoch_start)."""
        self.prune_to(self.target(trainer.current_epoch))

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        epoch = trainer.current_epoch
        self.prune_to(self.target(epoch))
        if self.schedule == "gradual" and epoch == self.end:
            for callback in trainer.callbacks:  # the best model is one at the full sparsity
                if isinstance(callback, ModelCheckpoint):
                    _forget_best(callback)
                elif isinstance(callback, EarlyStopping):
                    _restart_patience(callback)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """During the ramp the validation loss rises on purpose: early stopping (which comes
        after this callback) starts afresh at each validation, so it cannot stop the ramp."""
        ramp = self.schedule == "gradual" and trainer.current_epoch < self.end
        if ramp and not trainer.sanity_checking:
            for callback in trainer.callbacks:
                if isinstance(callback, EarlyStopping):
                    _restart_patience(callback)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.teardown_hooks()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.teardown_hooks()

    def teardown_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # -------------------------------------------------------------------------- masking
    def prune_to(self, sparsity: float) -> None:
        """Compute the masks for `sparsity` (keeping those pruned before) and apply them."""
        if sparsity <= 0 or sparsity == self.applied or not self._weights:
            return
        self._masks = compute_masks(self._weights, sparsity, self.scope, self._masks)
        self.applied = sparsity
        self._apply()

    @torch.no_grad()
    def _apply(self) -> None:
        """A multiplication: much faster than masked_fill_ on the CPU, and it runs after
        every optimizer step."""
        for weight, mask in zip(self._weights, self._masks or [], strict=False):
            weight.mul_(mask)

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._masks is not None:
            self._apply()

    def _masked_grad(self, i: int) -> Any:
        def hook(grad: torch.Tensor) -> torch.Tensor | None:
            masks = self._masks
            return None if masks is None else grad * masks[i]

        return hook


def _forget_best(callback: ModelCheckpoint) -> None:
    """The checkpoint callback's tracking of the best model, as before the first validation:
    the next validation writes best.ckpt whatever its score."""
    callback.best_k_models = {}
    callback.kth_best_model_path = ""
    callback.best_model_score = None
    callback.best_model_path = ""
    callback.kth_value = torch.tensor(torch.inf if callback.mode == "min" else -torch.inf)


def _restart_patience(callback: EarlyStopping) -> None:
    callback.wait_count = 0
    callback.best_score = torch.tensor(torch.inf if callback.mode == "min" else -torch.inf)


# ------------------------------------------------------------------------------- summary.json
def measure(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, Any]:
    """Sparsity of the pruned weights and nonzero parameters of `state` (a state dict of
    `model`'s names, without the `model.` prefix)."""
    pruned = [state[n] for n, _ in prunable_weights(model) if n in state]
    params = [state[n] for n, _ in model.named_parameters() if n in state]
    size = sum(t.numel() for t in pruned)
    zeros = sum(int((t == 0).sum()) for t in pruned)
    return {
        "sparsity": round(zeros / size, 6) if size else 0.0,
        "pruned_layers": len(pruned),
        "pruned_weights": size,
        "nonzero_params": sum(int(t.count_nonzero()) for t in params),
        "params": sum(t.numel() for t in params),
    }


def file_sizes(path: Path) -> dict[str, int]:
    """A checkpoint's bytes on disk and gzip-compressed (level 6): dense storage keeps its
    size; the zeros show in the compressed one."""
    counter = _CountingSink()
    with path.open("rb") as f, gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6) as gz:
        while chunk := f.read(1 << 20):
            gz.write(chunk)
    return {"checkpoint_bytes": path.stat().st_size, "checkpoint_gzip_bytes": counter.size}


class _CountingSink:
    """A write-only file that only counts what it is given."""

    size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def model_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    prefix = "model."
    return {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def summarize(
    cfg: DictConfig, model: nn.Module, best: Path | None, fingerprint: str
) -> dict[str, Any]:
    """summary.json's `pruning`: the knobs, what best.ckpt (else the model in memory) holds,
    its sizes, and `before`: the init_from run's (see `source_before`)."""
    from dnnexp.models.weights import load_checkpoint

    p = cfg.prune
    entry: dict[str, Any] = {"amount": p.amount, "scope": p.scope, "schedule": p.schedule}
    if p.schedule == "gradual":
        entry["end_epoch"] = prune_end_epoch(cfg)
    if best is not None and best.is_file():
        entry.update(measure(model_state(load_checkpoint(best)), model))
        entry.update(file_sizes(best))
    else:
        entry.update(measure(dict(model.state_dict()), model))
    before = source_before(cfg.get("init_from"), model, fingerprint)
    if before is not None:
        entry["before"] = before
    return entry


def source_before(init_from: str | None, model: nn.Module, fingerprint: str) -> dict | None:
    """The init_from run's test metrics (from its summary.json) and the same measures of its
    best.ckpt, when init_from is a run dir (or its checkpoints/best.ckpt) whose checkpoint was
    trained on the same data splits (the data fingerprint in its hyperparameters equals this
    run's): otherwise its metrics would not be comparable, and there is no `before`."""
    from dnnexp.models.weights import load_run_weights

    if not init_from:
        return None
    path = Path(init_from)
    run_dir = path if path.is_dir() else path.parent.parent
    if path.is_file() and (path.name != "best.ckpt" or path.parent.name != "checkpoints"):
        return None
    try:
        summary = json.loads((run_dir / SUMMARY).read_text())
        ckpt = load_run_weights("init_from", str(init_from))
    except (OSError, ValueError, RunError):
        return None
    if ckpt["hyper_parameters"].get("data_fingerprint") != fingerprint:
        return None
    metrics = summary.get("metrics") if isinstance(summary, dict) else None
    if summary.get("status") != "completed" or not isinstance(metrics, dict):
        return None
    return {
        "run": str(run_dir.resolve()),
        "metrics": {k: v for k, v in metrics.items() if k.startswith("test/")},
        **measure(model_state(ckpt), model),
        **file_sizes(run_dir / BEST_CKPT),
    }


def footer_lines(entry: dict[str, Any], metric: str) -> dict[str, str]:
    """What the terminal shows of summary.json's `pruning` under the metrics table."""
    lines = {
        "pruned": (
            f"sparsity {entry['sparsity']:.3f} of {entry['pruned_weights']:,} weights in"
            f" {entry['pruned_layers']} layers (amount {entry['amount']}, {entry['scope']},"
            f" {entry['schedule']}); {entry['nonzero_params']:,} of {entry['params']:,}"
            " parameters nonzero"
        )
    }
    before = entry.get("before") or {}
    if "checkpoint_bytes" in entry:
        sizes = f"{entry['checkpoint_bytes']:,} bytes, {entry['checkpoint_gzip_bytes']:,} gzipped"
        if "checkpoint_bytes" in before:
            sizes += (
                f" (before: {before['checkpoint_bytes']:,} bytes,"
                f" {before['checkpoint_gzip_bytes']:,} gzipped)"
            )
        lines["best.ckpt"] = sizes
    if metric in before.get("metrics", {}):
        lines["before"] = f"{metric} {before['metrics'][metric]:.4f} ({before['run']})"
    return lines
