"""Transfer learning: a subset of classes, weights from an earlier run matched by name and shape
with the head re-initialized when the classes differ, the backbone's learning rate and freezing,
and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dnnexp.config.errors import ConfigError, RunError
from dnnexp.data.local_files import DataError, keep_classes
from dnnexp.models import build_model
from dnnexp.training.transfer import head_name, load_pretrained, read_source
from tests.conftest import compose, run_cli

SHAPE = [1, 8, 8]


def test_a_subset_of_classes_is_relabelled_in_the_order_given() -> None:
    y = torch.tensor([0, 5, 7, 5, 2, 9])
    keep, labels, names = keep_classes(y, [str(i) for i in range(10)], ["7", "5"], "digits")
    assert keep.tolist() == [False, True, True, True, False, False]
    assert labels[keep].tolist() == [1, 0, 1] and names == ["7", "5"]
    with pytest.raises(DataError, match=r"data.classes: 12 not among data=digits's classes \(0, 1"):
        keep_classes(y, [str(i) for i in range(10)], ["12", "5"], "digits")


def test_the_data_module_keeps_only_the_chosen_classes() -> None:
    from dnnexp.data.datamodule import ArrayDataModule

    data = ArrayDataModule(compose("data.classes=[5,6,7,8,9]").data, seed=0)
    data.setup()
    assert data.classes == ["5", "6", "7", "8", "9"] and data.num_outputs == 5
    for split in ("train", "val", "test"):
        assert sorted(data.splits[split][1].unique().tolist()) == [0, 1, 2, 3, 4]
    assert len(data.splits["test"][1]) == 180  # a fifth of the 5 classes' ~900 images


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["freeze=backbone"], "freeze=backbone freezes the layers init_from loads"),
        (["optimizer.backbone_lr_ratio=0.1"], "optimizer.backbone_lr_ratio=0.1 scales the lr"),
        (["init_from=x", "freeze_epochs=3"], "freeze_epochs=3 says when freeze=backbone ends"),
        (["optimizer.backbone_lr_ratio=0"], "optimizer.backbone_lr_ratio=0.0 is out of range"),
        (["freeze=all"], "freeze='all' is not allowed; choose one of: none, backbone"),
        (["data.classes=[3]"], "data.classes=['3']: give at least 2 different classes"),
        (["data.classes=[3,3]"], "data.classes=['3', '3']: give at least 2 different classes"),
        (
            ["task=regression", "data=diabetes", "data.classes=[1,2]"],
            "leave it null under task=regression",
        ),
    ],
)
def test_a_bad_transfer_knob_is_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")) as err:
        compose(*overrides)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke run on digits 0-4: the pre-trained weights."""
    cwd = tmp_path_factory.mktemp("source")
    proc = run_cli("train", "trainer=smoke", "data.classes=[0,1,2,3,4]", "hydra.run.dir=src",
                   cwd=cwd)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return cwd / "src"


def _mlp(hidden: list[int], outputs: int = 5) -> torch.nn.Module:
    cfg = compose(f"model.hidden=[{','.join(map(str, hidden))}]").model
    return build_model(cfg, SHAPE, outputs, 0.0)


def test_layers_match_by_name_and_shape_and_the_head_is_new_when_the_classes_differ(
    source_run: Path,
) -> None:
    ckpt = read_source(str(source_run), SHAPE)
    source = {k[6:]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model = _mlp([256, 256])
    head = head_name(model)
    names, line = load_pretrained(ckpt, str(source_run), model, ["5", "6", "7", "8", "9"])
    state = model.state_dict()
    assert head and all(not n.startswith(head + ".") for n in names)
    assert not torch.equal(state[f"{head}.weight"], source[f"{head}.weight"])  # re-initialized
    assert all(torch.equal(state[n], source[n]) for n in names) and len(names) == 8
    assert line.startswith(f"init_from={source_run}: loaded ")
    assert line.endswith(f"new: {head} (classes 0,1,2,3,4 -> 5,6,7,8,9)")
    same = _mlp([256, 256])
    names, line = load_pretrained(ckpt, str(source_run), same, ["0", "1", "2", "3", "4"])
    assert torch.equal(same.state_dict()[f"{head}.weight"], source[f"{head}.weight"])
    assert line.endswith("new: none")
    partial = _mlp([256, 64])  # the second layer and the head have other shapes
    names, _ = load_pretrained(ckpt, str(source_run), partial, None)
    assert names and len(names) < 8
    with pytest.raises(RunError, match="shares no layer of the same name and shape"):
        load_pretrained(ckpt, str(source_run), _mlp([32]), None)
    with pytest.raises(RunError, match=r"was trained on inputs \[1, 8, 8\]; this run has \[13\]"):
        read_source(str(source_run), [13])


def test_the_backbone_gets_its_own_learning_rate() -> None:
    from dnnexp.tasks.optim import param_groups

    model = _mlp([16])
    backbone = {n for n, _ in model.named_parameters() if not n.startswith(head_name(model))}
    groups = param_groups(model, 0.01, backbone, backbone_lr=1e-4)
    assert [("lr" in g, g["weight_decay"]) for g in groups] == [
        (False, 0.01), (False, 0.0), (True, 0.01), (True, 0.0)
    ]  # fmt: skip
    assert all(g["lr"] == 1e-4 for g in groups[2:])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(param_groups(model, 0.01)) == 2  # without a backbone: as before


@pytest.mark.slow
def test_a_frozen_backbone_does_not_move_and_the_head_learns(
    source_run: Path, tmp_path: Path
) -> None:
    proc = run_cli("train", "trainer=smoke", "trainer.max_epochs=2", "data.classes=[5,6,7,8,9]",
                   f"init_from={source_run}", "freeze=backbone", "reg.weight_decay=0.01",
                   "hydra.run.dir=ft", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"init_from={source_run}: loaded 14 tensors" in " ".join(proc.stdout.split())
    source = torch.load(source_run / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    tuned = torch.load(tmp_path / "ft" / "checkpoints" / "best.ckpt", weights_only=True)
    weights = [k for k in tuned["state_dict"] if k.endswith((".weight", ".bias"))]
    head = max(weights, key=lambda k: int(k.split(".")[1])).rsplit(".", 1)[0]
    for key in weights:
        moved = not torch.equal(tuned["state_dict"][key], source[key])
        assert moved == key.startswith(head), key
    assert len(tuned["hyper_parameters"]["pretrained"]) == 8  # kept for a resume
    # a missing, corrupt or unsafe init_from: tests/test_checkpoint.py (load_run_weights)
    unknown = run_cli(
        "train", "trainer=smoke", "data.classes=[5,x]", "hydra.run.dir=y", cwd=tmp_path
    )
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: data.classes: x not among data=digits's classes (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)"
    ]
