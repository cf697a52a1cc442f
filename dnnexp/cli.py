"""The `dnnexp` command: a thin dispatcher. Heavy modules load only once a run really starts."""

from __future__ import annotations

import sys

USAGE = """\
usage: dnnexp <command> [overrides...]

Config-driven deep-learning experiments: which technique actually helps?

commands:
  train   train a model from Hydra config groups (dnnexp train --help lists every group/option)
          e.g. dnnexp train model=resnext reg=dropout
               dnnexp train -m reg=none,dropout seed=0,1,2
  eval    evaluate a checkpoint on the test split of its run's data
          e.g. dnnexp eval ckpt=outputs/2026-01-01/12-00-00/checkpoints/best.ckpt
  predict predict with a trained run on new files (npz, tables, IDX, CIFAR, images) -> CSV
          e.g. dnnexp predict ckpt=outputs/2026-01-01/12-00-00 input=new.csv
  export  export a trained run to ONNX or torch.export (.pt2), checked against PyTorch
          e.g. dnnexp export ckpt=outputs/2026-01-01/12-00-00 format=onnx
  prune   prune a trained run by weight magnitude and fine-tune it, as a new run dir
          e.g. dnnexp prune outputs/2026-01-01/12-00-00 amount=0.5
  report  compare the variants of a sweep over seeds: tables, statistics, plots
          e.g. dnnexp report outputs/multirun/2026-01-01/12-00-00
  lr-find the learning-rate range test of a run's config: a suggestion and lr_find.png
          e.g. dnnexp lr-find model=cnn optimizer=sgd

options:
  -h, --help     show this message
  --version      print the version
  -sc install=bash|zsh|fish
                 print a shell completion script: eval "$(dnnexp -sc install=bash)" in ~/.bashrc
"""

COMMANDS = ("train", "eval", "predict", "export", "prune", "report", "lr-find")


def main(argv: list[str] | None = None) -> int:
    """Output closed early (`| head -1`) ends a command quietly (`utils/pipes.py`); a training
    run carries on to its end with its output dropped."""
    from dnnexp.utils.pipes import ReaderGone, reader_gone_quietly

    argv = list(sys.argv[1:] if argv is None else argv)
    training = bool(argv) and argv[0] in ("train", "lr-find") and not _only_prints(argv[1:])
    try:
        with reader_gone_quietly(stop=not training):
            return _dispatch(argv)
    except ReaderGone as gone:
        return gone.code


def _only_prints(args: list[str]) -> bool:
    """`train --help`, `--cfg job`, `--info`, shell completion: nothing runs."""
    flags = (
        "-h",
        "--help",
        "--hydra-help",
        "-c",
        "--cfg",
        "-i",
        "--info",
        "-sc",
        "--shell-completion",
    )
    return any(
        a in flags or a.startswith(("--cfg=", "--info=", "--shell-completion=")) for a in args
    )


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if argv[0] == "--version":
        from dnnexp import __version__

        print(f"dnnexp {__version__}")
        return 0
    command, args = argv[0], argv[1:]
    if command in ("-sc", "--shell-completion") or (
        command == "train" and args[:1] in (["-sc"], ["--shell-completion"])
    ):  # `dnnexp train -sc ...` too: the script completes every command, not train's alone
        from dnnexp.commands.completion import main as completion_main

        return completion_main(args if command != "train" else args[1:], COMMANDS)
    if command == "train":
        from dnnexp.commands.train import main as train_main

        return train_main(args)
    if command == "eval":
        from dnnexp.commands.eval import main as eval_main

        return eval_main(args)
    if command == "predict":
        from dnnexp.commands.predict import main as predict_main

        return predict_main(args)
    if command == "export":
        from dnnexp.commands.export import main as export_main

        return export_main(args)
    if command == "prune":
        from dnnexp.commands.prune import main as prune_main

        return prune_main(args)
    if command == "report":
        from dnnexp.commands.report import main as report_main

        return report_main(args)
    if command == "lr-find":
        from dnnexp.commands.lr_find import main as lr_find_main

        return lr_find_main(args)
    close = [c for c in COMMANDS if c.startswith(command[:2])]
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    print(
        f"dnnexp: unknown command '{command}'{hint}; commands: {', '.join(COMMANDS)}",
        file=sys.stderr,
    )
    return 2
