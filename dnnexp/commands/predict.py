"""`dnnexp predict ckpt=RUN_DIR|CKPT input=PATH [out=FILE.csv] [probs=true]`."""

from __future__ import annotations

from pathlib import Path

USAGE = """\
usage: dnnexp predict ckpt=RUN_DIR|CKPT input=PATH [out=FILE.csv] [probs=true] [target=COLUMN]
                      [batch_size=N] [strict=true] [beam=K]

Predicts with a trained run on new inputs, preprocessed exactly as in training (the saved
statistics, never recomputed from the new data). input: an .npz (x, optional y), a .csv (the
model's feature columns; other columns pass through to the output), an IDX images file
(labels from the matching *-labels-idx1-ubyte beside it), a CIFAR .bin, an image file, or a
folder of images (class subfolders give labels).

Writes a CSV (default <run dir>/predict/<input name>.csv, never overwriting): one row per
input, the predicted class and its probability (probs=true adds every class's), or the
predicted values under regression. With labels in the input (an npz's y, the CSV's target
column: the run's data.target or 'label', or target=COLUMN) it also prints the metrics and the
confusion matrix and writes them to <out>.metrics.json. Inputs far outside the range the model
was trained on (say 0..255 pixels for a model trained on 0..16) get a warning line naming both
ranges; strict=true refuses them instead.

A task=seq2seq run decodes each source (a .txt of one per line, or the training file's
columns): greedy, or beam search with beam=K (the run's eval.length_penalty and
data.target_max_length); the CSV gives the output text and its score (log-probability /
length**length_penalty). With the target column in the input, each row's target is a reference
of its source, and the metrics (loss, ter, ser) are those of the run's test split.

A task=multitask run writes a column per head: predicted_<head> (a class, with
probability_<head>, and prob_<head>_<class> with probs=true; or a value in the target's units);
with every head's column in the input, the metrics per head on the rows that have its label.
"""

KEYS = {
    "ckpt": str,
    "input": str,
    "out": str,
    "probs": bool,
    "target": str,
    "batch_size": int,
    "strict": bool,
    "beam": int,
}


def main(args: list[str]) -> int:
    from dnnexp.commands.args import run_command

    return run_command(
        args, USAGE, KEYS, "predict", "dnnexp predict ckpt=RUN_DIR input=PATH", _predict
    )


def _predict(found: dict) -> None:
    from dnnexp.inference.predict import predict

    out = Path(found["out"]) if "out" in found else None
    predict(
        found["ckpt"],
        Path(found["input"]),
        out,
        found.get("probs", False),
        found.get("target"),
        found.get("batch_size", 1024),
        found.get("strict", False),
        found.get("beam", 1),
    )
