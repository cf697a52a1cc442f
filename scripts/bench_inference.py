"""Using a trained model, measured: `dnnexp predict` rows/s and where its time goes, and for
mlp, cnn and lstm on digits the size on disk, test accuracy and CPU latency per batch of 256
of PyTorch, ONNX (onnxruntime) and ONNX int8 (onnxruntime's dynamic quantization).

    python scripts/bench_inference.py [--epochs 20] [--rows 100000] [--out bench_inference]

Trains each model once (in OUT/<model>), then exports and times it. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def train(model: str, epochs: int, out: Path) -> Path:
    run_dir = out / model
    if not (run_dir / "checkpoints" / "best.ckpt").is_file():
        subprocess.run(
            [sys.executable, "-m", "dnnexp", "train", f"model={model}",
             f"trainer.max_epochs={epochs}", "trainer.progress_bar=false",
             f"hydra.run.dir={run_dir}"],
            check=True, capture_output=True,
        )  # fmt: skip
    return run_dir


def profile_predict(run_dir: Path, rows: int, out: Path) -> None:
    """predict's stages on `rows` digits rows (the test split repeated) in a CSV."""
    from dnnexp.inference.inputs import read_inputs
    from dnnexp.inference.model import load_trained, predict_batches, raw_test_split
    from dnnexp.inference.predict import predict

    run = load_trained(run_dir)
    x, y = raw_test_split(run)
    reps = rows // len(x) + 1
    flat = x.reshape(len(x), -1).repeat(reps, 1)[:rows].numpy()
    labels = y.repeat(reps)[:rows].numpy()
    path = out / "rows.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*(f"p{i}" for i in range(flat.shape[1])), "label"])
        writer.writerows([*map(int, r), int(lab)] for r, lab in zip(flat, labels, strict=True))
    start = time.perf_counter()
    inputs = read_inputs(path, run)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    outputs = predict_batches(run.model, inputs.x)
    model_s = time.perf_counter() - start
    start = time.perf_counter()
    result = predict(str(run_dir), path, out / "predictions.csv")
    total_s = time.perf_counter() - start
    print(f"\npredict, default MLP, {rows} CSV rows of 64 pixels + label:")
    print(
        f"  end to end (read, predict, write, metrics): {total_s:.2f} s,"
        f" {rows / total_s:,.0f} rows/s"
    )
    print(f"  read + parse the CSV: {read_s:.2f} s ({read_s / total_s:.0%})")
    print(
        f"  the model (batches of 1024): {model_s:.3f} s, {rows / model_s:,.0f} rows/s"
        f" ({model_s / total_s:.0%})"
    )
    print(f"  the rest (the output CSV, metrics): {total_s - read_s - model_s:.2f} s")
    assert outputs.shape == (rows, 10) and result["rows"] == rows


def table(models: list[str], epochs: int, out: Path) -> None:
    from dnnexp.inference.export import export

    print("\n| model | format | size on disk | test accuracy | ms per batch of 256 |")
    print("| --- | --- | ---: | ---: | ---: |")
    for model in models:
        run_dir = train(model, epochs, out)
        sidecar = export(_load(run_dir), "onnx", out / f"{model}.onnx", quantize="int8")
        torch_size = _state_dict_bytes(run_dir)
        p, q = sidecar["parity"], sidecar["int8"]
        lat = sidecar["latency"]
        rows = [
            ("PyTorch fp32", torch_size, p["pytorch_acc"], lat["pytorch_ms_per_256"]),
            ("ONNX fp32", q["fp32_bytes"], p["exported_acc"], q["fp32_ms_per_256"]),
            ("ONNX int8", q["bytes"], q["exported_acc"], q["ms_per_256"]),
        ]
        for name, size, acc, ms in rows:
            print(f"| {model} | {name} | {size / 1024:.0f} KiB | {acc:.4f} | {ms:.2f} |")


def _load(run_dir: Path):
    from dnnexp.inference.model import load_trained

    return load_trained(run_dir)


def _state_dict_bytes(run_dir: Path) -> int:
    import io

    run = _load(run_dir)
    buffer = io.BytesIO()
    torch.save(run.model.model.state_dict(), buffer)
    return len(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--models", default="mlp,cnn,lstm")
    parser.add_argument("--out", type=Path, default=Path("bench_inference"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    np.random.seed(0)
    models = args.models.split(",")
    train(models[0], args.epochs, args.out)
    profile_predict(args.out / models[0], args.rows, args.out)
    table(models, args.epochs, args.out)


if __name__ == "__main__":
    main()
