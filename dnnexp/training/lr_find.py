"""The learning-rate range test (Smith 2017; Lightning's `Tuner.lr_find`, fastai's `lr_find`):
the learning rate grows exponentially from `lr_find.min_lr` to `lr_find.max_lr` over
`lr_find.steps` optimizer steps of the run's own loss (its batch transforms, objective and loss
terms: `TrainingModule._loss`), the loss is smoothed (an exponential average, bias-corrected),
the ramp stops once the smoothed loss exceeds `lr_find.divergence` times its lowest, and the
suggestion is the rate where the smoothed loss falls fastest (steepest descent, as Lightning's).

It trains a throwaway copy of the model: the run that follows starts from the same initial
weights as it would without the test (the seed is set again before it builds its model).
`lr_find.mode=only` (`dnnexp lr-find`) writes lr_find.json and lr_find.png into its dir and
stops; `apply` writes them into the run dir and trains with `optimizer.lr` = the suggestion.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from dnnexp.data.datamodule import ArrayDataModule
from dnnexp.tasks.module import TrainingModule
from dnnexp.tasks.optim import build_optimizer, param_groups
from dnnexp.utils.run_files import replacing, write_json

LR_FIND_JSON, LR_FIND_PNG = "lr_find.json", "lr_find.png"
SKIP_BEGIN, SKIP_END = 10, 1  # the suggestion ignores the ramp's first and last points (Lightning)


def range_test(cfg: DictConfig, data: ArrayDataModule) -> dict[str, Any]:
    """The test on `data`'s training split (set up), on the run's device when it is one GPU or
    the CPU (fp32: the range test runs no DDP and no mixed precision)."""
    knobs = cfg.lr_find
    L.seed_everything(cfg.seed, workers=False, verbose=False)
    task = TrainingModule(OmegaConf.to_container(cfg, resolve=True), data.spec)
    device = torch.device(
        "cuda"
        if torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda")
        else "cpu"
    )
    task.to(device).train()
    groups = param_groups(task.model, cfg.reg.weight_decay)
    optimizer = build_optimizer(cfg.optimizer, groups)
    steps, low, high = int(knobs.steps), float(knobs.min_lr), float(knobs.max_lr)
    beta, limit = float(knobs.smoothing), float(knobs.divergence)
    lrs: list[float] = []
    losses: list[float] = []  # smoothed
    average, best, stopped = 0.0, math.inf, "steps"
    for i, (x, y, *extra) in enumerate(_batches(data, device, steps)):
        lr = low * (high / low) ** (i / max(1, steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss = task._loss(x, y, *extra)
        value = float(loss.detach())
        if not math.isfinite(value):
            stopped = "non-finite loss"
            break
        loss.backward()
        if cfg.reg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(task.model.parameters(), float(cfg.reg.grad_clip))
        optimizer.step()
        average = beta * average + (1 - beta) * value
        smoothed = average / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if i > 0 and smoothed > limit * best:
            stopped = f"divergence (smoothed loss > {limit:g} x its lowest)"
            break
    suggestion = suggest(lrs, losses)
    return {
        "suggestion": suggestion,
        "min_lr": low,
        "max_lr": high,
        "steps": len(lrs),
        "stopped_by": stopped,
        "smoothing": beta,
        "lr": lrs,
        "loss": losses,
    }


def _batches(data: ArrayDataModule, device: torch.device, steps: int) -> Any:
    """`steps` training batches of the run's size, epoch after epoch (each shuffled)."""
    loader = data.train_dataloader()
    size, done, epoch = loader.batch_size, 0, 0
    while True:
        loader.sampler.set_epoch(epoch)
        for item in loader:
            item = [t.to(device) for t in item]
            for start in range(0, len(item[1]), size):
                yield [t[start : start + size] for t in item]
                done += 1
                if done == steps:
                    return
        epoch += 1


def suggest(lrs: list[float], losses: list[float]) -> float | None:
    """The rate at the steepest descent of the smoothed loss (over the log-spaced steps), the
    first SKIP_BEGIN and last SKIP_END points left out; None when too few points remain."""
    if len(losses) < SKIP_BEGIN + SKIP_END + 2:
        return None
    part = torch.tensor(losses[SKIP_BEGIN:-SKIP_END], dtype=torch.float64)
    slope = torch.gradient(part)[0]
    return float(lrs[SKIP_BEGIN + int(slope.argmin())])


def write_results(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """lr_find.json (every point and the suggestion) and lr_find.png (loss against lr, log
    scale, the suggestion marked)."""
    from dnnexp.utils.plotting import pyplot

    write_json(out_dir / LR_FIND_JSON, result)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result["lr"], result["loss"])
    if result["suggestion"] is not None:
        ax.axvline(result["suggestion"], color="tab:red", linestyle="--")
        ax.set_title(f"suggested lr {result['suggestion']:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    fig.tight_layout()
    png = out_dir / LR_FIND_PNG
    try:
        with replacing(png) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return [out_dir / LR_FIND_JSON, png]


def no_suggestion(result: dict[str, Any]) -> str:
    """The line for a ramp that ended too soon for a suggestion."""
    return (
        f"lr_find: no suggestion: the ramp stopped after {result['steps']} steps"
        f" ({result['stopped_by']}); lower lr_find.max_lr or raise lr_find.steps"
    )


def apply_suggestion(cfg: DictConfig, data: ArrayDataModule, run_dir: Path) -> dict[str, Any]:
    """`lr_find.mode=apply`: the test in the run dir (once: a resumed run reads its
    lr_find.json), then `optimizer.lr` set to its suggestion; what summary.json records."""
    import json

    from dnnexp.config.errors import RunError

    saved = run_dir / LR_FIND_JSON
    if cfg.get("resume") and saved.is_file():
        result = json.loads(saved.read_text())
    else:
        result = range_test(cfg, data)
        write_results(result, run_dir)
    if result["suggestion"] is None:
        raise RunError(no_suggestion(result))
    cfg.optimizer.lr = result["suggestion"]
    return {key: result[key] for key in ("suggestion", "min_lr", "max_lr", "steps", "stopped_by")}


def run_only(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """`dnnexp lr-find`: the test alone; its files in `out_dir`, one line on the terminal."""
    from rich.markup import escape

    from dnnexp.utils import console
    from dnnexp.utils.quiet import silence_lightning_noise

    silence_lightning_noise()
    data = ArrayDataModule.for_run(cfg)
    data.setup()
    result = range_test(cfg, data)
    written = write_results(result, out_dir)
    if result["suggestion"] is None:
        line = no_suggestion(result)
    else:
        line = (
            f"suggested optimizer.lr={result['suggestion']:.3g} (steepest descent of the smoothed"
            f" loss, {result['steps']} steps, stopped by {result['stopped_by']}); train with it:"
            " add optimizer.lr=... or lr_find.mode=apply to dnnexp train"
        )
    console.console.print(escape(line), soft_wrap=True)
    console.console.print(escape(f"wrote {', '.join(p.name for p in written)} in {out_dir}"))
    return result
