"""`dnnexp report PATH [--baseline NAME] [--metric METRIC] [--tags A,B] [--out DIR]`: compare
the variants of a sweep (runs that differ only in seed are one variant) against a baseline,
print a table and write report.md, report.csv, report.json, PNG plots and report.html (one page
with the plots inside)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from dnnexp.report.analysis import Report

DESCRIPTION = """\
Compare the variants of a sweep over seeds. Every dir under PATH holding summary.json is a run;
runs whose overrides differ only in seed=... (and data.fold=... under k-fold cross-validation:
sweep=kfold, reported with the CV mean ± SD over the folds) form a variant. Prints mean ± SD,
95% CI, a paired (same seeds and folds) or Welch t-test against the baseline with Holm-adjusted
p-values, and writes
report.md, report.csv, report.json, learning_curves.png and metric_<name>.png (and, when the
variants differ in prune.amount, <name>_vs_sparsity.png: the metric against the measured
sparsity).

On a search dir (dnnexp train -m sweep=random|bayesian|...): every trial (state, params,
value), the objective over trials with the best so far (search_history.png), the parameters'
importance, the Pareto front of two objectives (pareto_front.png) and the confirmation."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dnnexp report", description=DESCRIPTION)
    p.add_argument("path", metavar="PATH", help="a sweep dir (outputs/multirun/...) or a run dir")
    p.add_argument(
        "--baseline",
        metavar="NAME",
        help="the variant to compare against, by its name in the table (default: the one "
        "variant with a `none` value such as reg=none, else the first)",
    )
    p.add_argument(
        "--metric",
        metavar="METRIC",
        default=None,
        help="a key of the summaries' metrics (default: test/acc for classification, test/r2"
        " for regression, the baseline's task.score on the test split for multitask, whose"
        " report also has a column per head); loss, mse, rmse and mae: lower is better, the"
        " others higher",
    )
    p.add_argument(
        "--out", metavar="DIR", type=Path, help="where to write the report files (default: PATH)"
    )
    p.add_argument(
        "--tags",
        metavar="A,B",
        type=lambda text: [t.strip() for t in text.split(",") if t.strip()],
        help="only the runs trained with every one of these tags (tags=[A,B])",
    )
    return p


def main(args: list[str]) -> int:
    try:
        options = parser().parse_args(args)
    except SystemExit as stop:  # --help (0) or a usage error, already printed by argparse (2)
        return int(stop.code or 0)
    from dnnexp.report.analysis import build
    from dnnexp.report.collect import ReportError
    from dnnexp.utils.console import table_console

    try:
        console = table_console()
        if is_search(Path(options.path), options):
            written = search_report(Path(options.path), options.out, console)
        else:
            report = build(Path(options.path), options.metric, options.baseline, tags=options.tags)
            from dnnexp.report.render import print_report

            written = write(report, options.out or Path(options.path))  # before a pipe can close
            print_report(report, console)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot write the report: {err}", file=sys.stderr)
        return 2
    out_dir = options.out or Path(options.path)
    console.print(f"wrote {', '.join(p.name for p in written)} in {out_dir}", soft_wrap=True)
    return 0


def is_search(path: Path, options: argparse.Namespace) -> bool:
    """A search dir (its multirun.yaml has a `search`): reported trial by trial, and
    --baseline/--metric, which pick what a sweep's variants are compared on, do not apply."""
    from dnnexp.report.collect import ReportError
    from dnnexp.report.search import search_config

    if search_config(path) is None:
        return False
    if options.baseline or options.metric or options.tags:
        raise ReportError(
            f"{path} is a search: its report ranks trials by the search's objective;"
            " --baseline, --metric and --tags are for sweeps (dnnexp report PATH/confirm"
            " compares the confirmation runs as a sweep)"
        )
    return True


def search_report(path: Path, out: Path | None, console: Console) -> list[Path]:
    from dnnexp.report import search, search_render

    report = search.build(path)
    written = search_render.write(report, out or path)  # before a pipe can close
    search_render.print_search(report, console)
    return written


def write(report: Report, out_dir: Path) -> list[Path]:
    """Write report.md/.csv/.json and the plots into out_dir; the paths written."""
    from dnnexp.report import plots, render

    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    curves = out_dir / "learning_curves.png"
    if plots.plot_learning_curves(report, curves):
        images.append(curves)
    bars = out_dir / plots.metric_filename(report.metric)
    if plots.plot_metric(report, bars):
        images.append(bars)
    sparsity = out_dir / plots.sparsity_filename(report.metric)
    if plots.plot_sparsity(report, sparsity):  # variants that differ in prune.amount
        images.append(sparsity)
    privacy = out_dir / plots.privacy_filename(report.metric)
    if plots.plot_privacy(report, privacy):  # private runs (privacy=dp) beside others
        images.append(privacy)
    from dnnexp.report.html import to_html
    from dnnexp.utils.run_files import write_text

    paths = [out_dir / name for name in ("report.md", "report.csv", "report.json", "report.html")]
    text = render.markdown(report, [p.name for p in images])
    paths[0].write_text(text)
    render.write_csv(report, paths[1])
    render.write_report_json(report, paths[2])
    write_text(paths[3], to_html(text, out_dir))  # one page, the plots inside
    return paths + images
