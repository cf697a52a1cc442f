"""`dnnexp export ckpt=RUN_DIR|CKPT format=onnx|pt2 [out=FILE] [quantize=int8]`."""

from __future__ import annotations

from pathlib import Path

USAGE = """\
usage: dnnexp export ckpt=RUN_DIR|CKPT|[A,B,...]|SWEEP_DIR format=onnx|pt2 [out=FILE]
                     [quantize=int8] [ensemble=mean|vote]

Exports a trained run as one model that takes raw inputs (the training normalization baked
in) and returns class probabilities (or values in the targets' units), with a dynamic batch
size: format=onnx (torch's dynamo exporter, one file; needs pip install 'dnnexp[export]') or
format=pt2 (torch.export; load with torch.export.load(path).module()).

Every export is checked on the run's test split: the exported model must match PyTorch's
outputs within 1e-5 with the same predictions, or the command exits non-zero. Writes
<out> (default <run dir>/export/model.<format>), <out>.json (input shape, classes,
preprocessing, the check, latency per batch of 256, versions) and a copy of the run's
model_card.md. quantize=int8 (onnx) also writes <name>.int8.onnx, onnxruntime's dynamic int8
quantization, with its size, latency and test accuracy. Several checkpoints (a list, or a
sweep dir's completed runs) export as one ensemble model (ensemble=mean: mean probability;
vote: the share of members' votes).
"""

KEYS = {
    "ckpt": str,
    "format": ("onnx", "pt2"),
    "out": str,
    "quantize": ("int8",),
    "ensemble": ("mean", "vote"),
}


def main(args: list[str]) -> int:
    from dnnexp.commands.args import run_command

    return run_command(
        args, USAGE, KEYS, "export", "dnnexp export ckpt=RUN_DIR format=onnx", _export
    )


def _export(found: dict) -> None:
    from dnnexp.inference.export import export
    from dnnexp.inference.model import load_source

    source = load_source(found["ckpt"], found.get("ensemble"))
    out = Path(found["out"]) if "out" in found else None
    export(source, found["format"], out, found.get("quantize"))
