"""Using a trained run: `dnnexp predict` on new files, `dnnexp export` (ONNX, .pt2) with its
parity check and int8 quantization, and ensembles in `dnnexp eval` / `dnnexp export`."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from dnnexp.cli import main
from dnnexp.config.errors import RunError
from dnnexp.data.local_files import DataError
from dnnexp.inference.inputs import read_inputs
from dnnexp.inference.model import TrainedRun
from tests.conftest import run_cli, summary

pytestmark = pytest.mark.slow


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images[:, None].astype(np.float32), digits.target.astype(np.int64)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default MLP trained on digits from an npz with its own test split (the last 360)."""
    cwd = tmp_path_factory.mktemp("inference")
    x, y = _digits()
    np.savez(
        cwd / "digits.npz", x_train=x[:-360], y_train=y[:-360], x_test=x[-360:], y_test=y[-360:]
    )
    proc = run_cli(
        "train", "data=npz", f"data.path={cwd / 'digits.npz'}", "trainer.max_epochs=6",
        "trainer.progress_bar=false", "hydra.run.dir=run", cwd=cwd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return cwd / "run"


def _cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_on_npz_and_csv_gives_the_runs_test_accuracy(
    run: Path, capsys: pytest.CaptureFixture
) -> None:
    x, y = _digits()
    x_test, y_test = x[-360:], y[-360:]
    np.savez(run.parent / "new.npz", x=x_test, y=y_test)
    with open(run.parent / "new.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", *(f"p{i}" for i in range(64)), "label"])
        for i, (image, label) in enumerate(zip(x_test.reshape(360, 64), y_test, strict=True)):
            writer.writerow([f"img{i}", *(int(v) for v in image), label])
    expected = summary(run)["metrics"]["test/acc"]
    code, out, err = _cli(capsys, "predict", f"ckpt={run}", f"input={run.parent / 'new.npz'}")
    assert code == 0, err
    assert "360 predictions" in out and "confusion matrix" in out
    metrics = json.loads((run / "predict" / "new.metrics.json").read_text())
    assert metrics["metrics"]["acc"] == pytest.approx(expected, abs=1e-12)
    assert sum(map(sum, metrics["confusion"])) == 360
    code, out, err = _cli(
        capsys, "predict", f"ckpt={run}", f"input={run.parent / 'new.csv'}", "probs=true",
        f"out={run.parent / 'preds.csv'}",
    )  # fmt: skip
    assert code == 0, err
    rows = list(csv.DictReader(open(run.parent / "preds.csv")))
    assert len(rows) == 360 and rows[0]["id"] == "img0"  # a non-feature column passes through
    assert list(rows[0])[:3] == ["id", "prediction", "probability"] and "prob_9" in rows[0]
    accuracy = np.mean(
        [r["prediction"] == str(label) for r, label in zip(rows, y_test, strict=True)]
    )
    assert accuracy == pytest.approx(expected, abs=1e-12)
    assert json.loads((run.parent / "preds.metrics.json").read_text())["metrics"]["acc"] == accuracy
    # unlabelled: predictions only; the earlier output is not overwritten
    np.savez(run.parent / "new.npz", x=x_test[:5])
    code, out, err = _cli(capsys, "predict", f"ckpt={run}", f"input={run.parent / 'new.npz'}")
    assert code == 0 and "metrics" not in out
    assert len((run / "predict" / "new-1.csv").read_text().splitlines()) == 6
    assert (run / "predict" / "new.metrics.json").is_file()


def _fake_run(features: list[str] | None, input_shape: list[int]) -> TrainedRun:
    """What `read_inputs` reads of a run: its inputs, classes, data config."""
    hparams = {
        "preprocess": {"dtype": "float32", "mean": [0.0], "std": [1.0], "features": features},
        "input_shape": input_shape,
        "num_outputs": 2,
        "classes": ["no", "yes"],
    }
    cfg = OmegaConf.create(
        {"data": {"name": "csv", "target": "label"}, "task": {"name": "classification"}}
    )
    return TrainedRun(torch.nn.Identity(), hparams, cfg, Path("best.ckpt"), None)


def test_bad_inputs_are_one_line_each(tmp_path: Path) -> None:
    tabular = _fake_run(["a", "b"], [2])
    image = _fake_run(None, [1, 8, 8])

    def write(name: str, text: str) -> Path:
        (tmp_path / name).write_text(text)
        return tmp_path / name

    np.savez(tmp_path / "small.npz", x=np.zeros((3, 1, 4, 4), np.float32))
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 1, 8, 8), np.float32))
    np.savez(tmp_path / "flat.npz", x=np.zeros((3, 2), np.float32))
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "images" / "a.png")
    table64 = _fake_run([f"f{i}" for i in range(64)], [64])
    cases = [
        (tabular, write("ok.csv", "id,b,a,label\n7,1,2,yes\n"), None),
        (tabular, write("cols.csv", "id,a,label\n1,2,no\n"), "no column 'b' (the model's features)"),
        (tabular, write("cell.csv", "a,b\n1,2\n3,x\n"), "row 3, column 'b' is not a number: 'x'"),
        (tabular, write("label.csv", "a,b,label\n1,2,maybe\n"), "label 'maybe' is not one of"),
        (tabular, write("head.csv", "a,b\n"), "empty"),
        (image, write("wide.csv", "p0,p1\n1,2\n"), "2 numeric columns besides label (p0, p1, ...), but the model takes 64 features"),
        (image, tmp_path / "flat.npz", "2 features per row, but the model takes 64 (an input of (1, 8, 8))"),
        (image, tmp_path / "small.npz", r"rows of shape \(1, 4, 4\), but the model takes \(1, 8, 8\)"),
        (image, tmp_path / "empty.npz", "empty"),
        (table64, tmp_path / "images", "an image, but the model takes rows of 64 values"),
        (image, write("notes.txt", "hello"), "unknown format"),
        (image, tmp_path / "missing.npz", "no such file"),
    ]  # fmt: skip
    for run, path, message in cases:
        if message is None:
            inputs = read_inputs(path, run)
            assert inputs.x.tolist() == [[2.0, 1.0]] and inputs.columns == {"id": ["7"]}
            assert inputs.labels.tolist() == [1]
            continue
        with pytest.raises(
            DataError, match=message if "\\" in message else re.escape(message)
        ) as err:
            read_inputs(path, run)
        assert "\n" not in str(err.value)


def test_inputs_far_outside_the_training_range_get_a_warning_or_with_strict_a_refusal(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    x, y = _digits()  # the model was trained on pixels 0..16
    np.savez(tmp_path / "bytes.npz", x=(x[-360:] * 255 / 16).astype(np.uint8), y=y[-360:])
    np.savez(tmp_path / "same.npz", x=x[-360:], y=y[-360:])
    bytes_args = ["predict", f"ckpt={run}", f"input={tmp_path / 'bytes.npz'}"]
    code, out, err = _cli(capsys, *bytes_args, f"out={tmp_path / 'bytes.csv'}")
    assert code == 0
    assert err.strip() == (
        f"warning: input={tmp_path / 'bytes.npz'}: values 0..255, far outside the 0..16 the model"
        " was trained on: its predictions are unreliable; rescale the inputs to the training"
        " data's units (strict=true refuses such inputs)"
    )
    code, out, err = _cli(capsys, *bytes_args, "strict=true", f"out={tmp_path / 'strict.csv'}")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "strict.csv").exists()
    code, out, err = _cli(
        capsys, "predict", f"ckpt={run}", f"input={tmp_path / 'same.npz'}", "strict=true"
    )
    assert code == 0 and "warning" not in err
    code, out, err = _cli(
        capsys, "predict", f"ckpt={run}", f"input={tmp_path / 'same.npz'}", "beam=3"
    )
    assert (
        code == 2
        and err == f"error: beam=3 decodes sequences: ckpt={run} is a task=classification run\n"
    )


def test_checkpoints_that_are_not_usable_are_refused_in_one_line(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.ckpt")
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["data_fingerprint"] = "elsewhere"  # other training splits only:
    torch.save(ckpt, tmp_path / "folds.ckpt")  # a member of the same ensemble, as a fold is
    ckpt["hyper_parameters"]["test_fingerprint"] = "elsewhere"
    torch.save(ckpt, tmp_path / "moved.ckpt")
    cases = [
        (("predict", f"ckpt={tmp_path / 'other.ckpt'}", "input=x.npz"), "not a dnnexp checkpoint"),
        (("predict", f"ckpt={tmp_path}", "input=x.npz"), "not a run dir"),
        (("predict", f"ckpt={run}", "input=x.npz", "probs=maybe"), "expected true or false"),
        (("export", f"ckpt={run}", "format=tflite"), "allowed values are onnx, pt2"),
        (("export", f"ckpt={run}"), "format= is missing: dnnexp export ckpt=RUN_DIR format=onnx"),
        (
            ("eval", f"ckpt=[{run},{tmp_path / 'moved.ckpt'}]", "ensemble=mean"),
            "members differ in test split",
        ),
        (("eval", f"ckpt={tmp_path}", "ensemble=vote"), "no completed run"),
    ]
    for args, message in cases:
        code, out, err = _cli(capsys, *args)
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
    code, out, err = _cli(
        capsys, "eval", f"ckpt=[{run},{tmp_path / 'folds.ckpt'}]", "ensemble=mean"
    )
    assert code == 0, err


def test_export_to_onnx_and_pt2_passes_the_parity_check_with_int8(
    run: Path, capsys: pytest.CaptureFixture
) -> None:
    import onnxruntime as ort

    code, out, err = _cli(capsys, "export", f"ckpt={run}", "format=onnx", "quantize=int8")
    assert code == 0, err
    assert "passed" in out and "int8" in out
    sidecar = json.loads((run / "export" / "model.onnx.json").read_text())
    assert sidecar["parity"]["passed"] and sidecar["parity"]["max_abs_diff"] <= 1e-5
    assert sidecar["output"]["classes"] == [str(i) for i in range(10)]
    assert sidecar["input"]["shape"] == ["batch", 1, 8, 8]
    assert {"dnnexp", "torch"} <= set(sidecar["versions"])
    int8 = sidecar["int8"]
    assert int8["smaller"] >= 3.0  # int8 weights: at least 3x smaller on disk
    assert int8["exported_acc"] >= sidecar["parity"]["pytorch_acc"] - 0.02
    assert not (run / "export" / "model.onnx.data").exists()  # one file
    # raw inputs in, probabilities out, any batch size
    session = ort.InferenceSession(str(run / "export" / "model.onnx"))
    x, _ = _digits()
    for n in (1, 7):
        probs = session.run(None, {"input": x[:n]})[0]
        assert probs.shape == (n, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    code, out, err = _cli(capsys, "export", f"ckpt={run}", "format=pt2")
    assert code == 0 and "passed" in out, err
    program = torch.export.load(str(run / "export" / "model.pt2")).module()
    assert program(torch.from_numpy(x[:3])).shape == (3, 10)


def test_without_the_export_extra_onnx_says_what_to_install(
    run: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    code, out, err = _cli(capsys, "export", f"ckpt={run}", "format=onnx", "out=never.onnx")
    assert code == 2 and "pip install 'dnnexp[export]'" in err and err.count("\n") == 1
    assert not Path("never.onnx").exists()


def test_every_model_family_exports_and_passes_the_parity_check(tmp_path: Path) -> None:
    """Each family freshly built (the check compares the exported model with PyTorch's, trained
    or not), with digits' real preprocessing and test split."""
    from dnnexp.data.datamodule import ArrayDataModule
    from dnnexp.inference.export import export
    from dnnexp.inference.model import InferenceModel
    from dnnexp.models import build_model
    from tests.conftest import compose

    data = None
    for family in ("mlp", "cnn", "resnet", "resnext", "densenet", "rnn", "lstm", "gru"):
        cfg = compose(f"model={family}")
        if data is None:
            data = ArrayDataModule(cfg.data, seed=0)
            data.setup()
        shape = list(data.input_shape)
        torch.manual_seed(0)
        model = build_model(cfg.model, tuple(shape), data.num_outputs, 0.0)
        hparams = {
            "config": OmegaConf.to_container(cfg, resolve=True),
            "input_shape": shape,
            "num_outputs": data.num_outputs,
            "classes": data.classes,
            "data_fingerprint": data.fingerprint,
            "preprocess": data.preprocess,
        }
        wrapped = InferenceModel(model, data.preprocess, shape).eval()
        trained = TrainedRun(wrapped, hparams, cfg, tmp_path / family / "best.ckpt", None)
        for fmt in ("onnx", "pt2"):
            sidecar = export(trained, fmt, tmp_path / f"{family}.{fmt}", timing=False)
            assert sidecar["parity"]["passed"], (family, fmt, sidecar["parity"])


def test_an_ensemble_of_five_seeds_beats_its_mean_member_and_exports_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    proc = run_cli(
        "train", "-m", "seed=0,1,2,3,4", "trainer.max_epochs=4", "trainer.progress_bar=false",
        "hydra.sweep.dir=sweep", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = tmp_path / "sweep"
    for mode in ("mean", "vote"):
        code, out, err = _cli(capsys, "eval", f"ckpt={sweep}", f"ensemble={mode}")
        assert code == 0, err
        result = json.loads((sweep / f"ensemble_{mode}.json").read_text())
        assert len(result["members"]) == 5 and f"ensemble ({mode})" in out
        assert result["metrics"]["acc"] >= result["mean_member"]["acc"]
        first = summary(sweep / "0")["metrics"]["test/acc"]
        assert result["members"]["0"]["acc"] == pytest.approx(first, abs=1e-12)
    listed = ",".join(str(sweep / str(i)) for i in range(3))
    code, out, err = _cli(capsys, "export", f"ckpt=[{listed}]", "format=onnx", "ensemble=vote")
    assert code == 0 and "passed" in out, err
    # a sweep dir with a failed job: only the completed runs are members
    shutil.copytree(sweep / "4", sweep / "5")
    (sweep / "5" / "summary.json").write_text(json.dumps({"status": "failed"}))
    code, out, err = _cli(capsys, "eval", f"ckpt={sweep}", "ensemble=mean")
    assert code == 0 and "ensemble of 5" in out
    with pytest.raises(RunError):
        from dnnexp.inference.model import load_source

        load_source(f"[{sweep / '0'},{sweep / 'nope'}]", "mean")


def test_large_inputs_get_a_progress_bar_on_a_terminal_and_none_in_a_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from rich.console import Console

    from dnnexp.inference import predict as predict_module

    monkeypatch.setattr(predict_module, "PROGRESS_ROWS", 10)
    x = torch.arange(64.0).reshape(16, 4)
    for terminal in (True, False):
        shown = io.StringIO()
        console = Console(file=shown, force_terminal=terminal, width=80)
        monkeypatch.setattr(predict_module, "console", console)
        assert torch.equal(predict_module._run(_fake_run(None, [4]), x, batch_size=4), x)
        assert ("16/16" in shown.getvalue()) == terminal, shown.getvalue()


class _Branchy(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # a branch on the data: no single graph for every input
            return x
        return -x


def test_a_model_the_exporter_cannot_take_is_one_line_saying_where_and_why(tmp_path: Path) -> None:
    from dnnexp.inference.export import export_model

    for fmt in ("pt2", "onnx"):
        with pytest.raises(RunError) as err:
            export_model(_Branchy(), torch.ones(2, 3), fmt, tmp_path / f"m.{fmt}", "model=branchy")
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"format={fmt}: model=branchy could not")
        assert "test_inference.py" in message and "if x.sum() > 0" in message, message


def test_a_regression_run_predicts_values_and_exports_within_tolerance(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from dnnexp.inference.model import load_trained, raw_test_split

    proc = run_cli(
        "train", "task=regression", "data=diabetes", "trainer.max_epochs=3",
        "trainer.progress_bar=false", "hydra.run.dir=reg", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "reg"
    x, y = raw_test_split(load_trained(run))  # the test split in its own units
    with open(tmp_path / "patients.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["patient", *(f"f{i}" for i in range(10)), "label"])
        for i, (row, target) in enumerate(zip(x.tolist(), y[:, 0].tolist(), strict=True)):
            writer.writerow([f"p{i}", *row, target])
    out = tmp_path / "values.csv"
    code, _, err = _cli(
        capsys, "predict", f"ckpt={run}", f"input={tmp_path / 'patients.csv'}", f"out={out}"
    )
    assert code == 0, err
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["patient", "predicted_target_0"] and rows[0]["patient"] == "p0"
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())["metrics"]
    assert metrics["r2"] == pytest.approx(summary(run)["metrics"]["test/r2"], abs=1e-4)
    code, out_text, err = _cli(capsys, "export", f"ckpt={run}", "format=onnx")
    assert code == 0 and "passed" in out_text, err  # within 1e-5 of the targets' std
