"""`dnnexp report` on fabricated run dirs (no training): grouping, statistics, outputs, errors."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats as sps

from dnnexp import stats
from dnnexp.commands.report import main
from dnnexp.report.analysis import build
from dnnexp.report.collect import ReportError, find_runs, group, natural_key, read_history

SHARED = ["sweep=reg_ablation", "trainer.max_epochs=3"]
HISTORY_COLUMNS = [
    "epoch", "epoch_time_s", "lr", "step", "train/acc", "train/f1", "train/loss",
    "train/precision", "train/recall", "val/acc", "val/f1", "val/loss", "val/precision",
    "val/recall",
]  # fmt: skip


def make_run(
    job_dir: Path,
    overrides: list[str],
    acc: float | None = 0.9,
    status: str = "completed",
    seed: int | None = None,
    epochs: int = 3,
    with_history: bool = True,
    extra: dict | None = None,
) -> Path:
    """A run dir as `dnnexp train` leaves it: summary.json, metrics.csv, .hydra/overrides.yaml."""
    job_dir.mkdir(parents=True)
    if seed is None:
        seed = next(int(o.split("=")[1]) for o in overrides if o.startswith("seed="))
    summary: dict = {"status": status, "name": "mlp", "seed": seed, "overrides": overrides}
    if status == "completed":
        summary.update(
            metrics={
                "test/acc": acc,
                "test/loss": 1 - acc,
                "val/acc": acc + 0.01,
                "val/loss": 1.1 - acc,
                "train/acc": acc + 0.03,
                "train/loss": 0.9 - acc,
            },
            best_epoch=epochs - 1,
            epochs=epochs,
            duration_s=2.0,
            params=1234,
            checkpoint="checkpoints/best.ckpt",
        )
    elif status == "running":
        summary["metrics"] = {}
    else:
        summary = {"status": status, "error": "ValueError: boom"}
    summary.update(extra or {})
    (job_dir / "summary.json").write_text(json.dumps(summary))
    hydra = job_dir / ".hydra"
    hydra.mkdir()
    (hydra / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if with_history:
        lines = [",".join(HISTORY_COLUMNS)]
        for e in range(epochs):
            a = (acc or 0.5) * (e + 1) / epochs
            row = [e, 0.1, 0.001, e, a, a, 1 - a, a, a, a, a, 1.1 - a, a, a]
            lines.append(",".join(str(v) for v in row))
        (job_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    return job_dir


def make_sweep(root: Path, values: dict[str, list[float]], seeds=(0, 1, 2)) -> Path:
    """A multirun dir: one job per (variant, seed), numbered in that order."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    job = 0
    for reg, accs in values.items():
        for seed, acc in zip(seeds, accs, strict=False):
            make_run(root / str(job), [reg, f"seed={seed}", *SHARED], acc)
            job += 1
    return root


def report_json(path: Path) -> list[dict]:
    def no_nan(token: str) -> None:
        raise AssertionError(f"{token} in report.json")

    return json.loads((path / "report.json").read_text(), parse_constant=no_nan)


# --- collecting and grouping -------------------------------------------------------------------


def test_groups_by_overrides_without_seed_and_shared_ones(tmp_path: Path) -> None:
    sweep = make_sweep(
        tmp_path,
        {
            "reg=none": [0.90, 0.91, 0.92],
            "reg=dropout": [0.93, 0.94, 0.95],
            "reg=[dropout,weight_decay,early_stopping]": [0.90, 0.92, 0.91],
            "reg=weight_decay": [0.9, 0.9, 0.9],
        },
    )
    variants = group(find_runs(sweep))
    assert [v.name for v in variants] == [
        "reg=none",
        "reg=dropout",
        "reg=[dropout,weight_decay,early_stopping]",
        "reg=weight_decay",
    ]
    assert [[r.rel for r in v.runs] for v in variants][3] == ["9", "10", "11"]  # 10 after 9
    assert [r.seed for r in variants[0].runs] == [0, 1, 2]
    assert variants[1].overrides == ["reg=dropout"]


def test_natural_order_and_two_axis_names(tmp_path: Path) -> None:
    assert sorted(["10", "9", "1/2", "1/10"], key=natural_key) == ["1/2", "1/10", "9", "10"]
    job = 0
    for lr in ("0.1", "0.01"):
        for model in ("mlp", "cnn"):
            for seed in (0, 1):
                make_run(tmp_path / str(job), [f"optim.lr={lr}", f"model={model}", f"seed={seed}"])
                job += 1
    names = [v.name for v in group(find_runs(tmp_path))]
    assert names == [
        "optim.lr=0.1 model=mlp",
        "optim.lr=0.1 model=cnn",
        "optim.lr=0.01 model=mlp",
        "optim.lr=0.01 model=cnn",
    ]


def test_one_variant_is_all_runs_and_overrides_fall_back_to_hydra_file(tmp_path: Path) -> None:
    for seed in (0, 1):
        make_run(tmp_path / str(seed), [f"seed={seed}", *SHARED], extra={"overrides": None})
    variants = group(find_runs(tmp_path))
    assert [v.name for v in variants] == ["(all runs)"]
    assert [r.overrides for r in variants[0].runs][0] == ["seed=0", *SHARED]


def test_read_history_merges_rows_and_survives_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,val/acc,train/acc\n0,0.5,\n0,,0.4\n1,0.7,0.8\n")
    assert read_history(path) == [
        {"epoch": 0.0, "val/acc": 0.5, "train/acc": 0.4},
        {"epoch": 1.0, "val/acc": 0.7, "train/acc": 0.8},
    ]
    assert read_history(tmp_path / "missing.csv") == []


# --- statistics against hand-computed values ---------------------------------------------------


def test_describe_mean_sd_and_t_interval() -> None:
    values = [0.90, 0.92, 0.97]
    m = sum(values) / 3
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / 2)
    half = sps.t.ppf(0.975, 2) * sd / math.sqrt(3)
    s = stats.describe(values)
    assert s.n == 3
    assert s.mean == pytest.approx(m)
    assert s.std == pytest.approx(sd)
    assert (s.ci_low, s.ci_high) == (pytest.approx(m - half), pytest.approx(m + half))
    one = stats.describe([0.5])
    assert (one.n, one.mean, one.std, one.ci_low) == (1, 0.5, None, None)
    assert stats.describe([]).mean is None
    assert stats.describe([0.5, float("nan")]).n == 1


def test_paired_t_test_by_hand() -> None:
    base = [(0, 0.90), (1, 0.92), (2, 0.95), (3, 0.91)]
    other = [(2, 0.99), (0, 0.93), (3, 0.93), (1, 0.94)]  # other order: paired by seed
    diffs = [0.93 - 0.90, 0.94 - 0.92, 0.99 - 0.95, 0.93 - 0.91]
    n = len(diffs)
    md = sum(diffs) / n
    se = math.sqrt(sum((d - md) ** 2 for d in diffs) / (n - 1)) / math.sqrt(n)
    t = md / se
    p = 2 * sps.t.sf(abs(t), n - 1)
    half = sps.t.ppf(0.975, n - 1) * se
    c = stats.compare(base, other)
    assert c.test == "paired t"
    assert c.delta == pytest.approx(md)
    assert c.statistic == pytest.approx(t)
    assert c.p_value == pytest.approx(p)
    assert (c.ci_low, c.ci_high) == (pytest.approx(md - half), pytest.approx(md + half))


def test_welch_t_test_when_seeds_differ() -> None:
    base = [(0, 0.90), (1, 0.92), (2, 0.95)]
    other = [(0, 0.93), (1, 0.97), (5, 0.99), (6, 0.96)]
    a, b = [v for _, v in other], [v for _, v in base]
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    t = (ma - mb) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = sps.t.ppf(0.975, df) * math.sqrt(va + vb)
    c = stats.compare(base, other)
    assert c.test == "Welch t"
    assert c.statistic == pytest.approx(t)
    assert c.df == pytest.approx(df)
    assert c.p_value == pytest.approx(2 * sps.t.sf(abs(t), df))
    assert (c.ci_low, c.ci_high) == (pytest.approx(ma - mb - half), pytest.approx(ma - mb + half))


def test_no_test_below_two_seeds_and_identical_results() -> None:
    c = stats.compare([(0, 0.9), (1, 0.92)], [(0, 0.95)])
    assert (c.test, c.p_value, c.ci_low) == (None, None, None)
    assert c.delta == pytest.approx(0.04)
    same = stats.compare([(0, 0.9), (1, 0.9)], [(0, 0.9), (1, 0.9)])
    assert (same.p_value, same.ci_low, same.ci_high) == (1.0, 0.0, 0.0)


def test_no_verdict_from_two_seeds_or_from_the_same_difference_on_every_seed() -> None:
    """Test accuracy on 360 images moves in steps of 1/360: two seeds whose differences are the
    same 8 images give a zero-variance t-test with p ~ 1e-15, which is no evidence."""
    step = 1 / 360
    base = [(0, 0.95), (1, 0.9611)]
    other = [(s, v - 8 * step) for s, v in base]
    c = stats.compare(base, other, limits=(0.0, 1.0))
    assert c.delta == pytest.approx(-8 * step) and c.p_value is None and c.test is None
    assert c.no_verdict == "the same Δ on every seed"
    assert stats.verdict(c, None, lower_better=False) == stats.TOO_FEW
    five = [(s, 0.95 + 0.001 * s) for s in range(5)]  # the same Δ on five seeds: still none
    same_delta = stats.compare(five, [(s, v + 2 * step) for s, v in five])
    assert stats.verdict(same_delta, None, lower_better=False) == stats.TOO_FEW
    # two seeds with differences that vary: tested, but no verdict however small p is
    two = stats.compare(
        base,
        [
            (0, 0.90),
            (1, 0.9),
        ],
    )
    assert two.p_value is not None and two.no_verdict == "n = 2 < 3"
    assert stats.verdict(two, 0.001, lower_better=False) == stats.TOO_FEW
    three = stats.compare([*base, (2, 0.955)], [(0, 0.90), (1, 0.915), (2, 0.91)])
    assert three.no_verdict is None and stats.verdict(three, 0.01, lower_better=False) == "worse"


def test_intervals_are_clipped_to_the_metrics_range() -> None:
    from dnnexp.config.metrics import bounds

    s = stats.describe([0.99, 1.0, 0.9], limits=bounds("test/acc"))
    assert s.ci_high == 1.0 and s.ci_low < s.mean  # unclipped: above 1
    assert stats.describe([0.99, 1.0, 0.9]).ci_high > 1.0
    loss = stats.describe([0.01, 0.2, 0.02], limits=bounds("val/loss"))
    assert loss.ci_low == 0.0
    assert bounds("test/r2") == (-math.inf, 1.0) and bounds("test/other") == (-math.inf, math.inf)
    wide = stats.compare(
        [(0, 0.1), (1, 0.9), (2, 0.5)], [(0, 0.9), (1, 0.1), (2, 0.95)], limits=(0, 1)
    )
    assert wide.ci_low >= -1.0 and wide.ci_high <= 1.0


def test_holm() -> None:
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]
    assert stats.holm([]) == []


def _tested(delta: float, n: int = 5) -> stats.Comparison:
    return stats.Comparison("paired t", delta, None, None, 0.01, n=n)


def test_verdict_noise_and_direction() -> None:
    assert stats.verdict(_tested(0.02), 0.06, lower_better=False) == "≈ noise"
    assert stats.verdict(_tested(0.02), 0.01, lower_better=False) == "better"
    assert stats.verdict(_tested(-0.02), 0.01, lower_better=False) == "worse"
    assert stats.verdict(_tested(-0.02), 0.01, lower_better=True) == "better"
    assert stats.verdict(_tested(0.02), None, lower_better=False) is None
    assert stats.verdict(None, 0.01, lower_better=False) is None
    from dnnexp.config.metrics import lower_is_better

    assert lower_is_better("test/loss") and not lower_is_better("test/acc")


# --- the report: baseline, markers, files ------------------------------------------------------


def test_default_baseline_is_the_none_variant_else_the_first(tmp_path: Path) -> None:
    sweep = make_sweep(
        tmp_path / "a", {"reg=dropout": [0.9, 0.91], "reg=none": [0.8, 0.82]}, (0, 1)
    )
    assert build(sweep).baseline.name == "reg=none"
    two = make_sweep(
        tmp_path / "b",
        {"reg=dropout": [0.9, 0.91], "reg=none": [0.8, 0.8], "model=none": [0.7, 0.7]},
        (0, 1),
    )
    assert build(two).baseline.name == "reg=dropout"
    assert build(two, baseline="model=none").baseline.name == "model=none"


def test_full_report_files_markers_and_baseline_option(tmp_path: Path, capsys) -> None:
    sweep = make_sweep(
        tmp_path / "sweep",
        {
            "reg=none": [0.90, 0.91, 0.92],
            "reg=dropout": [0.95, 0.965, 0.97],  # clearly better, paired
            "reg=weight_decay": [0.89, 0.92, 0.915],  # within noise
        },
    )
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "reg=weight_decay" in out and "≈ noise" in out and "better" in out
    assert "Holm-adjusted across k=2 comparisons" in out and "SD" in out

    rows = report_json(sweep)
    assert [r["variant"] for r in rows] == ["reg=none", "reg=dropout", "reg=weight_decay"]
    assert set(rows[0]) >= {
        "variant", "overrides", "metric", "n", "n_failed", "mean", "std", "ci95", "delta",
        "delta_ci95", "test", "p_value", "p_adjusted", "baseline", "seeds",
    }  # fmt: skip
    base, drop, wd = rows
    assert base["baseline"] and not drop["baseline"]
    assert (base["test"], base["p_value"], base["delta_ci95"]) == (None, None, [None, None])
    assert drop["test"] == "paired t" and drop["seeds"] == [0, 1, 2]
    assert drop["delta"] == pytest.approx((0.95 + 0.965 + 0.97) / 3 - 0.91)
    assert drop["p_adjusted"] < 0.05 <= wd["p_adjusted"]
    assert drop["mean"] == pytest.approx(stats.describe([0.95, 0.965, 0.97]).mean)
    assert drop["overrides"] == ["reg=dropout"] and drop["metric"] == "test/acc"

    md = (sweep / "report.md").read_text()
    assert "| reg=dropout |" in md and "within noise" in md.lower()
    assert "`reg=dropout` is **better**" in md

    with (sweep / "report.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 9
    assert table[3]["variant"] == "reg=dropout" and table[3]["seed"] == "0"
    assert {"dir", "status", "test/acc", "val/loss", "best_epoch", "params"} <= set(table[0])

    for name in ("learning_curves.png", "metric_test_acc.png"):
        data = (sweep / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000

    page = (sweep / "report.html").read_text()  # one file to share: the table, the plots inside
    assert page.startswith("<!DOCTYPE html>") and page.count("<tr>") == 4  # header + 3 variants
    assert "<td>reg=dropout</td>" in page and "<code>reg=dropout</code> is <strong>better" in page
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == 2 and all(i.startswith("data:image/png;base64,") for i in images)
    assert (
        base64.b64decode(images[0].split(",", 1)[1]) == (sweep / "learning_curves.png").read_bytes()
    )
    assert "<script" not in page and "http" not in page.split("</style>", 1)[1]

    out_dir = tmp_path / "elsewhere"
    args = [str(sweep), "--baseline", "reg=dropout", "--metric", "test/loss", "--out", str(out_dir)]
    assert main(args) == 0
    rows = report_json(out_dir)
    assert [r["baseline"] for r in rows] == [False, True, False]
    assert rows[0]["metric"] == "test/loss" and rows[0]["verdict"] == "worse"  # higher loss
    assert (out_dir / "metric_test_loss.png").stat().st_size > 0


def test_nothing_significant_is_said_plainly_and_welch_is_used(tmp_path: Path, capsys) -> None:
    sweep = make_sweep(tmp_path, {"reg=none": [0.9, 0.92, 0.91], "reg=dropout": [0.91, 0.9]})
    make_run(tmp_path / "9", ["reg=dropout", "seed=7", *SHARED], 0.93)  # seeds differ: Welch
    assert main([str(sweep)]) == 0
    capsys.readouterr()
    assert report_json(sweep)[1]["test"] == "Welch t"
    md = (sweep / "report.md").read_text()
    assert "No variant differs significantly" in md and "no ranking" in md


def test_partial_sweep_with_running_and_failed_jobs(tmp_path: Path, capsys) -> None:
    sweep = make_sweep(tmp_path, {"reg=none": [0.9, 0.92], "reg=dropout": [0.93, 0.95]}, (0, 1))
    make_run(tmp_path / "4", ["reg=none", "seed=2", *SHARED], status="running", with_history=False)
    claimed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    holder = {"host": socket.gethostname(), "pid": claimed.pid}
    (tmp_path / "4" / ".claim.json").write_text(json.dumps(holder))  # a live process trains it
    make_run(tmp_path / "7", ["reg=none", "seed=3", *SHARED], status="running", with_history=False)
    make_run(tmp_path / "5", ["reg=dropout", "seed=2", *SHARED], status="failed")
    (tmp_path / "6").mkdir()  # died before writing summary.json
    try:
        assert main([str(sweep)]) == 0
    finally:
        claimed.kill()
        claimed.wait()
    out = capsys.readouterr().out
    assert "jobs not completed" in out and "ValueError: boom" in out
    assert f"still training, in pid {claimed.pid} on this host" in out
    assert "2 +1 running +1 killed" in out and "2 +1 failed" in out and "no summary.json" in out
    rows = report_json(sweep)
    assert [(r["n"], r["n_failed"]) for r in rows] == [(2, 2), (2, 1)]  # job 6: in no variant
    with (sweep / "report.csv").open(newline="") as f:
        statuses = [row["status"] for row in csv.DictReader(f)]
    assert statuses == ["completed"] * 4 + ["running", "failed", "no summary.json", "killed"]
    assert "## Jobs not completed" in (sweep / "report.md").read_text()


def test_single_run_dir_without_history_or_hydra_files(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "run", ["model=mlp"], 0.9, seed=3, with_history=False)
    (run / ".hydra" / "overrides.yaml").unlink()
    assert main([str(run)]) == 0
    assert "(all runs)" in capsys.readouterr().out
    (row,) = report_json(run)
    assert (row["variant"], row["n"], row["mean"], row["std"], row["ci95"]) == (
        "(all runs)",
        1,
        pytest.approx(0.9),
        None,
        [None, None],
    )
    assert row["baseline"] and row["seeds"] == [3]
    assert not (run / "learning_curves.png").exists()
    assert (run / "metric_test_acc.png").stat().st_size > 0
    assert "nothing to compare" in (run / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/nope"], "error: {tmp}/nope does not exist"),
        (["{tmp}/empty"], "error: no run dirs (dirs holding summary.json) under {tmp}/empty"),
        (
            ["{tmp}/sweep", "--baseline", "reg=x"],
            "error: unknown baseline 'reg=x'; the variants are: 'reg=none', 'reg=dropout'",
        ),
        (
            ["{tmp}/sweep", "--metric", "test/auc"],
            "error: unknown metric 'test/auc'; available: test/acc, test/loss, train/acc, train/loss, val/acc, val/loss",
        ),
    ],
)
def test_errors_are_one_line_with_exit_2(tmp_path: Path, capsys, args, message) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    make_sweep(tmp_path / "sweep", {"reg=none": [0.9, 0.91], "reg=dropout": [0.92, 0.93]}, (0, 1))
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.err == message.format(tmp=tmp_path) + "\n"
    assert not (tmp_path / "sweep" / "report.json").exists()


def test_build_raises_report_error_for_a_file(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ReportError, match="is not a directory"):
        build(tmp_path / "f.txt")


def test_narrow_terminal_gets_the_compact_table(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from dnnexp.report.render import print_report

    sweep = make_sweep(tmp_path, {"reg=none": [0.9, 0.92], "reg=dropout": [0.93, 0.95]}, (0, 1))
    wide, narrow = io.StringIO(), io.StringIO()
    print_report(build(sweep), Console(file=wide, width=400))
    print_report(build(sweep), Console(file=narrow, width=90))
    assert "narrow terminal" not in wide.getvalue() and "best" in wide.getvalue()
    assert "narrow terminal" in narrow.getvalue()
    assert max(len(line) for line in narrow.getvalue().splitlines()) <= 90


def test_an_interpolation_override_is_named_as_typed(tmp_path: Path) -> None:
    """Hydra's sweeper passes `data.split_seed=${seed}` to its jobs escaped as `$\\{seed\\}`."""
    for seed in (0, 1):
        make_run(tmp_path / f"{seed}", ["data.split_seed=$\\{seed\\}", f"seed={seed}"])
        make_run(tmp_path / f"{seed + 2}", ["data.split_seed=0", f"seed={seed}"])
    names = [v.name for v in group(find_runs(tmp_path))]
    assert sorted(names) == ["data.split_seed=${seed}", "data.split_seed=0"]


def test_runs_of_two_tasks_are_not_mixed_in_one_report(tmp_path: Path) -> None:
    make_run(tmp_path / "0", ["seed=0"])
    make_run(tmp_path / "1", ["seed=1"], extra={"task": "regression"})
    with pytest.raises(ReportError, match="holds runs of several tasks"):
        build(tmp_path)


# --- verdicts the data can carry, tags ---------------------------------------------------------


def test_two_seeds_never_give_a_verdict_five_with_a_real_difference_do(
    tmp_path: Path, capsys
) -> None:
    step = 1 / 360  # digits' test split: accuracy moves in steps of one image
    two = make_sweep(
        tmp_path / "two",
        {
            "reg=none": [0.95, 0.9611],
            "reg=dropout": [0.95 - 8 * step, 0.9611 - 8 * step],  # the same Δ on both seeds
            "reg=weight_decay": [0.99, 0.999],  # a large Δ that varies: tested, still 2 seeds
        },
        seeds=(0, 1),
    )
    assert main([str(two)]) == 0
    out = capsys.readouterr().out
    assert not [line for line in out.splitlines() if re.search(r"(better|worse)\W*$", line)]
    assert out.count("too few seeds to tell") >= 2  # in the table, and the footnote says why
    assert "fewer than 3 seeds on a side, or the same Δ on every seed" in out
    rows = {r["variant"]: r for r in report_json(two)}
    assert rows["reg=dropout"]["verdict"] == "too few seeds to tell"
    assert rows["reg=dropout"]["delta"] == pytest.approx(-8 * step)
    assert rows["reg=dropout"]["p_value"] is None  # no zero-variance t-test shown as 1e-15
    assert rows["reg=weight_decay"]["verdict"] == "too few seeds to tell"
    assert rows["reg=weight_decay"]["p_value"] is not None
    assert all(r["ci95"][1] is None or r["ci95"][1] <= 1.0 for r in rows.values())
    assert "intervals clipped to test/acc's range [0, 1]" in out
    assert "Too few seeds to tell" in (two / "report.md").read_text()

    # dropout 0.5 on diabetes (the README's example), five seeds: still a verdict
    base = [0.2712, 0.3790, 0.3311, 0.3902, 0.3510]
    gain = [0.091, 0.111, 0.075, 0.122, 0.082]
    five = make_sweep(
        tmp_path / "five",
        {"reg=none": base, "reg=dropout": [b + g for b, g in zip(base, gain, strict=True)]},
        seeds=range(5),
    )
    assert main([str(five)]) == 0
    capsys.readouterr()
    (row,) = [r for r in report_json(five) if r["variant"] == "reg=dropout"]
    assert row["verdict"] == "better" and row["p_adjusted"] < 0.05


def test_tags_are_kept_shown_and_filtered_on(tmp_path: Path, capsys) -> None:
    sweep = make_sweep(tmp_path, {"reg=none": [0.9, 0.91, 0.92]})
    for i, acc in enumerate([0.93, 0.94, 0.95]):
        make_run(
            sweep / str(3 + i),
            ["reg=dropout", f"seed={i}", *SHARED],
            acc,
            extra={"tags": ["v2", "ablation"]},
        )
    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "reg=dropout  [ablation, v2]" in out
    assert {r["variant"]: r["tags"] for r in report_json(sweep)} == {
        "reg=none": [],
        "reg=dropout": ["ablation", "v2"],
    }
    with (sweep / "report.csv").open(newline="") as f:
        assert [row["tags"] for row in csv.DictReader(f)][-1] == "v2;ablation"
    assert main([str(sweep), "--tags", "v2"]) == 0
    assert [(r["n"], r["tags"]) for r in report_json(sweep)] == [(3, ["ablation", "v2"])]
    capsys.readouterr()
    assert main([str(sweep), "--tags", "v3"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: no run under {sweep} has the tags v3; tags found: ablation, v2"
    )
