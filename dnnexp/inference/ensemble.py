"""`dnnexp eval ckpt=[a,b,c]|SWEEP_DIR ensemble=mean|vote`: each member's and the ensemble's
metrics on the members' shared test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from dnnexp.inference.model import TrainedRun, predict_batches, raw_test_split
from dnnexp.inference.scoring import metrics_of
from dnnexp.utils.console import table_console
from dnnexp.utils.run_files import unique_path, write_json


def evaluate_ensemble(source: TrainedRun, out: Path | None = None) -> dict[str, Any]:
    assert source.members is not None
    x, labels = raw_test_split(source)
    target_stats = source.hparams.get("target_stats")
    heads = source.heads or None  # task=multitask
    members = {}
    for member in source.members:
        name = str(member.run_dir.resolve().relative_to(source.run_dir.resolve())) or "."
        members[name], _ = metrics_of(
            predict_batches(member.model, x), labels, member.cfg, target_stats, heads
        )
    outputs = predict_batches(source.model, x)
    metrics, _ = metrics_of(outputs, labels, source.cfg, target_stats, heads)
    if source.ensemble == "vote":
        metrics.pop("loss")  # vote shares are not probabilities: no log-loss
    mean_member = {key: sum(m[key] for m in members.values()) / len(members) for key in metrics}
    result = {
        "ensemble": source.ensemble,
        "split": "test",
        "members": members,
        "mean_member": mean_member,
        "metrics": metrics,
    }
    out = out or unique_path(source.run_dir / f"ensemble_{source.ensemble}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    console = table_console()
    console.print(
        f"[bold]ensemble of {len(members)} ({source.ensemble}) on the test split[/bold]"
        f" ({len(labels)} rows)"
    )
    table = Table()
    table.add_column("model")
    for key in metrics:
        table.add_column(key, justify="right")
    for name, row in members.items():
        table.add_row(name, *(f"{row[key]:.4f}" for key in metrics))
    table.add_row("mean member", *(f"{mean_member[key]:.4f}" for key in metrics), style="dim")
    table.add_row(
        f"ensemble ({source.ensemble})", *(f"{metrics[key]:.4f}" for key in metrics), style="bold"
    )
    console.print(table)
    console.print(f"[bold]written to:[/bold] {out}")
    return result
