"""Checkpoints load with weights_only=True only; every bad file is one clear error."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from dnnexp.config.errors import RunError
from dnnexp.models.weights import load_checkpoint
from tests.conftest import compose


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dnnexp.training.run import train

    path = tmp_path_factory.mktemp("run")
    cfg = compose("trainer=smoke", "trainer.progress_bar=false", "logger=none")
    train(cfg, run_dir=path, overrides=["trainer=smoke"])
    return path


def test_a_real_checkpoint_holds_plain_containers_only(run_dir: Path) -> None:
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    assert set(hparams) == {
        "config",
        "input_shape",
        "num_outputs",
        "data_fingerprint",
        "target_stats",
        "input_stats",
        "classes",
        "input_range",
        "pretrained",
        "preprocess",
        "test_fingerprint",  # the test split's own: the folds of k-fold share it (ensembles)
        "vocab_size",  # text: token ids below it (None otherwise)
    }
    # predict and export standardize raw inputs with the training split's own statistics
    preprocess = hparams["preprocess"]
    assert preprocess["dtype"] == "float32" and preprocess["features"] is None
    assert len(preprocess["mean"]) == len(preprocess["std"]) == 1  # one for all pixels
    assert (preprocess["low"], preprocess["high"]) == ([0.0], [16.0])  # digits' raw range
    assert hparams["num_outputs"] == 10 and hparams["target_stats"] is None
    assert set(hparams["input_range"]) == {"low", "high", "unit"}  # plain lists of floats
    assert hparams["classes"] == [str(i) for i in range(10)] and hparams["input_stats"] is None
    assert isinstance(hparams["config"], dict) and hparams["config"]["model"]["name"] == "mlp"
    assert all(key.startswith("model.") for key in ckpt["state_dict"])


class _Exploit:
    def __reduce__(self):  # what a crafted checkpoint would do on a full unpickle
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
        (lambda p: p.write_bytes(b"not a checkpoint at all"), "is not a readable checkpoint"),
        (lambda p: torch.save({"weights": torch.zeros(2)}, p), "is not a dnnexp checkpoint"),
        (
            lambda p: torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1}}, p),
            "was not written by dnnexp train",
        ),
        (
            lambda p: p.write_bytes(pickle.dumps({"state_dict": _Exploit()})),
            "is not a readable checkpoint",
        ),
        (lambda p: torch.save({"state_dict": _Exploit(), "hyper_parameters": {}}, p), "refused"),
    ],
    ids=["missing", "empty", "garbage", "foreign", "not-dnnexp", "raw-pickle", "pickle-exploit"],
)
def test_bad_checkpoints_are_refused_in_one_line(
    tmp_path: Path, monkeypatch, make, expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.ckpt"
    make(path)
    with pytest.raises(RunError, match=expected) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "PWNED").exists()  # the crafted pickle never ran


def test_truncated_checkpoint_is_refused(run_dir: Path, tmp_path: Path) -> None:
    data = (run_dir / "checkpoints" / "best.ckpt").read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match="truncated or corrupt"):
        load_checkpoint(cut)


def test_eval_refuses_a_checkpoint_of_another_model(run_dir: Path, tmp_path: Path) -> None:
    from dnnexp.evaluation.evaluate import evaluate

    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["config"]["model"]["hidden"] = [32]  # the weights are 256-wide
    other = tmp_path / "other.ckpt"
    torch.save(ckpt, other)
    with pytest.raises(RunError, match="does not match the model mlp of its config"):
        evaluate(other, tmp_path / "out.json", [])
    assert not (tmp_path / "out.json").exists()


def test_eval_refuses_other_data_splits(run_dir: Path, tmp_path: Path) -> None:
    from dnnexp.evaluation.evaluate import evaluate

    with pytest.raises(RunError, match="other data splits"):
        evaluate(
            run_dir / "checkpoints" / "best.ckpt", tmp_path / "out.json", ["data.split_seed=5"]
        )


@pytest.mark.parametrize("key", ["init_from", "distill.teacher"])
def test_weights_from_an_earlier_run_are_loaded_safely_and_refused_under_their_key(
    run_dir: Path, tmp_path: Path, monkeypatch, key: str
) -> None:
    """`init_from` and `distill.teacher` take a run dir (its best.ckpt) or a .ckpt file, through
    the same safe loader; a refusal names their key, in one line."""
    from dnnexp.models.weights import load_run_weights

    assert set(load_run_weights(key, str(run_dir))) >= {"state_dict", "hyper_parameters"}
    monkeypatch.chdir(tmp_path)
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": _Exploit(), "hyper_parameters": {}}, unsafe)
    (tmp_path / "not_a_run").mkdir()
    for value, expected in [
        (str(unsafe), f"{key}={unsafe} refused: it holds Python objects"),
        ("missing.ckpt", f"{key}=missing.ckpt: no such file"),
        (str(tmp_path / "not_a_run"), "a directory without checkpoints/best.ckpt"),
    ]:
        with pytest.raises(RunError, match=expected) as err:
            load_run_weights(key, value)
        assert "\n" not in str(err.value) and str(err.value).startswith(f"{key}=")
    assert not (tmp_path / "PWNED").exists()
