"""Multi-task learning (`task=multitask`): masked missing labels (loss and gradient), per-head
metrics against scikit-learn, the score as the named head's validation metric, mixed tables and
text with missing labels, the report's per-head columns, predict and export through the CLI,
and the one-line refusals."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import pytest
import torch

from dnnexp.tasks.metrics import MultiTaskStats
from dnnexp.tasks.multitask import MultiTask
from tests.conftest import compose, run_cli, run_here, summary

NAN = float("nan")
KINDS = ["hi", "lo", "mid"]


def write_mixed(path: Path, n: int = 240, *, seed: int = 0) -> list[dict]:
    """Two features and a category; a classification head `kind` (text labels, every 7th
    missing) and a regression head `size` (every 5th missing); every 35th row has neither."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        x1, x2 = rng.gauss(0, 1), rng.gauss(0, 1)
        kind = "hi" if x1 > 0.4 else "lo" if x1 < -0.4 else "mid"
        size = 3 * x2 + 10 + rng.gauss(0, 0.3)
        rows.append(
            {
                "x1": f"{x1:.4f}",
                "x2": f"{x2:.4f}",
                "cat": rng.choice("uvw"),
                "kind": "" if i % 7 == 0 else kind,
                "size": "" if i % 5 == 0 else f"{size:.3f}",
            }
        )
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


TABLE = ["task=multitask", "data=csv", "task.heads=[kind,size:regression]"]


def _heads(weights: tuple[float, float] = (1.0, 0.5)) -> list[dict]:
    return [
        {"name": "kind", "column": "kind", "kind": "classification", "loss": "cross_entropy",
         "weight": weights[0], "width": 3, "classes": KINDS},
        {"name": "size", "column": "size", "kind": "regression", "loss": "huber",
         "weight": weights[1], "width": 1, "classes": None},
    ]  # fmt: skip


def test_a_missing_label_masks_its_heads_loss_and_gradient_for_that_row_only() -> None:
    g = torch.Generator().manual_seed(0)
    objective = MultiTask(_heads(), [1.0, 2.0], label_smoothing=0.1, huber_delta=0.5)
    output = torch.randn(8, 4, generator=g, dtype=torch.float64, requires_grad=True)
    kind = torch.tensor([0, 1, NAN, 2, NAN, 1, 0, 2], dtype=torch.float64)
    size = torch.tensor([0.5, NAN, -1.0, 2.0, 0.1, NAN, NAN, 1.5], dtype=torch.float64)
    loss, _ = objective.loss(output, torch.stack([kind, size], 1))
    loss.backward()
    # the same loss from each head's labelled rows alone
    reference = output.detach().clone().requires_grad_(True)
    has_kind, has_size = ~torch.isnan(kind), ~torch.isnan(size)
    expected = 1.0 * torch.nn.functional.cross_entropy(
        reference[has_kind, :3], kind[has_kind].long(), label_smoothing=0.1
    ) + 0.5 * torch.nn.functional.huber_loss(reference[has_size, 3], size[has_size], delta=0.5)
    expected.backward()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
    assert torch.allclose(output.grad, reference.grad, atol=1e-15)
    assert bool((output.grad[~has_kind, :3] == 0).all())  # a missing label: no gradient at all
    assert bool((output.grad[~has_size, 3] == 0).all())
    assert bool((output.grad[has_kind, :3] != 0).any())
    # a batch in which a head has no label: that head gives 0, the loss stays finite
    none = torch.stack([kind, torch.full_like(size, NAN)], 1)
    alone = objective.loss(output, none)[0].detach()
    cross = torch.nn.functional.cross_entropy(
        output.detach()[has_kind, :3], kind[has_kind].long(), label_smoothing=0.1
    )
    assert math.isfinite(float(alone)) and float(alone) == pytest.approx(float(cross))


def _sklearn(y: torch.Tensor, pred: torch.Tensor, kind: str) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, r2_score, root_mean_squared_error

    if kind == "classification":
        return {"acc": accuracy_score(y, pred), "f1": f1_score(y, pred, average="macro")}
    return {"r2": r2_score(y, pred), "rmse": root_mean_squared_error(y, pred)}


def test_per_head_metrics_match_sklearn_on_the_labelled_rows_also_over_two_ranks() -> None:
    g = torch.Generator().manual_seed(3)
    n = 301
    logits = torch.randn(n, 3, generator=g, dtype=torch.float64)
    truth = torch.randint(0, 3, (n,), generator=g).double()
    truth[logits.argmax(1) == 0] = 0  # a better than chance classifier
    raw = 50 + 20 * torch.randn(n, generator=g, dtype=torch.float64)
    predicted = raw + 8 * torch.randn(n, generator=g, dtype=torch.float64)
    truth[::6], raw[::4] = NAN, NAN  # missing labels
    mean, std = 48.0, 19.0  # "training" statistics, not this split's
    heads = _heads((1.0, 0.25))
    objective = MultiTask(heads, [1.0, std], huber_delta=1.0)
    output = torch.cat([logits, ((predicted - mean) / std)[:, None]], 1)
    y = torch.stack([truth, (raw - mean) / std], 1)

    def fed(rows: slice) -> MultiTaskStats:
        stats = objective.new_stats()
        for start in range(rows.start, rows.stop, 64):
            part = slice(start, min(start + 64, rows.stop))
            stats.update(output[part], y[part], objective.eval_loss(output[part], y[part]))
        return stats

    got = fed(slice(0, n)).compute()
    labelled = ~torch.isnan(truth)
    for key, value in _sklearn(
        truth[labelled], logits.argmax(1)[labelled], "classification"
    ).items():
        assert got[f"kind/{key}"] == pytest.approx(value, rel=1e-9), key
    labelled = ~torch.isnan(raw)
    for key, value in _sklearn(raw[labelled], predicted[labelled], "regression").items():
        assert got[f"size/{key}"] == pytest.approx(value, rel=1e-9), key
    kind_ce = torch.nn.functional.cross_entropy(
        logits[~torch.isnan(truth)], truth[~torch.isnan(truth)].long()
    )
    size_huber = torch.nn.functional.huber_loss(output[labelled, 3], y[labelled, 1])
    assert got["kind/loss"] == pytest.approx(float(kind_ce), rel=1e-9)
    assert got["loss"] == pytest.approx(float(kind_ce + 0.25 * size_huber), rel=1e-9)
    # two ranks' sums added (one all-reduce) give the whole split's metrics
    other = fed(slice(100, n)).sums()
    assert fed(slice(0, 100)).compute(lambda sums: sums + other) == pytest.approx(got, rel=1e-12)
    # a split in which a head has no label at all: NaN for it, no error
    empty = objective.new_stats()
    only_kind = y[:10].clone()
    only_kind[:, 1] = NAN
    empty.update(output[:10], only_kind, objective.eval_loss(output[:10], only_kind))
    metrics = empty.compute()
    assert math.isnan(metrics["size/r2"]) and math.isfinite(metrics["kind/acc"])


def test_a_mixed_table_keeps_every_row_and_standardizes_by_the_labelled(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from dnnexp.data.datamodule import ArrayDataModule, task_heads

    rows = write_mixed(tmp_path / "m.csv")
    cfg = compose(*TABLE, f"data.path={tmp_path / 'm.csv'}")
    data = ArrayDataModule(cfg.data, cfg.seed, task="multitask", heads=task_heads(cfg.task))
    data.setup()
    # a row without any label stays (it trains nothing): the split is the file's, whichever
    # heads are picked, so a single-head baseline is tested on the same rows
    assert [h["classes"] for h in data.head_info] == [KINDS, None]
    assert data.num_outputs == 4 and data.preprocess["heads"] == data.head_info
    y = data.splits["train"][1]
    assert bool(torch.isnan(y[:, 0]).any()) and bool(torch.isnan(y[:, 1]).any())
    sizes = y[:, 1][~torch.isnan(y[:, 1])]
    assert float(sizes.mean()) == pytest.approx(0.0, abs=1e-5)  # labelled rows standardized
    assert float(sizes.std()) == pytest.approx(1.0, abs=1e-5)
    assert data.target_stats["mean"][0] == 0.0 and data.target_stats["std"][0] == 1.0
    # a row without any label stays (it trains nothing): the split is the file's, whichever
    # heads are picked, so a single-head baseline is tested on the same rows
    neither = sum(1 for r in rows if not r["kind"] and not r["size"])
    said = capsys.readouterr().out
    assert f"{neither} rows have no label for any head (task.heads): kept" in said
    assert sum(len(y) for _, y in data.splits.values()) == len(rows)
    alone = compose(  # a table's other columns are features: the other head's is ignored
        "task=multitask",
        "data=csv",
        f"data.path={tmp_path / 'm.csv'}",
        "task.heads=[size:regression]",
        "data.ignore=[kind]",
    )
    single = ArrayDataModule(alone.data, 0, task="multitask", heads=task_heads(alone.task))
    single.setup()
    assert torch.equal(single.splits["test"][0], data.splits["test"][0])
    joint, own = data.splits["test"][1][:, 1], single.splits["test"][1][:, 0]
    assert torch.equal(own.nan_to_num(99.0), joint.nan_to_num(99.0))


def test_text_takes_several_label_columns_numbers_in_numeric_order(tmp_path: Path) -> None:
    from dnnexp.data.datamodule import ArrayDataModule, task_heads

    words = ["a", "bb", "ccc", "dddd", "eeeeeeeeee", "ffffffffffff"] * 10
    with open(tmp_path / "w.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["word", "letters", "parity"])
        for i, word in enumerate(words):
            writer.writerow([word, len(word), "" if i % 4 == 0 else ("odd", "even")[len(word) % 2]])
    cfg = compose(
        "task=multitask", "data=text", f"data.path={tmp_path / 'w.csv'}", "data.text=word",
        "data.tokens=char", "model=textcnn", "task.heads=[letters,parity]",
    )  # fmt: skip
    data = ArrayDataModule(cfg.data, cfg.seed, task="multitask", heads=task_heads(cfg.task))
    data.setup()
    assert data.head_info[0]["classes"] == ["1", "2", "3", "4", "10", "12"]
    assert data.head_info[1]["classes"] == ["even", "odd"] and data.num_outputs == 8


def test_the_score_is_the_named_heads_validation_metric_at_the_best_epoch(
    tmp_path: Path,
) -> None:
    from dnnexp.evaluation.evaluate import evaluate
    from dnnexp.sweep.job import objective_value
    from dnnexp.tasks.module import TrainingModule
    from dnnexp.training.run import train

    write_mixed(tmp_path / "m.csv")
    overrides = [
        *TABLE, f"data.path={tmp_path / 'm.csv'}", "task.score=size/rmse",
        "reg.early_stopping.monitor=val/kind/acc", "trainer.max_epochs=4",
        "trainer.progress_bar=false", "trainer.model_summary=false", "logger=none",
    ]  # fmt: skip
    cfg = compose(*overrides)
    (tmp_path / "run").mkdir()
    result = train(cfg, run_dir=tmp_path / "run", overrides=overrides)
    assert result["status"] == "completed" and result["score"] == "val/size/rmse"
    history = TrainingModule.history_of(
        torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    )
    best = max(range(len(history)), key=lambda i: (history[i]["val/kind/acc"], -i))
    assert result["best_epoch"] == history[best]["epoch"]
    score = objective_value(summary(tmp_path / "run"))
    assert score == history[best]["val/size/rmse"] != result["metrics"]["test/size/rmse"]
    assert {"val/kind/acc", "val/size/r2", "test/kind/f1"} <= set(result["metrics"])
    evaluated = evaluate(tmp_path / "run" / "checkpoints" / "best.ckpt", tmp_path / "e.json", [])
    for key in ("test/kind/acc", "test/size/r2", "test/loss"):
        assert evaluated["metrics"][key] == pytest.approx(result["metrics"][key], abs=1e-6)


def _fake_run(root: Path, job: int, heads: list[str], seed: int, values: dict) -> None:
    run = root / str(job)
    run.mkdir(parents=True)
    metrics = {f"test/{h}/acc": values[h] for h in heads}
    metrics.update({f"val/{h}/acc": values[h] - 0.01 for h in heads})
    body = {
        "status": "completed",
        "task": "multitask",
        "seed": seed,
        "overrides": [f"task.heads=[{','.join(heads)}]", f"seed={seed}"],
        "heads": [{"name": h, "kind": "classification"} for h in heads],
        "score": f"val/{heads[0]}/acc",
        "metrics": metrics,
    }
    (run / "summary.json").write_text(json.dumps(body))


def test_the_report_shows_a_column_per_head_and_pairs_only_where_both_have_it(
    tmp_path: Path,
) -> None:
    from dnnexp.report.analysis import build
    from dnnexp.report.render import head_cells, json_rows, markdown

    job = 0
    for seed in range(4):
        wobble = 0.002 * seed
        for heads, values in (
            (["syl", "stress"], {"syl": 0.80 + wobble, "stress": 0.84 + wobble}),
            (["syl"], {"syl": 0.78 + wobble + 0.001 * (seed % 2)}),
            (["stress"], {"stress": 0.85 + wobble}),
        ):
            _fake_run(tmp_path, job, heads, seed, values)
            job += 1
    report = build(tmp_path)
    assert report.metric == "test/syl/acc"  # the baseline's (the first variant's) score
    assert [m for m, _ in report.heads] == ["test/syl/acc", "test/stress/acc"]
    assert [r.name for r in report.rows] == [
        "task.heads=[syl,stress]",
        "task.heads=[syl]",
        "task.heads=[stress]",
    ]
    syl, stress = (cells for _, cells in report.heads)
    assert syl[1].comparison.test == "paired t" and syl[1].comparison.delta == pytest.approx(
        -0.02 + 0.0005, abs=1e-9
    )
    assert syl[2].comparison is None and syl[2].summary.n == 0  # no syl head: empty
    assert stress[1].comparison is None and stress[2].comparison.delta == pytest.approx(0.01)
    header, rows = head_cells(report)
    assert len(header) == 5 and rows[2][1] == "—" and rows[0][2] == "baseline"
    assert "p " in rows[1][2] and "[" in rows[1][1]
    entry = json_rows(report)[1]["heads"]
    assert entry["test/syl/acc"]["n"] == 4 and entry["test/stress/acc"]["delta"] is None
    text = markdown(report, [])
    assert "## Per head" in text and "best val score" in text


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["task.heads=[kind,kind:regression]"], "task.heads: two heads named 'kind'"),
        (["task.heads=[kind]", "task.score=colour/acc"], "task.score=colour/acc names no head"),
        (["task.heads=[kind]", "task.score=kind/r2"], "r2 is not a metric of the classification"),
        (["task.heads=[kind]", "task.score=test/kind/acc"], "the score is a validation metric"),
        (["task.heads=[]"], "task.heads is empty"),
        (["task.heads=[kind:ordinal]"], "task.heads[0].kind='ordinal' is not allowed"),
        (["task.heads=[{column:kind,loss:mse}]"], "task.heads[0].loss=mse is not a loss of a"),
        (["task.heads=[a:b:c:d]"], "is not COLUMN[:KIND[:WEIGHT]]"),
        (["task.heads=[{column:kind,colour:red}]"], "task.heads[0].colour"),
        (["task.heads=[x1]", "data.features=[x1,x2]"], "task.heads[0].column=x1 is an input"),
        (["task.heads=[kind]", "reg.early_stopping.monitor=val/size/acc"], "is not a metric"),
    ],
)
def test_bad_heads_are_refused_in_one_line_before_anything_loads(
    tmp_path: Path, extra: list[str], expected: str
) -> None:
    write_mixed(tmp_path / "m.csv", 20)
    args = ["task=multitask", "data=csv", f"data.path={tmp_path / 'm.csv'}", *extra]
    proc = run_here("train", *args, cwd=tmp_path)
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["data=csv", "task.heads=[colour]"], "task.heads[0].column=colour names no column"),
        (["data=text", "data.text=cat", "task.heads=[kind:regression]"], "is a regression head"),
        (["data=wine", "task.heads=[kind]"], "task=multitask does not fit data=wine"),
    ],
)
def test_a_head_the_data_cannot_give_is_refused_in_one_line_before_training(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    write_mixed(tmp_path / "m.csv", 20)
    path = [] if "data=wine" in args else [f"data.path={tmp_path / 'm.csv'}"]
    model = ["model=textcnn"] if "data=text" in args else []
    proc = run_here("train", "task=multitask", *args, *path, *model, cwd=tmp_path)
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("outputs/**/metrics.csv"))  # nothing trained


@pytest.mark.slow
def test_train_predict_and_export_two_heads_through_the_cli(tmp_path: Path) -> None:
    """The compact heads syntax on the command line; predict writes a column per head (a
    class name, a value in the target's units) and scores the input's labels as the run's
    test split; the ONNX export passes its parity check with both heads."""
    write_mixed(tmp_path / "train.csv", 240, seed=1)
    write_mixed(tmp_path / "test.csv", 60, seed=2)
    args = [
        *TABLE, "data.path=train.csv", "data.test_path=test.csv", "trainer.max_epochs=3",
        "trainer.progress_bar=false", "trainer.model_summary=false", "hydra.run.dir=run",
    ]  # fmt: skip
    proc = run_cli("train", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = summary(tmp_path / "run")
    assert [h["name"] for h in result["heads"]] == ["kind", "size"]
    predicted = run_cli(
        "predict", "ckpt=run", "input=test.csv", "out=p.csv", "probs=true", cwd=tmp_path
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 60 and rows[0]["predicted_kind"] in KINDS
    assert float(rows[0]["predicted_size"]) == pytest.approx(10, abs=8)  # the target's units
    assert {"probability_kind", "prob_kind_hi", "prob_kind_mid"} <= set(rows[0])
    metrics = json.loads((tmp_path / "p.metrics.json").read_text())["metrics"]
    for key in ("kind/acc", "kind/f1", "size/rmse", "size/r2", "loss"):
        assert metrics[key] == pytest.approx(result["metrics"][f"test/{key}"], abs=1e-5), key
    exported = run_cli("export", "ckpt=run", "format=onnx", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    sidecar = json.loads((tmp_path / "run" / "export" / "model.onnx.json").read_text())
    assert sidecar["parity"]["passed"] and sidecar["parity"]["same_predictions"]
    heads = sidecar["output"]["heads"]
    assert [h["columns"] for h in heads] == [[0, 3], [3, 4]] and heads[0]["classes"] == KINDS
    assert sidecar["parity"]["heads"]["kind"]["exported_acc"] == pytest.approx(
        result["metrics"]["test/kind/acc"], abs=1e-6
    )
