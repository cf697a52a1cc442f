"""model_card.md: one page on what a completed run trained (the model), on what (the data), how
(the recipe) and how well (the test metrics, per class under classification), next to
confusion_matrix.png, which it links to.

`dnnexp train` writes both on rank 0 after summary.json (not for a fast dev run), from the
summary, the data module's splits and the test split's confusion matrix
(`TrainingModule.test_confusion`; None when the test ran in spawned processes, ddp_spawn: the
card then has no per-class numbers and says so). `model_card_files(run_dir)` are the files to
copy next to an exported model (the card's link to the PNG is relative). Rendering the PNG is
most of their cost; matplotlib is imported only then.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from dnnexp.utils.run_files import replacing, write_text

MODEL_CARD = "model_card.md"
CONFUSION_PNG = "confusion_matrix.png"
MATRIX_TABLE_MAX = 20  # classes: up to this many, the card has the matrix as a table too
CELL_COUNTS_MAX = 30  # classes: up to this many, the PNG writes the count in each cell
SPLITS = ("train", "val", "test")


def model_card_files(run_dir: Path) -> list[Path]:
    """The card and the PNG it links to, those of them the run dir has."""
    return [p for p in (Path(run_dir) / MODEL_CARD, Path(run_dir) / CONFUSION_PNG) if p.is_file()]


def write_model_card(
    run_dir: Path,
    cfg: DictConfig,
    summary: dict[str, Any],
    data: Any,
    confusion: list[list[int]] | None,
) -> Path:
    """Write run_dir/model_card.md (and confusion_matrix.png with a confusion matrix); return the
    card's path. `data`: what has `splits` ({split: (x, y)}, y standardized under regression),
    `classes` and `target_stats` (the data module); `confusion`: the test split's (row: target,
    column: prediction)."""
    run_dir = Path(run_dir)
    regression = data.target_stats is not None
    task = _task(cfg, regression)
    classes = task == "classification"
    names = [str(c) for c in data.classes or range(summary["num_classes"])] if classes else []
    if confusion is not None:
        _plot_confusion(confusion, names, run_dir / CONFUSION_PNG)
    lines = [
        f"# Model card: {cfg.name}",
        "",
        f"`{cfg.model.name}` trained for {task} on `{cfg.data.name}` by `dnnexp train`"
        f" (run dir `{run_dir}`, status {summary.get('status')}).",
        *_model(cfg, summary, run_dir, regression, names),
        *_data(cfg, data, regression, names),
        *_recipe(cfg, summary),
        *_privacy(summary.get("privacy")),
        *_test(cfg, summary, data, confusion, regression, names),
    ]
    path = run_dir / MODEL_CARD
    write_text(path, "\n".join(lines) + "\n")  # atomically: a reader never sees half a card
    return path


def _task(cfg: DictConfig, regression: bool) -> str:
    """The run's task (a config from before tasks were named: by its targets)."""
    named = (cfg.get("task") or {}).get("name")
    return named or ("regression" if regression else "classification")


def _model(
    cfg: DictConfig, summary: dict, run_dir: Path, regression: bool, names: list[str]
) -> list[str]:
    knobs = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(knobs, dict)
    shown = ", ".join(f"{k}={_value(v)}" for k, v in knobs.items() if k != "name")
    outputs = (
        f"{summary.get('num_targets', 1)} target(s)" if regression else f"{len(names)} classes"
    )
    if _task(cfg, regression) == "seq2seq":
        outputs = f"a sequence of {summary.get('num_classes', 0)} target tokens (4 reserved)"
    if _task(cfg, regression) == "multitask":
        heads = summary.get("heads") or []
        outputs = f"{len(heads)} heads on one trunk ({summary.get('num_targets')} outputs)"
    lines = [
        "",
        "## Model",
        "",
        f"- Family: `{cfg.model.name}`" + (f" ({shown})" if shown else ""),
        f"- Parameters: {summary.get('params', 0):,}",
        f"- Input shape: {summary.get('input_shape')}; outputs: {outputs}",
    ]
    checkpoint = summary.get("checkpoint")
    file = run_dir / checkpoint if checkpoint else None
    if file is not None and file.is_file():
        size = file.stat().st_size
        lines.append(f"- Checkpoint: `{checkpoint}`, {_size(size)} on disk ({size:,} bytes)")
    else:
        lines.append("- Checkpoint: none written")
    return lines


def _data(cfg: DictConfig, data: Any, regression: bool, names: list[str]) -> list[str]:
    ys = {split: data.splits[split][1].cpu() for split in SPLITS}
    sizes = ", ".join(f"{split} {len(y):,}" for split, y in ys.items())
    where = f"split seed {cfg.data.get('split_seed')}"
    if cfg.data.get("folds"):
        where += f", fold {cfg.data.fold} of {cfg.data.folds}"
    lines = [
        "",
        "## Data",
        "",
        f"- Dataset: `{cfg.data.name}` ({where})",
        f"- Split sizes: {sizes}",
        "",
    ]
    spec = (data.preprocess or {}).get("columns")
    if spec:
        lines += _columns(spec)
    for key, what in (("text", "Text"), ("target_text", "Target text")):
        text = (data.preprocess or {}).get(key)
        if not text:
            continue
        coverage = text["val_coverage"]
        lines += [
            f"- {what}: {text['tokens']} tokens"
            + (", lowercased" if text["lowercase"] else "")
            + f"; vocabulary of {text['vocab_size']:,} (training split alone, 4 reserved)"
            + (f", {coverage:.1%} of the validation tokens known" if coverage is not None else "")
            + f"; longest {text['longest']}, median {text['median_length']:g} tokens"
            + f" (cut at {text['max_length']})",
            "",
        ]
    if _task(cfg, regression) == "seq2seq":
        return lines
    if _task(cfg, regression) == "multitask":
        return lines + _heads_table(data, ys)
    if regression:
        lines += ["Target statistics per split (in the target's units):", ""]
        lines += _target_table(ys, data.target_stats)
    else:
        counts = {s: torch.bincount(y, minlength=len(names)).tolist() for s, y in ys.items()}
        lines += ["Class balance (samples per class):", ""]
        lines += _table(
            ["class", *SPLITS],
            [[name, *(f"{counts[s][i]:,}" for s in SPLITS)] for i, name in enumerate(names)],
        )
    return lines


def _heads_table(data: Any, ys: dict[str, torch.Tensor]) -> list[str]:
    """task=multitask: each head, what it predicts, its loss and weight, and the rows of each
    split that have its label (the others are masked out of its loss and metrics)."""
    rows = []
    for j, head in enumerate(data.head_info or []):
        what = f"{len(head['classes'])} classes" if head["classes"] else "a value"
        labelled = [f"{int((~torch.isnan(ys[s][:, j])).sum()):,}" for s in SPLITS]
        rows.append(
            [head["name"], head["column"], f"{head['kind']}: {what}", head["loss"],
             f"{head['weight']:g}", *labelled]
        )  # fmt: skip
    head = ["head", "column", "kind", "loss", "weight", *(f"{s} labelled" for s in SPLITS)]
    return ["Heads (a missing label masks that head's loss for its row):", ""] + _table(head, rows)


def _columns(spec: dict[str, Any]) -> list[str]:
    """A table's columns and what training did with each (statistics of the training split)."""
    rows = []
    for name, median in zip(spec["numeric"], spec["medians"], strict=True):
        missing = (
            "; missing: the median + a was-missing column" if name in spec["indicators"] else ""
        )
        rows.append([name, "numeric", f"standardized; median {median:.6g}{missing}"])
    for name, categories in spec["categorical"].items():
        shown = ", ".join(categories[:8]) + (
            f", ... ({len(categories)})" if len(categories) > 8 else ""
        )
        missing = "missing: a category of its own; " if name in spec["missing_slots"] else ""
        treatment = f"one-hot: {shown}; {missing}a value not seen in training: their shares"
        rows.append([name, "categorical", treatment])
    for name, why in spec["ignored"].items():
        rows.append([name, "ignored", why])
    head = [f"Columns (missing values: `data.missing={spec['missing']}`):", ""]
    return head + _table(["column", "kind", "treatment"], rows) + [""]


def _target_table(ys: dict[str, torch.Tensor], target_stats: dict) -> list[str]:
    mean = torch.tensor(target_stats["mean"], dtype=torch.float64)
    std = torch.tensor(target_stats["std"], dtype=torch.float64)
    rows = []
    for split, y in ys.items():
        y = y.double().reshape(len(y), -1) * std + mean  # back to the target's units
        for t in range(y.shape[1]):
            column = y[:, t]
            values = (
                [column.mean(), column.std(), column.min(), column.max()] if len(column) else []
            )
            rows.append([split, str(t), f"{len(column):,}", *(f"{float(v):.4g}" for v in values)])
    return _table(["split", "target", "n", "mean", "std", "min", "max"], rows)


def _recipe(cfg: DictConfig, summary: dict) -> list[str]:
    overrides = summary.get("overrides") or []
    shown = ", ".join(f"`{o}`" for o in overrides) if overrides else "none (the defaults)"
    versions = summary.get("versions") or {}
    code = summary.get("code")
    built = ", ".join(f"{k} {v}" for k, v in versions.items()) or "unknown"
    if code:
        built += f"; dnnexp code {code['git_commit'][:12]}" + (
            " with local changes" if code.get("dirty") else ""
        )
    lines = [
        "",
        "## Recipe",
        "",
        f"- Overrides of the defaults: {shown}",
        f"- Seed: {summary.get('seed')}",
        f"- Tags: {', '.join(summary.get('tags') or []) or 'none'}",
        f"- Epochs trained: {summary.get('epochs')} (trainer.max_epochs"
        f" {cfg.trainer.max_epochs}); best epoch: {summary.get('best_epoch')} (0-based, step"
        f" {summary.get('best_step')}), its checkpoint tested",
        f"- Wall time: {summary.get('duration_s', 0):.1f} s (training and testing)",
        f"- Versions: {built}",
        f"- Config hash: `{summary.get('config_hash')}`"
        + ("; resumed from its last checkpoint" if summary.get("resumed") else ""),
    ]
    return lines


def _privacy(ledger: dict[str, Any] | None) -> list[str]:
    """privacy=dp: the ledger, and what its ε does not cover."""
    if not ledger:
        return []
    eps = ledger["epsilon"]
    return [
        "",
        "## Privacy",
        "",
        f"Trained with DP-SGD (Opacus): (ε = {'inf' if eps is None else f'{eps:.4g}'},"
        f" δ = {ledger['delta']:.3g})-differential privacy for the {ledger['training_samples']}"
        f" training samples, by the {ledger['accountant'].upper()} accountant.",
        "",
        *_table(
            ("noise multiplier σ", "sampling rate q", "steps", "clipping norm C", "target ε"),
            [
                [
                    f"{ledger['noise_multiplier']:.4g}",
                    f"{ledger['sample_rate']:.4g}",
                    str(ledger["steps"]),
                    f"{ledger['max_grad_norm']:g}",
                    _value(ledger.get("target_epsilon")),
                ]
            ],
        ),  # fmt: skip
        "",
        f"Not covered by ε: {ledger['not_covered']}.",
    ]


def _test(
    cfg: DictConfig,
    summary: dict,
    data: Any,
    confusion: list[list[int]] | None,
    regression: bool,
    names: list[str],
) -> list[str]:
    metrics = summary.get("metrics") or {}
    test = {k: v for k, v in metrics.items() if k.startswith("test/")}
    others = [f"{k} {v:.4f}" for k, v in metrics.items() if not k.startswith("test/")]
    lines = [
        "",
        "## Test metrics",
        "",
        f"The best checkpoint (epoch {summary.get('best_epoch')}) on the test split.",
        "",
        *_table(["metric", "value"], [[k, f"{v:.4f}"] for k, v in test.items()]),
    ]
    if others:
        lines += ["", "At the best epoch: " + ", ".join(others) + "."]
    if _task(cfg, regression) == "seq2seq":
        return [
            *lines,
            "",
            "ter: edit distance to the closest reference over its length (phoneme error rate for"
            " G2P); ser: outputs matching no reference (word error rate). Decoded greedily, and"
            f" `_beam` with beam search (eval.beam={cfg.eval.beam},"
            f" eval.length_penalty={cfg.eval.length_penalty}).",
            *(
                [f"bleu: corpus BLEU, 0-100 (sacrebleu {summary['bleu_signature']})."]
                if summary.get("bleu_signature")
                else []
            ),
        ]
    if regression:
        return lines
    if confusion is None:
        return [
            *lines,
            "",
            "No per-class precision and recall: the test ran in spawned processes"
            f" (trainer.strategy={cfg.trainer.get('strategy')}), which do not hand its confusion"
            " matrix back; the metrics above are over the whole test split.",
        ]
    scored, size = sum(map(sum, confusion)), len(data.splits["test"][1])
    lines += ["", "### Per class", ""]
    if scored < size:
        lines += [
            f"Over the {scored:,} of {size:,} test samples scored (trainer.limit_test_batches).",
            "",
        ]
    lines += _table(["class", "precision", "recall", "support"], _per_class(confusion, names))
    lines += [
        "",
        "Precision: the share of the samples predicted as the class that are of it; recall: the"
        " share of the class's samples predicted as it; support: the class's test samples;"
        " -: nothing to divide by (0 in the macro averages above).",
        "",
        "### Confusion matrix",
        "",
        f"![confusion matrix of the test split]({CONFUSION_PNG})",
    ]
    if len(names) <= MATRIX_TABLE_MAX:
        lines += ["", "Rows: the true class; columns: the predicted class.", ""]
        lines += _table(
            ["true \\ predicted", *names],
            [[name, *map(str, row)] for name, row in zip(names, confusion, strict=True)],
        )
    return lines


def per_class(confusion: list[list[int]]) -> list[tuple[float | None, float | None, int]]:
    """(precision, recall, support) of each class, from a confusion matrix (row: target);
    None where nothing was predicted as the class (precision) or it has no sample (recall)."""
    predicted = [sum(column) for column in zip(*confusion, strict=True)]
    result = []
    for i, row in enumerate(confusion):
        support, hits = sum(row), row[i]
        precision = hits / predicted[i] if predicted[i] else None
        result.append((precision, hits / support if support else None, support))
    return result


def _per_class(confusion: list[list[int]], names: list[str]) -> list[list[str]]:
    return [
        [name, _share(precision), _share(recall), f"{support:,}"]
        for name, (precision, recall, support) in zip(names, per_class(confusion), strict=True)
    ]


def _plot_confusion(confusion: list[list[int]], names: list[str], path: Path) -> None:
    """Cells coloured by the share of their row (the recall on the diagonal), with counts."""
    from dnnexp.utils.plotting import pyplot

    plt = pyplot()
    c = len(confusion)
    shares = [[v / max(sum(row), 1) for v in row] for row in confusion]
    side = min(3.0 + 0.3 * c, 12.0)  # inches of the matrix itself
    label = 0.08 * max(map(len, names)) if c <= CELL_COUNTS_MAX else 0.0  # tick labels
    left, bottom, top, right = 0.6 + label, 0.6 + label, 0.5, 1.4  # margins: no tight_layout,
    width, height = left + side + right, bottom + side + top  # which would draw it twice
    fig, ax = plt.subplots(figsize=(width, height))
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height
    )
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if c <= CELL_COUNTS_MAX:
        ticks = list(range(c))
        ax.set_xticks(ticks, names, rotation=90 if label > 0.3 else 0)
        ax.set_yticks(ticks, names)
        for i, row in enumerate(confusion):
            for j, value in enumerate(row):
                if value:
                    dark = shares[i][j] > 0.5
                    color = "white" if dark else "black"
                    ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color=color)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix, test split ({sum(map(sum, confusion)):,} samples)")
    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table, the first column left-aligned and the others right-aligned."""
    align = ["---", *("---:" for _ in header[1:])]
    return [
        "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
        for cells in (header, align, *rows)
    ]


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _value(value: Any) -> str:
    return "[" + ", ".join(map(_value, value)) + "]" if isinstance(value, list) else str(value)


def _size(size: float) -> str:
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"
