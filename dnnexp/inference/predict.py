"""`dnnexp predict`: a trained run's predictions for new inputs, written as a CSV; with labels in
the input, also its metrics and confusion matrix (terminal and JSON)."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dnnexp.config.errors import ConfigError
from dnnexp.data.local_files import DataError
from dnnexp.inference.inputs import out_of_range, read_inputs
from dnnexp.inference.model import TrainedRun, load_trained, predict_batches
from dnnexp.inference.scoring import metrics_of
from dnnexp.utils.console import console, table_console
from dnnexp.utils.run_files import unique_path, write_json

PROGRESS_ROWS = 50_000  # a progress bar for inputs at least this large (on a terminal)


def predict(
    ckpt: str,
    input_path: Path,
    out: Path | None = None,
    probs: bool = False,
    target: str | None = None,
    batch_size: int = 1024,
    strict: bool = False,
    beam: int = 1,
) -> dict[str, Any]:
    """`strict`: inputs far outside the training range are refused, not only warned about.
    `beam`: a seq2seq run's beam width, at least 1 (the command checks it; 1: greedy)."""
    run = load_trained(ckpt)
    inputs = read_inputs(input_path, run, target)
    if run.task == "seq2seq":
        from dnnexp.inference.sequences import predict_sequences

        return predict_sequences(run, inputs, input_path, out, beam, batch_size)
    if beam != 1:
        raise ConfigError(f"beam={beam} decodes sequences: ckpt={ckpt} is a task={run.task} run")
    far = out_of_range(inputs.x, run, input_path)
    if far is not None and strict:
        raise DataError(far)
    if far is not None:
        print(f"warning: {far}", file=sys.stderr)
    started = time.perf_counter()
    outputs = _run(run, inputs.x, batch_size)
    seconds = time.perf_counter() - started
    out = out or unique_path(run.run_dir / "predict" / f"{input_path.stem or input_path.name}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    header, rows = _table(run, outputs, inputs.columns, probs)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    n = len(inputs.x)
    result: dict[str, Any] = {
        "checkpoint": str(run.path.resolve()),
        "input": str(input_path.resolve()),
        "rows": n,
        "predictions": str(out),
        "rows_per_s": round(n / max(seconds, 1e-9), 1),
    }
    console.print(f"{n} predictions -> {out} ({result['rows_per_s']:.0f} rows/s)", soft_wrap=True)
    if inputs.labels is not None:
        metrics, confusion = metrics_of(
            outputs, inputs.labels, run.cfg, run.hparams.get("target_stats"), run.heads or None
        )
        result["metrics"] = metrics
        if confusion is not None:
            result["classes"] = run.classes
            result["confusion"] = confusion
        metrics_path = out.with_suffix(".metrics.json")
        write_json(metrics_path, result)
        _print_metrics(run, metrics, confusion, metrics_path)
    return result


def _run(run: TrainedRun, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The model's outputs in batches, with a progress bar for large inputs on a terminal."""
    if len(x) < PROGRESS_ROWS or not console.is_terminal:
        return predict_batches(run.model, x, batch_size)
    columns = (TextColumn("predict"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("predict", total=len(x))
        return predict_batches(
            run.model, x, batch_size, lambda done: bar.update(task, completed=done)
        )


def _table(
    run: TrainedRun, outputs: torch.Tensor, columns: dict[str, list[str]], probs: bool
) -> tuple[list[str], list[list[Any]]]:
    """The CSV: the input's own columns, then the prediction (the class and its probability,
    every class's with `probs`), or one value per target; under multitask one column per head
    (`predicted_<head>`: a class, with `probability_<head>`, or a value in its units)."""
    passed = list(columns.values())
    kept = [list(row) for row in zip(*passed, strict=True)] if passed else [[]] * len(outputs)
    if run.task == "multitask":
        return _head_table(run, outputs, list(columns), kept, probs)
    if run.task == "regression":
        target = run.cfg.data.get("target")
        names = [target] if isinstance(target, str) else list(target or [])
        if len(names) != outputs.shape[1]:
            names = [f"target_{i}" for i in range(outputs.shape[1])]
        header = [*columns, *(f"predicted_{name}" for name in names)]
        values = outputs.tolist()
        return header, [
            row + [f"{v:.6g}" for v in out] for row, out in zip(kept, values, strict=True)
        ]
    classes = run.classes
    top, index = outputs.max(1)
    header = [*columns, "prediction", "probability"]
    rows = [
        row + [classes[i], f"{p:.6f}"]
        for row, i, p in zip(kept, index.tolist(), top.tolist(), strict=True)
    ]
    if probs:
        header += [f"prob_{name}" for name in classes]
        for row, values in zip(rows, outputs.tolist(), strict=True):
            row.extend(f"{p:.6f}" for p in values)
    return header, rows


def _head_table(
    run: TrainedRun, outputs: torch.Tensor, columns: list[str], kept: list[list[Any]], probs: bool
) -> tuple[list[str], list[list[Any]]]:
    """task=multitask: per head its prediction (and a classification head's probability, every
    class's as `prob_<head>_<class>` with `probs`)."""
    header, cells = list(columns), []
    start = 0
    for head in run.heads:
        part = outputs[:, start : start + int(head["width"])]
        start += int(head["width"])
        name = head["name"]
        if head["kind"] == "regression":
            header.append(f"predicted_{name}")
            cells.append([[f"{v:.6g}"] for v in part[:, 0].tolist()])
            continue
        top, index = part.max(1)
        header += [f"predicted_{name}", f"probability_{name}"]
        rows = [
            [head["classes"][i], f"{p:.6f}"]
            for i, p in zip(index.tolist(), top.tolist(), strict=True)
        ]
        if probs:
            header += [f"prob_{name}_{c}" for c in head["classes"]]
            for row, values in zip(rows, part.tolist(), strict=True):
                row.extend(f"{p:.6f}" for p in values)
        cells.append(rows)
    return header, [sum((c[i] for c in cells), list(row)) for i, row in enumerate(kept)]


def _print_metrics(
    run: TrainedRun, metrics: dict[str, float], confusion: list | None, path: Path
) -> None:
    out = table_console()
    out.print("[bold]metrics on the input's labels[/bold]")
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    out.print(table)
    if confusion is not None:
        out.print("[bold]confusion matrix[/bold] (rows: label, columns: prediction)")
        matrix = Table()
        matrix.add_column("label")
        for name in run.classes:
            matrix.add_column(name, justify="right")
        for i, (name, row) in enumerate(zip(run.classes, confusion, strict=True)):
            cells = (f"[bold]{v}[/bold]" if i == j else str(v) for j, v in enumerate(row))
            matrix.add_row(name, *cells)
        out.print(matrix)
    out.print(f"[bold]written to:[/bold] {path}")
