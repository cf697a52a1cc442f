"""Padding and speed of text batches, with and without `data.bucket`.

    python scripts/bench_text.py [--rows 4000] [--model lstm]

Writes ROWS synthetic texts of 5 to 200 words (uniformly drawn lengths) and trains MODEL for
two epochs on them with `data.bucket=false` and `true`: prints the share of padding in the
training batches (each cut to its longest text) and the time per epoch (the faster of the two
epochs) of each.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write(path: Path, rows: int) -> None:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(500)]
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["text", "label"])
        for i in range(rows):
            label = i % 2
            text = " ".join(rng.choice(words[label::2]) for _ in range(rng.randint(5, 200)))
            out.writerow([text, label])


def run(path: Path, model: str, bucket: bool) -> tuple[float, float]:
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from dnnexp.data.datamodule import ArrayDataModule
    from dnnexp.tasks.module import TrainingModule
    from tests.conftest import compose

    cfg = compose(
        "data=text", f"data.path={path}", f"model={model}", f"data.bucket={str(bucket).lower()}"
    )
    data = ArrayDataModule.for_run(cfg)
    data.setup()
    loader = data.train_dataloader()
    pads = total = 0
    for item, _ in loader:  # an item holds several batches (trainer.steps_per_call)
        for x in item.split(loader.batch_size):  # each one cut to its longest text
            longest = int((x != 0).sum(1).max())
            total += longest * len(x)
            pads += longest * len(x) - int((x != 0).sum())

    class Timer(Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_epoch_start(self, *args) -> None:
            self.started = time.perf_counter()

        def on_train_epoch_end(self, *args) -> None:
            self.times.append(time.perf_counter() - self.started)

    timer = Timer()
    trainer = L.Trainer(
        max_epochs=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
    )  # fmt: skip
    from omegaconf import OmegaConf

    trainer.fit(TrainingModule(OmegaConf.to_container(cfg, resolve=True), data.spec), data)
    return pads / total, min(timer.times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--model", default="lstm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "texts.csv"
        write(path, args.rows)
        results = {bucket: run(path, args.model, bucket) for bucket in (False, True)}
    print(f"| data.bucket | padded share | s / epoch ({args.model}, {args.rows:,} texts) |")
    print("|---|---:|---:|")
    for bucket, (share, seconds) in results.items():
        print(f"| {str(bucket).lower()} | {share:.1%} | {seconds:.2f} |")
    speedup = results[False][1] / results[True][1]
    print(f"speed-up: {speedup:.2f}x")


if __name__ == "__main__":
    main()
