"""`dnnexp export`: a trained run (or an ensemble) as one file that takes raw inputs and returns
probabilities (or values): ONNX through torch's current (dynamo) exporter, or a torch.export
program (.pt2). Every export is checked: the exported model runs on the run's test split and
must give the PyTorch model's outputs within `TOLERANCE` and the same predictions.

`quantize=int8` (ONNX only) adds onnxruntime's dynamic int8 quantization of the exported model:
weights stored as int8 (about 4x smaller), activations quantized on the fly. It is checked on
the test split too, by accuracy rather than by 1e-5.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
import time
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dnnexp.config.errors import RunError
from dnnexp.data.columns import raw_columns
from dnnexp.utils.console import console
from dnnexp.utils.run_files import unique_path, versions, write_json

TOLERANCE = 1e-5  # the largest difference of any output allowed between exported and PyTorch
INSTALL = "pip install 'dnnexp[export]'"
# the operators quantized to int8: matrix products and LSTMs. Convolutions stay float32:
# onnxruntime's ConvInteger is an order of magnitude slower than float32 convolutions on the
# CPU (scripts/bench_inference.py prints both; the README's table)
INT8_OPS = ("MatMul", "Gemm", "LSTM")
TABLE_INPUT = (
    "one float32 row per sample, input.columns in that order: a numeric column as its value, NaN"
    " where missing; a categorical column as the index of its value in"
    " preprocess.columns.categorical[column], NaN where missing, -1 for a value not listed there"
)


def exported_runner(path: Path, fmt: str) -> Any:
    """A callable running the exported file on a float32/uint8 tensor batch -> numpy outputs."""
    if fmt == "pt2":
        with warnings.catch_warnings():  # torch's own pytree deprecation, not ours to fix
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.export.load(str(path)).module()

        def run_pt2(x: torch.Tensor) -> np.ndarray:
            with torch.inference_mode():
                return module(x).numpy()

        return run_pt2
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run_onnx(x: torch.Tensor) -> np.ndarray:
        return session.run(None, {name: x.numpy()})[0]

    return run_onnx


def export_model(model: nn.Module, example: torch.Tensor, fmt: str, out: Path, label: str) -> None:
    """Write `model` to `out` with a dynamic batch dimension; RunError in one line if the
    exporter cannot take it (naming the model and the exporter's reason)."""
    # the exporter's registry warns about torchvision's operators, which dnnexp never uses
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    shapes = ({0: batch},)
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            if fmt == "pt2":
                program = torch.export.export(model, (example,), dynamic_shapes=shapes)
                torch.export.save(program, str(out))
            else:
                torch.onnx.export(
                    model,
                    (example,),
                    str(out),
                    dynamo=True,
                    external_data=False,  # one file (no .onnx.data beside it)
                    input_names=["input"],
                    output_names=["output"],
                    dynamic_shapes=shapes,
                )
    except Exception as err:  # the exporters raise many types; the message is what matters
        raise RunError(f"format={fmt}: {label} could not be exported {_why(err)}") from None


def _why(err: Exception) -> str:
    """The exporter's reason (its first line) and where in the model's code it arose (the last
    `File ..., line N, in ...` the exporter quotes, with the line's code): one line."""
    text = str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = (lines[0] if lines else type(err).__name__)[:200]
    calls = re.findall(r'File "([^"]+)", line (\d+), in (\w+)\n\s*(.+)', text)
    if not calls:
        return f"({reason})"
    path, line, function, code = calls[-1]
    return f"at {Path(path).name}:{line} in {function}, `{code.strip()}` ({reason})"


def parity(
    reference: torch.Tensor,
    exported: np.ndarray,
    labels: torch.Tensor | None,
    task: str,
    scale: list[float] | None = None,
    heads: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """How far the exported outputs are from PyTorch's, and both models' test metric. Under
    regression `max_abs_diff` is in standardized units (the values divided by the training
    targets' std, `scale`, one per output): what the model computes, and float32-exact to ~1e-7
    there, where values in the hundreds differ by ~1e-5 in their own units. Multitask
    (`heads`): each head's slice so, and each head's test metric."""
    got = torch.from_numpy(np.asarray(exported)).to(reference.dtype)
    diff = (got - reference).abs()
    if task in ("regression", "multitask") and scale is not None:
        diff = diff / torch.tensor(scale, dtype=diff.dtype)
    result: dict[str, Any] = {
        "rows": len(reference),
        "max_abs_diff": float(diff.max()) if len(reference) else 0.0,
    }
    if task == "multitask":
        return {**result, **_head_parity(reference, got, labels, heads or [], result)}
    if task == "regression":
        if labels is not None:
            labels = labels.reshape(reference.shape)
            result["pytorch_mse"] = float(((reference - labels) ** 2).mean())
            result["exported_mse"] = float(((got - labels) ** 2).mean())
        result["same_predictions"] = result["max_abs_diff"] <= TOLERANCE
        return result
    ours, theirs = reference.argmax(1), got.argmax(1)
    result["prediction_agreement"] = float((ours == theirs).double().mean())
    result["same_predictions"] = bool((ours == theirs).all())
    if labels is not None:
        result["pytorch_acc"] = float((ours == labels).double().mean())
        result["exported_acc"] = float((theirs == labels).double().mean())
    return result


def _head_parity(
    reference: torch.Tensor,
    got: torch.Tensor,
    labels: torch.Tensor | None,
    heads: list[dict[str, Any]],
    result: dict[str, Any],
) -> dict[str, Any]:
    """Multitask: the classification heads' predictions agree, and each head's test metric
    (accuracy, or mse in its units) on the rows with its label, for both models."""
    agreement, per_head, start = 1.0, {}, 0
    for j, head in enumerate(heads):
        ours, theirs = (t[:, start : start + int(head["width"])] for t in (reference, got))
        start += int(head["width"])
        target = None if labels is None else labels[:, j]
        labelled = None if target is None else ~torch.isnan(target)
        if head["kind"] == "regression":
            scores = {}
            if target is not None:
                for who, values in (("pytorch", ours), ("exported", theirs)):
                    errors = (values[:, 0] - target)[labelled]
                    scores[f"{who}_mse"] = float((errors**2).mean()) if len(errors) else None
            per_head[head["name"]] = scores
            continue
        a, b = ours.argmax(1), theirs.argmax(1)
        agreement = min(agreement, float((a == b).double().mean()) if len(a) else 1.0)
        scores = {}
        if target is not None and bool(labelled.any()):
            truth = target[labelled].long()
            scores = {
                "pytorch_acc": float((a[labelled] == truth).double().mean()),
                "exported_acc": float((b[labelled] == truth).double().mean()),
            }
        per_head[head["name"]] = scores
    same = agreement == 1.0 and result["max_abs_diff"] <= TOLERANCE
    return {"prediction_agreement": agreement, "same_predictions": same, "heads": per_head}


def latency_ms(run: Any, x: torch.Tensor, repeats: int = 20) -> float:
    """Median wall time of one call on the batch `x`, in milliseconds (after 3 warm-up calls)."""
    for _ in range(3):
        run(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def export(
    source: Any,
    fmt: str,
    out: Path | None = None,
    quantize: str | None = None,
    timing: bool = True,
) -> dict[str, Any]:
    """Export `source` (a `TrainedRun`, or an ensemble of them), check it, write the sidecar
    JSON and copy the run's model card beside it; `timing`: measure both models' latency.
    Returns what the sidecar holds."""
    from dnnexp.inference.model import predict_batches, raw_test_split

    if source.task == "seq2seq":
        raise RunError(
            "dnnexp export writes one model from inputs to outputs; a task=seq2seq run decodes"
            " step by step (use dnnexp predict, which decodes greedily or with beam=K)"
        )
    if fmt == "onnx" or quantize:
        try:
            import onnxruntime  # noqa: F401
            import onnxscript  # noqa: F401
        except ImportError as err:
            raise RunError(f"format=onnx needs {err.name}: {INSTALL}") from None
    if quantize and fmt != "onnx":
        raise RunError(f"quantize={quantize} works on format=onnx (onnxruntime's int8 kernels)")
    run = source
    x, labels = raw_test_split(run)
    if len(x) == 0:
        raise RunError("the run's test split is empty: nothing to check the export on")
    out = out or unique_path(run.run_dir / "export" / f"model.{fmt}")
    out.parent.mkdir(parents=True, exist_ok=True)
    model = run.model.eval()
    started = time.perf_counter()
    export_model(model, x[:2], fmt, out, f"model={run.cfg.model.name}")
    seconds = time.perf_counter() - started
    reference = predict_batches(model, x)
    batch = x[:256] if len(x) >= 256 else x.repeat(256 // len(x) + 1, *[1] * (x.ndim - 1))[:256]
    latency = {}
    if timing:  # PyTorch first: onnxruntime's threads spin a while after each run
        with torch.inference_mode():
            latency["pytorch_ms_per_256"] = latency_ms(model, batch)
    runner = exported_runner(out, fmt)
    scale = _scale(run)
    heads = run.heads or None
    check = parity(reference, _batched(runner, x), labels, run.task, scale, heads)
    passed = check["max_abs_diff"] <= TOLERANCE and check["same_predictions"]
    if timing:
        latency[f"{fmt}_ms_per_256"] = latency_ms(runner, batch)
    sidecar: dict[str, Any] = {
        "format": fmt,
        "file": out.name,
        "source": str(run.path.resolve()),
        "task": run.task,
        "input": {  # raw values, as the files hold them: the normalization is inside
            "name": "input",
            "shape": ["batch", *run.input_shape],
            "dtype": {torch.uint8: "uint8", torch.int64: "int64"}.get(x.dtype, "float32"),
        },
        "output": _output_spec(run),
        "preprocess": run.hparams["preprocess"],
        "parity": {"tolerance": TOLERANCE, "passed": passed, **check},
        "latency": latency,
        "export_s": round(seconds, 2),
        "versions": _versions(fmt),
    }
    spec = run.hparams["preprocess"].get("columns")
    if spec:  # a table: how to build a row from the raw columns (the graph encodes them)
        sidecar["input"]["columns"] = raw_columns(spec)
        sidecar["input"]["how"] = TABLE_INPUT
    if quantize:
        sidecar["int8"] = _quantize(
            out, runner, x, labels, reference, batch, run.task, scale, heads
        )
    sidecar_path = out.with_name(out.name + ".json")
    write_json(sidecar_path, sidecar)
    from dnnexp.training.model_card import model_card_files

    for path in model_card_files(run.run_dir):  # the card and the PNG it links to
        shutil.copy(path, out.with_name(path.name))
    _print(sidecar, out, sidecar_path)
    if not passed:
        raise RunError(
            f"parity check failed: the exported model's outputs differ from PyTorch's by up to"
            f" {check['max_abs_diff']:.2e} (tolerance {TOLERANCE:g}); kept for inspection: {out}"
        )
    return sidecar


def _quantize(
    fp32: Path,
    fp32_runner: Any,
    x: torch.Tensor,
    labels: torch.Tensor,
    reference: torch.Tensor,
    batch: torch.Tensor,
    task: str,
    scale: list[float] | None,
    heads: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """onnxruntime's dynamic int8 quantization of `fp32` -> <name>.int8.onnx, checked and timed
    beside `fp32_runner` (the session the fp32 parity check ran in)."""
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    int8 = fp32.with_name(fp32.stem + ".int8.onnx")
    prepared = fp32.with_name(fp32.stem + ".prepared.onnx")
    try:  # shape inference and graph fusions first, as onnxruntime recommends
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            quant_pre_process(str(fp32), str(prepared))
            quantize_dynamic(
                str(prepared),
                str(int8),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(INT8_OPS),
            )
    finally:
        prepared.unlink(missing_ok=True)
    runner = exported_runner(int8, "onnx")
    check = parity(reference, _batched(runner, x), labels, task, scale, heads)
    return {
        "file": int8.name,
        "bytes": int8.stat().st_size,
        "fp32_bytes": fp32.stat().st_size,
        "smaller": round(fp32.stat().st_size / int8.stat().st_size, 2),
        "ms_per_256": latency_ms(runner, batch),
        "fp32_ms_per_256": latency_ms(fp32_runner, batch),
        **check,
    }


def _versions(fmt: str) -> dict[str, str]:
    from importlib.metadata import version

    from dnnexp import __version__

    extra = ("onnx", "onnxruntime", "onnxscript") if fmt == "onnx" else ()
    return {"dnnexp": __version__, **versions(), **{name: version(name) for name in extra}}


def _batched(runner: Any, x: torch.Tensor, size: int = 1024) -> np.ndarray:
    return np.concatenate([runner(x[i : i + size].contiguous()) for i in range(0, len(x), size)])


def _scale(run: Any) -> list[float] | None:
    """The training std of each output (regression), or of each output column (multitask: a
    regression head's std, 1 for a classification head's probabilities)."""
    std = (run.hparams.get("target_stats") or {}).get("std")
    if run.task != "multitask" or std is None:
        return std
    return [s if h["kind"] == "regression" else 1.0 for h, s in zip(run.heads, std, strict=True)
            for _ in range(int(h["width"]))]  # fmt: skip


def _output_spec(run: Any) -> dict[str, Any]:
    if run.task == "multitask":  # one output, each head's slice side by side
        heads, start = [], 0
        for head in run.heads:
            width = int(head["width"])
            what = (
                {"kind": "value in the target's units"}
                if head["kind"] == "regression"
                else {"kind": "probabilities (softmax)", "classes": head["classes"]}
            )
            heads.append({"name": head["name"], "columns": [start, start + width], **what})
            start += width
        return {"kind": "one slice per head, side by side", "heads": heads}
    if run.task == "regression":
        return {"kind": "values in the targets' units", "targets": run.hparams["num_outputs"]}
    return {"kind": "probabilities (softmax)", "classes": run.classes}


def _say(text: str) -> None:
    console.print(text, soft_wrap=True)  # one line each, piped or not


def _print(sidecar: dict[str, Any], out: Path, sidecar_path: Path) -> None:
    check, timing, fmt = sidecar["parity"], sidecar["latency"], sidecar["format"]
    verdict = "[green]passed[/green]" if check["passed"] else "[red]FAILED[/red]"
    _say(f"exported {out} ({out.stat().st_size / 1024:.1f} KiB, {sidecar['export_s']} s)")
    line = f"parity on {check['rows']} test rows: max |diff| {check['max_abs_diff']:.2e}"
    if "pytorch_acc" in check:
        line += f", accuracy pytorch {check['pytorch_acc']:.4f} / {fmt} {check['exported_acc']:.4f}"
    elif "pytorch_mse" in check:
        line += f", test mse pytorch {check['pytorch_mse']:.6g} / {fmt} {check['exported_mse']:.6g}"
    _say(f"{line}: {verdict}")
    if timing:
        _say(
            f"latency per batch of 256: pytorch {timing['pytorch_ms_per_256']:.2f} ms,"
            f" {fmt} {timing[f'{fmt}_ms_per_256']:.2f} ms"
        )
    if "int8" in sidecar:
        q = sidecar["int8"]
        if "prediction_agreement" in q:
            quality = f"predictions agree {q['prediction_agreement']:.1%}"
            quality += f", accuracy {q['exported_acc']:.4f}" if "exported_acc" in q else ""
        else:
            quality = f"max |diff| {q['max_abs_diff']:.3g} (standardized)"
            quality += f", test mse {q['exported_mse']:.6g}" if "exported_mse" in q else ""
        _say(
            f"int8: {out.with_name(q['file'])} {q['bytes'] / 1024:.1f} KiB ({q['smaller']}x"
            f" smaller), {q['ms_per_256']:.2f} ms per 256 (fp32 {q['fp32_ms_per_256']:.2f}),"
            f" {quality}"
        )
    _say(f"[bold]written to:[/bold] {sidecar_path}")
