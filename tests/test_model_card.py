"""model_card.md and confusion_matrix.png: the writer on a made-up run, and one classification
and one regression smoke run through the CLI."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from dnnexp.training.model_card import (
    CONFUSION_PNG,
    MODEL_CARD,
    model_card_files,
    per_class,
    write_model_card,
)
from tests.conftest import run_cli, summary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = ["# Model card: ", "## Model", "## Data", "## Recipe", "## Test metrics"]


def _cfg(strategy: str = "auto") -> DictConfig:
    return OmegaConf.create(
        {
            "name": "tiny",
            "model": {"name": "mlp", "hidden": [8, 4], "activation": "relu"},
            "data": {"name": "toy", "split_seed": 3, "folds": None},
            "trainer": {"max_epochs": 5, "strategy": strategy},
        }
    )


def _summary(**extra: object) -> dict:
    return {
        "status": "completed",
        "seed": 7,
        "overrides": ["model.hidden=[8,4]", "seed=7"],
        "config_hash": "abc123",
        "metrics": {"test/acc": 0.6, "test/recall": 0.4, "val/acc": 0.5},
        "best_epoch": 2,
        "best_step": 30,
        "epochs": 4,
        "params": 123456,
        "checkpoint": "checkpoints/best.ckpt",
        "input_shape": [4],
        "duration_s": 12.34,
        "versions": {"python": "3.11.7", "torch": "2.13.0"},
        "code": {"git_commit": "0123456789abcdef", "dirty": True},
        **extra,
    }


def _split(labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(len(labels), 4), torch.tensor(labels)


def _table(card: str, header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header line starts with `header`."""
    lines = card.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header}"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    from PIL import Image

    with Image.open(path) as image:
        image.verify()  # the chunks' CRCs
    return struct.unpack(">II", data[16:24])


def test_the_card_of_a_classification_run(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.ckpt").write_bytes(b"x" * 3072)
    data = SimpleNamespace(
        preprocess={},
        splits={
            "train": _split([0] * 6 + [1] * 3 + [2]),
            "val": _split([0, 1, 2]),
            "test": _split([0] * 10 + [1] * 5 + [2] * 3 + [0, 1]),  # 2 not scored (limit)
        },
        classes=["cat", "dog", "bi|rd"],
        target_stats=None,
    )
    confusion = [[8, 2, 0], [1, 4, 0], [3, 0, 0]]  # "bi|rd" is never predicted
    path = write_model_card(tmp_path, _cfg(), _summary(num_classes=3), data, confusion)
    assert path == tmp_path / MODEL_CARD
    card = path.read_text()
    for section in [*SECTIONS, "### Per class", "### Confusion matrix"]:
        assert f"\n{section}" in f"\n{card}", section
    assert "- Family: `mlp` (hidden=[8, 4], activation=relu)" in card
    assert "- Parameters: 123,456" in card
    assert "`checkpoints/best.ckpt`, 3.0 KiB on disk (3,072 bytes)" in card
    assert "- Split sizes: train 10, val 3, test 20" in card
    assert _table(card, "class | train") == [
        ["cat", "6", "1", "11"],
        ["dog", "3", "1", "6"],
        ["bi\\|rd", "1", "1", "3"],
    ]
    assert "`model.hidden=[8,4]`, `seed=7`" in card and "- Seed: 7" in card
    assert "- Epochs trained: 4 (trainer.max_epochs 5); best epoch: 2" in card
    assert "12.3 s" in card and "torch 2.13.0" in card and "0123456789ab with local" in card
    assert _table(card, "metric") == [["test/acc", "0.6000"], ["test/recall", "0.4000"]]
    assert "val/acc 0.5000" in card
    assert "the 18 of 20 test samples scored" in card
    assert _table(card, "class | precision") == [
        ["cat", f"{8 / 12:.4f}", "0.8000", "10"],
        ["dog", f"{4 / 6:.4f}", "0.8000", "5"],
        ["bi\\|rd", "-", "0.0000", "3"],
    ]
    assert _table(card, "true \\") == [
        ["cat", "8", "2", "0"],
        ["dog", "1", "4", "0"],
        ["bi\\|rd", "3", "0", "0"],
    ]
    assert f"]({CONFUSION_PNG})" in card  # a relative link, next to the card
    width, height = _png_size(tmp_path / CONFUSION_PNG)
    assert width > 200 and height > 200
    assert model_card_files(tmp_path) == [tmp_path / MODEL_CARD, tmp_path / CONFUSION_PNG]
    assert per_class([[0, 0], [1, 1]]) == [(0.0, None, 0), (1.0, 0.5, 2)]


def test_without_a_confusion_matrix_the_card_says_why_and_links_no_png(tmp_path: Path) -> None:
    data = SimpleNamespace(
        preprocess={},
        splits={s: _split([0, 1, 1]) for s in ("train", "val", "test")},
        classes=None,
        target_stats=None,
    )
    summary_ = _summary(num_classes=2, checkpoint=None)
    card = write_model_card(tmp_path, _cfg("ddp_spawn"), summary_, data, None).read_text()
    assert "No per-class precision and recall" in card and "ddp_spawn" in card
    assert "Checkpoint: none written" in card
    assert _table(card, "class | train")[1] == ["1", "2", "2", "2"]  # indices for names
    assert CONFUSION_PNG not in card and not (tmp_path / CONFUSION_PNG).exists()


def test_a_regression_card_has_target_statistics_in_the_targets_units(tmp_path: Path) -> None:
    standardized = torch.tensor([[-1.0], [0.0], [1.0]])  # mean 100, std 10 once scaled back
    data = SimpleNamespace(
        preprocess={},
        splits={s: (torch.zeros(3, 4), standardized) for s in ("train", "val", "test")},
        classes=None,
        target_stats={"mean": [100.0], "std": [10.0]},
    )
    card = write_model_card(tmp_path, _cfg(), _summary(num_targets=1), data, None).read_text()
    assert _table(card, "split")[0] == ["train", "0", "3", "100", "10", "90", "110"]
    assert "outputs: 1 target(s)" in card and "Per class" not in card
    assert "spawned" not in card and not (tmp_path / CONFUSION_PNG).exists()


@pytest.mark.slow
def test_a_smoke_run_gets_a_card_matching_its_confusion_matrix(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli(
        "train", "trainer=smoke", "trainer.progress_bar=false", f"hydra.run.dir={run}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    card, metrics = (run / MODEL_CARD).read_text(), summary(run)["metrics"]
    for section in [*SECTIONS, "### Per class", "### Confusion matrix"]:
        assert f"\n{section}" in f"\n{card}", section
    assert "- Family: `mlp`" in card and "`trainer=smoke`, `trainer.progress_bar=false`" in card
    assert "- Dataset: `digits`" in card and "test 360" in card
    matrix = [[int(v) for v in row[1:]] for row in _table(card, "true \\")]
    assert len(matrix) == 10 and sum(map(sum, matrix)) == 360
    assert sum(matrix[i][i] for i in range(10)) / 360 == pytest.approx(metrics["test/acc"])
    rows = _table(card, "class | precision")
    assert [r[0] for r in rows] == [str(i) for i in range(10)]
    for i, (_, _, recall, support) in enumerate(rows):
        assert int(support) == sum(matrix[i])
        assert float(recall) == pytest.approx(matrix[i][i] / sum(matrix[i]), abs=5e-5)
    recalls = [float(r[2]) for r in rows]  # every class has test samples: all seen
    assert sum(recalls) / 10 == pytest.approx(metrics["test/recall"], abs=1e-4)
    assert f"]({CONFUSION_PNG})" in card
    _png_size(run / CONFUSION_PNG)


@pytest.mark.slow
def test_a_regression_smoke_run_gets_a_card_without_a_confusion_matrix(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["task=regression", "data=diabetes", "trainer=smoke", "trainer.progress_bar=false"]
    proc = run_cli("train", *args, f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    card = (run / MODEL_CARD).read_text()
    for section in SECTIONS:
        assert f"\n{section}" in f"\n{card}", section
    assert "Target statistics" in card and "| test/r2 |" in card
    assert [r[:3] for r in _table(card, "split")] == [
        ["train", "0", "308"],
        ["val", "0", "45"],
        ["test", "0", "89"],
    ]
    assert "Per class" not in card and "confusion" not in card.lower()
    assert not (run / CONFUSION_PNG).exists()
