"""`dnnexp predict` for a task=seq2seq run: each distinct source decoded once (greedy, or beam
search with `beam` > 1, the run's own length penalty and maximum length), written as text with
its score (the hypothesis's log-probability / length**length_penalty, EOS counted); with
references in the input, also the run's metrics (loss, ter, ser, and BLEU where the target is
words) on them, computed by the same `Seq2SeqStats` as the run's test split."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import torch

from dnnexp.data.text import decode
from dnnexp.inference.inputs import Inputs
from dnnexp.inference.model import TrainedRun
from dnnexp.models.decoding import beam_search
from dnnexp.tasks import build_objective
from dnnexp.utils.console import console
from dnnexp.utils.run_files import unique_path, write_json


def decode_sources(
    run: TrainedRun,
    inputs: Inputs,
    beam: int,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float] | None]:
    """The output ids (N, L) and scores (N,) of every source of `inputs.x`, and with
    references (`inputs.labels`) the metrics on them."""
    model = run.model.model
    cfg = run.cfg
    max_length, length_penalty = cfg.data.target_max_length, cfg.eval.length_penalty
    target_text = run.hparams["preprocess"]["target_text"]
    objective = build_objective(cfg, run.hparams["num_outputs"], None, target_text)
    stats = objective.new_stats()
    outputs, scores = [], []
    with torch.inference_mode():
        for start in range(0, len(inputs.x), batch_size):
            x = inputs.x[start : start + batch_size]
            ids, score = beam_search(model, x, beam, max_length, length_penalty)
            outputs.append(ids)
            scores.append(score)
            if inputs.labels is not None:
                y = inputs.labels[start : start + batch_size]
                loss = objective.eval_loss(model(x, y[:, 0]), y[:, 0])
                stats.update(ids, y, loss)
    width = max((ids.shape[1] for ids in outputs), default=0)
    padded = [torch.nn.functional.pad(ids, (0, width - ids.shape[1])) for ids in outputs]
    metrics = stats.compute() if inputs.labels is not None else None
    return torch.cat(padded), torch.cat(scores), metrics


def predict_sequences(
    run: TrainedRun,
    inputs: Inputs,
    input_path: Path,
    out: Path | None,
    beam: int,
    batch_size: int,
) -> dict[str, Any]:
    started = time.perf_counter()
    ids, scores, metrics = decode_sources(run, inputs, beam, batch_size)
    seconds = time.perf_counter() - started
    texts = decode(ids, run.hparams["preprocess"]["target_text"])
    out = out or unique_path(run.run_dir / "predict" / f"{input_path.stem or input_path.name}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    assert inputs.sources is not None
    rows = inputs.sources.tolist()
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*inputs.columns, "prediction", "score"])
        cells = list(zip(*inputs.columns.values(), strict=True))
        for row, source in zip(cells, rows, strict=True):
            writer.writerow([*row, texts[source], f"{float(scores[source]):.6f}"])
    n = len(inputs.x)
    result: dict[str, Any] = {
        "checkpoint": str(run.path.resolve()),
        "input": str(input_path.resolve()),
        "rows": len(rows),
        "sources": n,
        "beam": beam,
        "predictions": str(out),
        "sources_per_s": round(n / max(seconds, 1e-9), 1),
    }
    decoding = "greedy" if beam == 1 else f"beam {beam}"
    console.print(
        f"{n} sources decoded ({decoding}) -> {out} ({result['sources_per_s']:.0f} sources/s)",
        soft_wrap=True,
    )
    if metrics is not None:
        result["metrics"] = metrics
        metrics_path = out.with_suffix(".metrics.json")
        write_json(metrics_path, result)
        shown = ", ".join(f"{key} {value:.4f}" for key, value in metrics.items())
        console.print(f"metrics on the input's references: {shown}", soft_wrap=True)
        console.print(f"written to: {metrics_path}", soft_wrap=True)
    return result
