"""Knowledge distillation: the loss term, the teacher's loading and its refusals, and the teacher
staying out of the student's checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnnexp.config.errors import RunError
from dnnexp.tasks.distillation import Distillation, load_teacher
from tests.conftest import compose, run_cli, summary


def test_the_term_is_alpha_t_squared_kl_and_the_task_loss_gets_one_minus_alpha() -> None:
    torch.manual_seed(0)
    teacher = nn.Linear(6, 4).eval()
    x, y, student = torch.randn(32, 6), torch.randint(0, 4, (32,)), torch.randn(32, 4)
    term = Distillation(teacher, temperature=3.0, alpha=0.7)
    p_teacher = F.softmax(teacher(x) / 3.0, dim=1)
    kl = (p_teacher * (p_teacher.log() - F.log_softmax(student / 3.0, dim=1))).sum(1).mean()
    value = term(x, y, student)
    assert float(value) == pytest.approx(0.7 * 9.0 * float(kl), rel=1e-5)
    assert term.task_weight == pytest.approx(0.3)
    # outputs computed once for the split give the same term as the teacher run per batch
    assert torch.equal(term(x, y, student, teacher(x).detach()), value.detach())
    assert float(term(x, y, teacher(x).detach())) == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("teacher")
    proc = run_cli("train", "trainer=smoke", "model.hidden=[48]", "hydra.run.dir=t", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return cwd / "t"


def test_the_teacher_is_frozen_and_a_bad_one_is_one_line(teacher_run: Path, tmp_path: Path) -> None:
    from dnnexp.data.datamodule import ArrayDataModule

    data = ArrayDataModule(compose().data, seed=0)
    data.setup()
    shape, outputs, fingerprint = list(data.input_shape), data.num_outputs, data.fingerprint
    teacher = load_teacher(str(teacher_run), shape, outputs, fingerprint)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    (tmp_path / "junk.ckpt").write_bytes(b"junk" * 8)
    (tmp_path / "empty").mkdir()
    refusals = [
        ("nope", shape, outputs, fingerprint, "distill.teacher=nope: no such file"),
        (str(tmp_path / "junk.ckpt"), shape, outputs, fingerprint, "is not a readable checkpoint"),
        (str(tmp_path / "empty"), shape, outputs, fingerprint, "without checkpoints/best.ckpt"),
        (str(teacher_run), [1, 4, 4], outputs, fingerprint, "takes inputs [1, 8, 8] with 10"),
        (str(teacher_run), shape, outputs, "other", "was trained on other data splits"),
    ]
    for path, *args, message in refusals:
        with pytest.raises(RunError, match=message.replace("[", r"\[")) as err:
            load_teacher(path, *args)
        assert "\n" not in str(err.value) and str(err.value).startswith("distill.teacher=")


@pytest.mark.slow
def test_a_distilled_student_keeps_the_teacher_out_of_its_checkpoint(
    teacher_run: Path, tmp_path: Path
) -> None:
    proc = run_cli("train", "trainer=smoke", "model.hidden=[16]", f"distill.teacher={teacher_run}",
                   "hydra.run.dir=s", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    student = summary(tmp_path / "s")
    assert student["params"] == 64 * 16 + 16 + 2 * 16 + 16 * 10 + 10  # the student alone
    ckpt = torch.load(tmp_path / "s" / "checkpoints" / "best.ckpt", weights_only=True)
    assert all(k.startswith("model.") for k in ckpt["state_dict"])
    weights = sum(v.numel() for k, v in ckpt["state_dict"].items() if "running" not in k
                  and "num_batches" not in k)  # fmt: skip
    assert weights == student["params"]
    assert "teacher" not in ckpt["hyper_parameters"]
    assert ckpt["hyper_parameters"]["config"]["distill"]["teacher"] == str(teacher_run)
    evaluated = run_cli("eval", "ckpt=s/checkpoints/best.ckpt", cwd=tmp_path)  # no teacher needed
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    wrong = run_cli("train", "trainer=smoke", "data=wine", f"distill.teacher={teacher_run}",
                    "hydra.run.dir=w", cwd=tmp_path)  # fmt: skip
    assert wrong.returncode == 2 and not (tmp_path / "w" / "summary.json").exists()
    assert wrong.stderr.strip().splitlines() == [
        f"error: distill.teacher={teacher_run} takes inputs [1, 8, 8] with 10 outputs; this run"
        " has [13] with 3: train the teacher on the same data"
    ]
