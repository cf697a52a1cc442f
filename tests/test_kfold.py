"""k-fold cross-validation: data.folds/data.fold, sweep=kfold and the report over folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dnnexp import stats
from dnnexp.config.errors import ConfigError
from dnnexp.data import digits
from dnnexp.data.splits import random_folds, stratified_folds
from dnnexp.report.analysis import build
from dnnexp.report.collect import find_runs, folds_from, group
from tests.conftest import compose, run_cli, run_dirs, run_here, summary
from tests.test_report import make_run


def ids_file(path: Path, y: np.ndarray, test_y: np.ndarray | None = None) -> Path:
    """An .npz whose sample i is a 1x1x2 uint8 image spelling i (uint8 images are not
    standardized), so every split's sample ids can be read back. With `test_y`: the file's
    own test split, ids from len(y) on."""

    def images(start: int, n: int) -> np.ndarray:
        i = np.arange(start, start + n)
        return np.stack([i // 256, i % 256], axis=1).astype(np.uint8).reshape(n, 1, 1, 2)

    if test_y is None:
        np.savez(path, x=images(0, len(y)), y=y)
    else:
        x_test = images(len(y), len(test_y))
        np.savez(path, x_train=images(0, len(y)), y_train=y, x_test=x_test, y_test=test_y)
    return path


def split_ids(path: Path, *overrides: str, task: str = "classification") -> dict[str, set[int]]:
    """The sample ids of train/val/test as `dnnexp train` would split the file."""
    from dnnexp.data.datamodule import ArrayDataModule

    cfg = compose("data=npz", f"data.path={path}", f"task={task}", *overrides)
    dm = ArrayDataModule(cfg.data, seed=0, task=task)
    dm.setup()
    out = {}
    for name, (x, _) in dm.splits.items():
        ids = (x[:, 0, 0, 0].long() * 256 + x[:, 0, 0, 1].long()).tolist()
        assert len(set(ids)) == len(ids), f"{name} holds a sample twice"
        out[name] = set(ids)
    return out


def check_partition(path: Path, folds: int, *overrides: str, task: str = "classification"):
    """The folds' validation sets are disjoint and cover the pool (all but the test split),
    each fold trains on the rest, and the test split is the one without folds. Returns the
    validation sets."""
    plain = split_ids(path, *overrides, task=task)
    pool = plain["train"] | plain["val"]
    vals = []
    for fold in range(folds):
        ids = split_ids(path, f"data.folds={folds}", f"data.fold={fold}", *overrides, task=task)
        assert ids["test"] == plain["test"]
        assert not ids["train"] & ids["val"] and ids["train"] | ids["val"] == pool
        vals.append(ids["val"])
    assert set().union(*vals) == pool and sum(map(len, vals)) == len(pool)
    assert max(map(len, vals)) - min(map(len, vals)) <= 1
    return vals


def test_folds_partition_training_and_validation_and_keep_the_test_split(tmp_path) -> None:
    y = digits.load().y.numpy()
    path = ids_file(tmp_path / "digits_ids.npz", y)
    vals = check_partition(path, 5)
    assert sum(map(len, vals)) == 1797 - 360  # the pool: digits without its 360 test images
    plain = split_ids(path)
    assert len(plain["val"]) == 180  # without folds: data.val_fraction, as before
    half = split_ids(path, "data.folds=5", "data.fold=2", "data.train_fraction=0.5")
    whole = split_ids(path, "data.folds=5", "data.fold=2")
    assert half["val"] == whole["val"] and half["train"] < whole["train"]  # subsampled after
    assert len(half["train"]) == pytest.approx(len(whole["train"]) / 2, abs=10)
    other = split_ids(path, "data.folds=5", "data.fold=2", "data.split_seed=1")
    assert other["val"] != whole["val"]  # data.split_seed draws the folds


def test_folds_are_stratified(tmp_path) -> None:
    y = digits.load().y.numpy()
    vals = check_partition(ids_file(tmp_path / "ids.npz", y), 5)
    counts = torch.stack(
        [torch.bincount(torch.as_tensor(y[sorted(v)]), minlength=10) for v in vals]
    )
    assert (counts.max(0).values - counts.min(0).values).max() <= 1  # each class spread evenly
    direct = stratified_folds(torch.as_tensor(y), 7, seed=0)
    per_class = torch.stack([torch.bincount(direct[y == c], minlength=7) for c in range(10)])
    assert (per_class.max(1).values - per_class.min(1).values).max() <= 1


def test_regression_folds_are_random_and_cover_the_pool(tmp_path) -> None:
    gen = np.random.default_rng(0)
    y = gen.normal(size=442).astype(np.float32)
    path = ids_file(tmp_path / "reg.npz", y)
    vals = check_partition(path, 4, task="regression")
    assert sum(map(len, vals)) == 442 - 89
    assert sorted(map(len, vals)) == [88, 88, 88, 89]
    order = random_folds(10, 3, seed=0)
    assert torch.bincount(order).tolist() == [4, 3, 3]
    assert not torch.equal(order, random_folds(10, 3, seed=1))


def test_a_files_own_test_split_stays_and_the_folds_cover_the_rest(tmp_path) -> None:
    y, test_y = np.arange(200) % 4, np.arange(50) % 4
    path = ids_file(tmp_path / "own.npz", y, test_y)
    vals = check_partition(path, 3)
    assert set().union(*vals) == set(range(200))
    assert split_ids(path, "data.folds=3")["test"] == set(range(200, 250))


def test_more_folds_than_a_class_has_samples_is_refused() -> None:
    y = torch.tensor([0] * 10 + [1] * 3)
    assert torch.bincount(stratified_folds(y, 3, seed=0)).tolist() == [5, 4, 4]
    with pytest.raises(ConfigError, match=r"data.folds=4 is more than the 3 .* class 1"):
        stratified_folds(y, 4, seed=0)
    with pytest.raises(ConfigError, match=r"data.folds=14 is more than the 13"):
        random_folds(13, 14, seed=0)


def test_the_knobs_are_typed_and_sweep_kfold_defaults_to_5_folds() -> None:
    from dnnexp.config.help import render

    assert (compose().data.folds, compose().data.fold) == (None, 0)
    cfg = compose("sweep=kfold")
    assert (cfg.data.folds, cfg.data.fold) == (5, 0)
    assert compose("sweep=kfold", "data.folds=10").data.folds == 10
    assert "kfold" in render() and "k-fold cross-validation" in render()
    from dnnexp.config.hydra_setup import fold_range

    assert fold_range(10) == "range(10)"
    for bad in (None, 1, 2.5, "abc", True):
        with pytest.raises(ConfigError, match="sweep=kfold .* needs data.folds=K"):
            fold_range(bad)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["data.folds=5", "data.fold=5"],
            "data.fold=5 is out of range for data.folds=5: must be 0 .. 4",
        ),
        (["data.fold=2"], "data.fold=2 needs data.folds"),
        (["data.folds=1"], "data.folds=1 is out of range: must be at least 2"),
        (["data.fold=-1"], "data.fold=-1 is out of range: must be at least 0"),
        (["data.folds=2.5"], "data.folds: Value '2.5' of type 'float' could not be converted"),
        (["-m", "sweep=kfold", "data.folds=null"], "data.folds=null: sweep=kfold runs one job"),
        (["-m", "sweep=kfold", "data.folds=1"], "data.folds=1: sweep=kfold runs one job"),
        (["data=wine", "data.folds=50"], "data.folds=50 is more than the 38 training"),
    ],
)
def test_bad_fold_settings_fail_in_one_line(tmp_path, args, message) -> None:
    where = "hydra.sweep.dir" if "-m" in args else "hydra.run.dir"
    result = run_here("train", *args, f"{where}={tmp_path / 'out'}", cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "out" / "summary.json").exists() and not run_dirs(tmp_path)


@pytest.mark.slow
def test_sweep_kfold_runs_every_fold_and_report_gives_the_cv_mean_and_sd(tmp_path) -> None:
    sweep = tmp_path / "kfold"
    args = ["-m", "sweep=kfold", "data.folds=3", "trainer=smoke", f"hydra.sweep.dir={sweep}"]
    result = run_cli("train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = run_dirs(sweep)
    assert len(runs) == 3  # data.folds=3, not sweep=kfold's default 5
    summaries = [summary(r) for r in runs]
    assert all(s["status"] == "completed" for s in summaries)
    assert sorted(o for s in summaries for o in s["overrides"] if o.startswith("data.fold=")) == [
        "data.fold=0",
        "data.fold=1",
        "data.fold=2",
    ]
    report = run_cli("report", str(sweep), cwd=tmp_path, timeout=120)
    assert report.returncode == 0, report.stderr
    vals = [s["metrics"]["val/acc"] for s in summaries]
    tests = [s["metrics"]["test/acc"] for s in summaries]
    line = next(x for x in report.stdout.splitlines() if "cross-validation" in x)
    assert line.startswith("3-fold cross-validation, (all runs): val/acc ")
    expected = (
        f"val/acc {stats.mean(vals):.4f} ± {stats.std(vals):.4f}, test/acc"
        f" {stats.mean(tests):.4f} ± {stats.std(tests):.4f} (mean ± SD over 3 folds)"
    )
    assert expected in line
    assert "test/acc over folds" in report.stdout and "SD over folds" in report.stdout
    (row,) = json.loads((sweep / "report.json").read_text())
    assert (row["folds"], row["fold_ids"], row["n"]) == (3, [0, 1, 2], 3)
    assert row["cv_score"]["mean"] == pytest.approx(stats.mean(vals))
    assert "## Cross-validation" in (sweep / "report.md").read_text()
    # the folds share the test split (not the training split): a cross-validation ensemble
    from dnnexp.cli import main

    assert main(["eval", f"ckpt={sweep}", "ensemble=mean"]) == 0
    ensemble = json.loads((sweep / "ensemble_mean.json").read_text())
    assert len(ensemble["members"]) == 3 and 0 < ensemble["metrics"]["acc"] <= 1


# --- the report over folds (fabricated run dirs, no training) ----------------------------------


def make_cv_sweep(root: Path, values: dict[str, list[float]], seeds=(0,), folds: int = 5) -> Path:
    """A sweep=kfold multirun: one job per (variant, seed, fold)."""
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    job = 0
    for reg, accs in values.items():
        for seed in seeds:
            for fold in range(folds):
                acc = accs[fold] + 0.001 * seed
                shared = ["sweep=kfold", f"data.folds={folds}"]
                make_run(root / str(job), [f"data.fold={fold}", reg, f"seed={seed}", *shared], acc)
                job += 1
    return root


def test_runs_that_differ_in_the_fold_are_one_variant_and_pair_by_fold(tmp_path) -> None:
    base = [0.80, 0.90, 0.85, 0.95, 0.88]
    better = [v + d for v, d in zip(base, [0.011, 0.009, 0.010, 0.012, 0.008], strict=True)]
    sweep = make_cv_sweep(tmp_path / "cv", {"reg=none": base, "reg=dropout": better})
    variants = group(find_runs(sweep))
    assert [(v.name, len(v.runs)) for v in variants] == [("reg=none", 5), ("reg=dropout", 5)]
    assert [r.unit for r in variants[0].runs] == [(0, f) for f in range(5)]
    report = build(sweep)
    drop = report.rows[1]
    assert drop.comparison.test == stats.PAIRED and drop.verdict == "better"  # Welch: noise
    assert stats.compare([(None, v) for v in base], [(None, v) for v in better]).p_value > 0.05
    assert (drop.folds, drop.fold_ids, report.over) == (5, [0, 1, 2, 3, 4], "folds")
    assert drop.val_summary.mean == pytest.approx(stats.mean(better) + 0.01)


def test_seeds_times_folds_pair_by_seed_and_fold(tmp_path) -> None:
    accs = [0.80, 0.90, 0.85]
    sweep = make_cv_sweep(tmp_path / "cv", {"reg=none": accs, "reg=dropout": accs}, (0, 1), 3)
    report = build(sweep)
    row = report.rows[1]
    assert row.summary.n == 6 and row.comparison.test == stats.PAIRED
    assert report.over == "folds × seeds"
    from dnnexp.report.render import cross_validation

    assert "(mean ± SD over 6 runs: 3 folds × 2 seeds)" in cross_validation(report)[0]


def test_the_fold_is_read_from_the_overrides_or_the_job_config(tmp_path) -> None:
    run = make_run(tmp_path / "run", ["sweep=kfold", "data.fold=3", "seed=0"])
    assert folds_from(["sweep=kfold", "data.fold=3"], run) == (None, None)  # folds unknown
    (run / ".hydra" / "config.yaml").write_text(
        "seed: 0\ndata:\n  name: digits\n  folds: 5\n  fold: 3\nmodel:\n  name: mlp\n"
    )
    assert folds_from(["sweep=kfold", "data.fold=3"], run) == (3, 5)
    assert folds_from(["sweep=kfold"], run) == (3, 5)
    assert folds_from(["data.folds=4"], tmp_path) == (0, 4)  # fold 0 by default
    (run / ".hydra" / "config.yaml").write_text("data:\n  folds: null\n  fold: 0\n")
    assert folds_from([], run) == (None, None)
    assert find_runs(tmp_path)[0].unit == 0  # no folds: the seed alone pairs
