"""One training run: config -> data -> model/task -> trainer -> fit -> test best -> run dir.

Called by `dnnexp train` with a validated config and the run dir Hydra created (or, with
`resume=RUN_DIR`, the run dir being resumed).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.markup import escape

from dnnexp.config.errors import RunError, RunStopped
from dnnexp.config.heads import head_score, heads_of
from dnnexp.config.metrics import headline, lower_is_better, task_score
from dnnexp.config.validate import check_model_input
from dnnexp.data.datamodule import ArrayDataModule
from dnnexp.models.weights import load_checkpoint
from dnnexp.tasks.module import TrainingModule
from dnnexp.tasks.privacy import privacy_line
from dnnexp.training.ddp import job_scope
from dnnexp.training.model_card import MODEL_CARD, write_model_card
from dnnexp.training.trainer import build_trainer
from dnnexp.utils import console
from dnnexp.utils.quiet import silence_lightning_noise
from dnnexp.utils.run_files import (
    BEST_CKPT,
    LAST_CKPT,
    SUMMARY,
    SWEEP_ID,
    WriteFailed,
    code_version,
    versions,
    write_failure,
    write_json,
)

INTERRUPTED_EXIT = 130


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: stop, keep the checkpoints, say how to resume."""


def train(cfg: DictConfig, run_dir: Path, overrides: list[str], **options: Any) -> dict[str, Any]:
    """Train, test the best checkpoint, write summary.json and model_card.md (`_train`).

    Denormal floats (gradients through saturated gates, as a seq2seq GRU's after a few epochs)
    cost the CPU many times a normal operation: with `trainer.flush_denormal` they are zero
    for the run. Set before its first parallel torch op, since the thread pool's threads
    inherit the flag when they start; this thread's mode is restored after the run, so the
    caller's own floats (an embedding program, a test) keep IEEE subnormals."""
    before = _flushing_denormals()
    torch.set_flush_denormal(bool(cfg.trainer.get("flush_denormal", True)))
    try:
        return _train(cfg, run_dir, overrides, **options)
    finally:
        torch.set_flush_denormal(before)


def _flushing_denormals() -> bool:
    """Whether this thread computes denormal floats as zero now (float32's smallest normal is
    1.2e-38: 1e-40 is denormal)."""
    return bool((torch.full((1,), 1e-40) * 1.0).item() == 0.0)


def _train(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    config_hash: str | None = None,
    label: str | None = None,
    before_writing: Callable[[], None] | None = None,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """`label` (a sweep job's name) makes the terminal output one line per run instead of the
    config tree and metrics table. Every check that can refuse the run (bad data, a resume
    that does not fit) runs before the first write into run_dir; `before_writing` is called
    then (a resume records its config there). `callbacks`: more Lightning callbacks (a search
    trial's)."""
    silence_lightning_noise()
    run_dir = Path(run_dir)
    is_main = rank_zero_only.rank == 0
    resume_from = run_dir / LAST_CKPT if cfg.get("resume") else None
    if resume_from is not None and not resume_from.is_file():
        raise RunError(f"resume={cfg.resume}: no {LAST_CKPT} there, nothing to resume from")
    resume = None if resume_from is None else _read_resume(cfg, resume_from)
    data = ArrayDataModule.for_run(cfg)
    data.setup()  # bad data settings (e.g. a class left empty) fail before anything is written
    if resume is not None:  # what would fail in the middle of fit: refused before any write
        _check_resume(cfg, resume, data)
    kind = (
        "image"
        if len(data.input_shape) != 1
        else "tabular"
        if data.vocab_size is None
        else "tokens"
    )
    check_model_input(cfg.model.name, kind, cfg.data.name)  # files: known once they are read
    source = None  # init_from's checkpoint: a bad one is one line, before anything is written
    if cfg.init_from is not None and resume is None:
        from dnnexp.training.transfer import read_source

        source = read_source(cfg.init_from, list(data.input_shape))
    teacher = None
    if cfg.distill.teacher is not None:  # a bad teacher is one line, before anything is written
        from dnnexp.tasks.distillation import load_teacher

        teacher = load_teacher(
            cfg.distill.teacher, list(data.input_shape), data.num_outputs, data.fingerprint
        )
    earlier_trackers = _earlier_trackers(run_dir) if resume_from is not None else None
    started = time.perf_counter()
    summary: dict[str, Any] = {
        "status": "running",
        "name": cfg.name,
        "seed": cfg.seed,
        "tags": list(cfg.tags),
        "overrides": overrides,
        "config_hash": config_hash,
        "resumed": resume_from is not None,
        "metrics": {},
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "started_at": time.time(),
        **({"sweep_id": os.environ[SWEEP_ID]} if label and SWEEP_ID in os.environ else {}),
    }
    if is_main:
        if before_writing is not None:
            before_writing()
        if label is None:
            console.print_config(cfg)
        write_json(run_dir / SUMMARY, summary)
    signals = _signals_interrupt()
    loggers: list[Any] = []
    try:
        from dnnexp.training import trackers

        sweep_dir = run_dir.parent if label is not None else None
        loggers, found = trackers.build(
            cfg, run_dir, overrides, resume, earlier_trackers, sweep_dir
        )
        if found and is_main:  # at once: a killed run's resume continues the same tracker runs
            summary["trackers"] = found
            write_json(run_dir / SUMMARY, summary)
        trackers.start(loggers, cfg, overrides)
        with job_scope(), signals:
            result = _fit_and_test(
                cfg,
                data,
                run_dir,
                overrides,
                resume,
                label is None,
                teacher,
                source,
                callbacks,
                loggers,
            )
        confusion = result.pop("test_confusion")  # for the model card, not the summary
        summary.update(result)
        summary["status"] = "completed"
    except BaseException as err:  # the run dir must say what happened, then the error goes on
        failed_write = write_failure(err)
        interrupted = isinstance(err, (KeyboardInterrupt, SystemExit)) or failed_write is not None
        summary["status"] = "interrupted" if interrupted else "failed"
        summary["error"] = f"{type(err).__name__}: {err}".splitlines()[0]
        if interrupted:  # resumable: how far it got, and how to go on
            summary.update(_progress(run_dir))
        if failed_write is not None:  # resumable once there is space again
            summary["error"] = stopped_line(failed_write, run_dir, label is not None)
            raise RunStopped(summary["error"]) from None
        if interrupted:
            by = signals.received or ("Ctrl-C" if isinstance(err, KeyboardInterrupt) else None)
            summary["error"] = f"interrupted by {by}" if by else "interrupted"
            if signals.received:
                summary["signal"] = signals.received
            _report_interrupt(run_dir, is_main)
            raise SystemExit(INTERRUPTED_EXIT) from None
        raise
    finally:
        summary["duration_s"] = round(time.perf_counter() - started, 3)
        summary["ended_at"] = time.time()
        summary["versions"] = versions()
        summary["code"] = code_version()
        if is_main:
            _write_summary(run_dir, summary, label is not None)
            if summary["status"] != "completed":
                _finish_trackers(loggers, cfg, summary, run_dir)
    if is_main and not summary.get("fast_dev_run"):
        try:
            write_model_card(run_dir, cfg, summary, data, confusion)
        except Exception as err:  # the run is complete and saved: a failed card is one line
            failed_write = write_failure(err)
            if failed_write is not None:
                raise RunStopped(
                    f"{failed_write}; the run completed and {SUMMARY} holds its results:"
                    f" only its {MODEL_CARD} is missing"
                ) from None
            print(f"warning: no {MODEL_CARD}: {type(err).__name__}: {err}", file=sys.stderr)
    if is_main:
        _finish_trackers(loggers, cfg, summary, run_dir)  # with the model card among the files
    if is_main and label is not None:
        shown = headline(cfg.task)
        console.console.print(
            f"{escape(label)}: {shown} {summary['metrics'][shown]:.4f}, best epoch"
            f" {summary['best_epoch']}, {summary['duration_s']:.1f} s"
            + (f", {privacy_line(summary['privacy'])}" if "privacy" in summary else "")
            + f" -> {run_dir}",
            soft_wrap=True,  # one line, piped or not
        )
    elif is_main:
        title = f"the best checkpoint (epoch {summary['best_epoch']}) on the test split"
        if summary.get("fast_dev_run"):
            title = (
                f"fast dev run ({summary['fast_dev_run']} batches each of train, val and test;"
                " no checkpoints, no metrics.csv)"
            )
        footer = {"run dir": str(run_dir), "time": f"{summary['duration_s']:.1f} s"}
        if "pruning" in summary:
            from dnnexp.training.weight_pruning import footer_lines

            footer.update(footer_lines(summary["pruning"], headline(cfg.task)))
        if "privacy" in summary:
            footer["privacy"] = privacy_line(summary["privacy"])
        console.print_metrics(f"{cfg.name}: {title}", summary["metrics"], footer)
    return summary


def _finish_trackers(loggers: list[Any], cfg: DictConfig, summary: dict, run_dir: Path) -> None:
    if len(loggers) > 1:  # beside metrics.csv
        from dnnexp.training import trackers

        trackers.finish(loggers, cfg, summary, run_dir)


def _earlier_trackers(run_dir: Path) -> dict | None:
    """The tracker ids of the run a resume continues (its summary.json, before it is rewritten)."""
    import json

    try:
        return json.loads((run_dir / SUMMARY).read_text()).get("trackers")
    except (OSError, ValueError):
        return None


def _read_resume(cfg: DictConfig, path: Path) -> dict[str, Any]:
    """The last.ckpt a resume continues from; one line when it is unreadable or has trained
    more epochs than trainer.max_epochs allows."""
    resume = load_checkpoint(path, f"resume={cfg.resume}: {LAST_CKPT}")
    trained = int(resume["epoch"]) + 1
    if trained > cfg.trainer.max_epochs:
        raise RunError(
            f"resume={cfg.resume}: the run has trained {trained} epochs, more than"
            f" trainer.max_epochs={cfg.trainer.max_epochs}; give a larger one to train longer"
        )
    return resume


def _check_resume(cfg: DictConfig, resume: dict[str, Any], data: ArrayDataModule) -> None:
    """A resume continues the same run: the same data splits, model, optimizer and schedule.
    Overrides that change them would fail inside fit (after the run dir was rewritten): each is
    one line here instead."""
    what = f"resume={cfg.resume}"
    earlier = resume["hyper_parameters"]
    fingerprint = earlier.get("data_fingerprint")
    if fingerprint and fingerprint != data.fingerprint:
        raise RunError(
            f"{what}: the run was trained on other data splits than these overrides give; a"
            " resume continues the same run: drop the data.* overrides, or start a new run"
        )
    for group in ("optimizer", "scheduler"):
        before = (earlier["config"].get(group) or {}).get("name")
        if before is not None and before != cfg[group].name:
            raise RunError(
                f"{what}: the run trained with {group}={before}, not {cfg[group].name}; a resume"
                f" continues its {group} state: drop the {group}= override, or start a new run"
            )
    from dnnexp.models.weights import rebuild_model

    rebuild_model(
        resume,
        f"{what}: its {LAST_CKPT} does not match the model {cfg.model.name} these overrides"
        " build; a resume continues the same model: drop the model.* overrides, or start a new"
        " run",
        cfg,
    )


def _progress(run_dir: Path) -> dict[str, Any]:
    """What an interrupted run's summary says of how far it got: the epochs its last.ckpt holds,
    the metrics of its last validation there, and the command that resumes it."""
    if not (run_dir / LAST_CKPT).is_file():
        return {"epochs": 0}
    try:
        last = load_checkpoint(run_dir / LAST_CKPT)
    except RunError:
        return {}
    history = TrainingModule.history_of(last)
    shown = {k: v for k, v in (history[-1] if history else {}).items() if "/" in k}
    return {
        "epochs": int(last["epoch"]) + 1,
        "metrics": shown,  # the last validation's (no test: the run did not get there)
        "resume": f"dnnexp train resume={run_dir}",
    }


def _write_summary(run_dir: Path, summary: dict[str, Any], in_sweep: bool) -> None:
    """summary.json as the run ends. When the run is already ending with an error and the disk
    cannot take its summary either, that error (and its line) goes on."""
    try:
        write_json(run_dir / SUMMARY, summary)
    except WriteFailed as failed:
        if summary["status"] == "completed":
            summary["status"] = "interrupted"
            raise RunStopped(stopped_line(failed, run_dir, in_sweep)) from None


def stopped_line(failed: WriteFailed, run_dir: Path, in_sweep: bool) -> str:
    """The one line a run ends with when a write fails: the file, the reason, what is kept and
    how to go on."""
    fix = "free some space" if failed.out_of_space else "make it writable again"
    if not (run_dir / LAST_CKPT).is_file():
        return f"{failed}; no epoch had been saved: {fix}, then start the run again"
    go_on = (
        "run the same command again: this job resumes from it"
        if in_sweep
        else f"dnnexp train resume={run_dir}"
    )
    return f"{failed}; the last good checkpoint is kept: {fix}, then {go_on}"


def _fit_and_test(
    cfg: DictConfig,
    data: ArrayDataModule,
    run_dir: Path,
    overrides: list[str],
    resume: dict | None,
    show_details: bool,
    teacher: Any = None,
    source: dict | None = None,
    callbacks: list[Any] | None = None,
    loggers: list[Any] | None = None,
) -> dict[str, Any]:
    """`resume`: the last.ckpt a resumed run continues from; `teacher`: distill's; `source`:
    init_from's checkpoint; `loggers`: the run's (`trackers.build`)."""
    found = None
    if cfg.lr_find.mode == "apply":  # on a throwaway model, before this run's is built
        from dnnexp.training.lr_find import apply_suggestion

        found = apply_suggestion(cfg, data, run_dir)
    L.seed_everything(cfg.seed, workers=False, verbose=False)
    task = TrainingModule(
        OmegaConf.to_container(cfg, resolve=True),  # plain dict: loads with weights_only=True
        data.spec,
        teacher,
        None if resume is None else resume["hyper_parameters"].get("pretrained"),
    )
    if source is not None:  # (a resume has the weights already)
        from dnnexp.training.transfer import load_pretrained

        names, line = load_pretrained(source, cfg.init_from, task.model, data.classes)
        task.use_pretrained(names)
        if rank_zero_only.rank == 0:
            console.console.print(escape(line))
    if teacher is not None and not task.transforms_batches:  # fixed inputs: teach them once
        data.teacher_outputs = task.teacher_outputs(data.splits["train"][0])
    trainer = build_trainer(
        cfg,
        run_dir,
        overrides,
        show_details,
        resume,
        extra_callbacks=callbacks or (),
        loggers=loggers,
    )
    ckpt_path = None if resume is None else run_dir / LAST_CKPT
    trainer.fit(task, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    if trainer.interrupted:
        raise Interrupted("training interrupted")
    # before test() loads the best checkpoint (and its history)
    history, epochs = list(task.history), trainer.current_epoch
    if not history and (run_dir / LAST_CKPT).is_file():  # ddp_spawn/ddp_fork trained elsewhere
        last = load_checkpoint(run_dir / LAST_CKPT)
        history, epochs = TrainingModule.history_of(last), int(last["epoch"]) + 1
    best_path = trainer.checkpoint_callback.best_model_path
    trainer.test(
        task, datamodule=data, ckpt_path=best_path or None, verbose=False, weights_only=True
    )
    first_epoch, pruned = 0, None
    if cfg.prune.amount > 0:
        from dnnexp.config.validate import prune_end_epoch
        from dnnexp.training.weight_pruning import summarize

        first_epoch = prune_end_epoch(cfg)  # gradual: the best one is at the full sparsity
        best_file = run_dir / BEST_CKPT if best_path else None
        pruned = summarize(cfg, task.model, best_file, data.fingerprint)
    best = _best_row(history, cfg.reg.early_stopping.monitor, first_epoch)
    at_best = history[best] if history else {}
    metrics = dict(task.test_metrics) or {  # from the spawned processes
        k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")
    }
    # the score (acc, r2; multitask: each head's, and task.score's), at the best epoch
    scores = [task_score(cfg.task).split("/", 1)[1]]
    scores += [f"{h['name']}/{head_score(h['kind'])}" for h in heads_of(cfg.task)]
    search = cfg.get("search")
    searched = [search.metric] if search is not None and search.metric else []
    scores = list(dict.fromkeys(scores))
    val, train = ([f"{split}/{score}" for score in scores] for split in ("val", "train"))
    for key in (*val, "val/loss", *train, "train/loss", *searched):
        if key in at_best:
            metrics[key] = at_best[key]
    pruning = next((c for c in trainer.callbacks if hasattr(c, "pruned_at")), None)
    fast_dev_run = int(cfg.trainer.fast_dev_run)
    return {
        "metrics": metrics,
        "best_epoch": int(at_best.get("epoch", 0)),
        "best_step": int(at_best.get("step", 0)),
        "epochs": epochs,
        "params": sum(p.numel() for p in task.model.parameters()),
        **({"lr_find": found} if found is not None else {}),
        "test_confusion": task.test_confusion,  # None under ddp_spawn (tested elsewhere)
        "checkpoint": BEST_CKPT if best_path else None,
        "task": cfg.task.name,
        "input_shape": list(data.input_shape),
        **(
            {"num_targets": data.num_outputs, "target_stats": data.target_stats}
            if data.target_stats is not None
            else {"num_classes": data.num_classes, "classes": data.classes}
        ),
        **({"input_stats": data.input_stats} if data.input_stats is not None else {}),
        **({"columns": data.preprocess["columns"]} if "columns" in data.preprocess else {}),
        **{
            key: _text_summary(data.preprocess[key])
            for key in ("text", "target_text")
            if key in data.preprocess
        },
        **task.objective.summary(),
        **({"fast_dev_run": fast_dev_run} if fast_dev_run else {}),
        **(
            {"search": {"trial": search.trial, "pruned_at_epoch": pruning.pruned_at}}
            if pruning is not None
            else {}
        ),
        **({"pruning": pruned} if pruned is not None else {}),
        **({"privacy": ledger} if (ledger := task.privacy_ledger) is not None else {}),
    }


def _text_summary(text: dict[str, Any]) -> dict[str, Any]:
    """A text run's tokens and their statistics (the vocabulary itself, and a sentencepiece
    model, are in the checkpoint)."""
    return {key: value for key, value in text.items() if key not in ("vocab", "sentencepiece")}


def _best_row(history: list[dict[str, float]], monitor: str, first_epoch: int = 0) -> int:
    """The validation ModelCheckpoint kept: the first one with the best monitored value (from
    `first_epoch` on: gradual pruning's best is one at the full sparsity)."""
    if not history:
        return 0
    values = [row.get(monitor, float("nan")) for row in history]
    sign = 1 if lower_is_better(monitor) else -1
    rows = [i for i, row in enumerate(history) if row.get("epoch", 0) >= first_epoch]
    return min(rows or range(len(values)), key=lambda i: (sign * values[i], i))


class _signals_interrupt:
    """SIGTERM (a cluster pre-empting the job) ends the run like Ctrl-C does: Lightning then
    stops at once, and its own SIGTERM handling (which would exit with status 0) is bypassed.
    Either signal's name is kept in `received` (Lightning turns the interrupt into exit(1))."""

    received: str | None = None

    def __enter__(self) -> _signals_interrupt:
        self.previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            handler = signal.getsignal(signum)
            if signum == signal.SIGINT and handler is not signal.default_int_handler:
                continue  # someone else's Ctrl-C handling: left alone
            try:
                signal.signal(signum, self._raise)
                self.previous[signum] = handler
            except ValueError:  # not the main thread (e.g. a launcher's worker thread)
                break
        return self

    def _raise(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name
        raise Interrupted(f"signal {self.received}")

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _report_interrupt(run_dir: Path, is_main: bool) -> None:
    if not is_main:
        return
    last = run_dir / LAST_CKPT
    where = "from the end of its last full epoch" if last.is_file() else "(no epoch had finished)"
    print(
        f"interrupted: {run_dir} keeps its checkpoints; continue it {where} with:\n"
        f"  dnnexp train resume={run_dir}",
        file=sys.stderr,
    )
