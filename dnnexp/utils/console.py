"""What a run prints: the config as a rich tree, the final metrics as a rich table."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

console = Console()


def table_console(stderr: bool = False) -> Console:
    """A console for tables: the terminal's width on a TTY; piped or captured, wide enough that
    each row stays on one line (for grep and logs) instead of rich's 80 columns."""
    out = Console(highlight=False, stderr=stderr)
    if not out.is_terminal:
        out = Console(highlight=False, stderr=stderr, width=max(out.width, 1000))
    return out


def print_config(cfg: DictConfig) -> None:
    tree = Tree("[bold]config[/bold]")
    for group, node in cfg.items():
        if isinstance(node, DictConfig):
            branch = tree.add(f"[cyan]{group}[/cyan]")
            for key, value in OmegaConf.to_container(node, resolve=True).items():
                branch.add(f"{key}: {value}")
        else:
            tree.add(f"[cyan]{group}[/cyan]: {node}")
    console.print(tree)


def print_metrics(title: str, metrics: dict[str, Any], footer: dict[str, Any]) -> None:
    console.print(f"[bold]{title}[/bold]")
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    for key, value in footer.items():
        console.print(f"[bold]{key}:[/bold] {value}", soft_wrap=True)  # one line, piped or not
