"""End to end through the real `dnnexp` command, in a fresh working directory per test."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli, run_dirs, summary, user_env

pytestmark = pytest.mark.slow


def test_train_writes_the_run_dir_contract(tmp_path: Path, fast_overrides: list[str]) -> None:
    proc = run_cli("train", *fast_overrides, "trainer.max_epochs=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = run_dirs(tmp_path / "outputs")
    assert run.parent.parent == tmp_path / "outputs"  # outputs/<date>/<time>
    s = summary(run)
    assert s["status"] == "completed" and s["epochs"] == 3 and 0 <= s["best_epoch"] < 3
    for key in (
        "test/acc",
        "test/f1",
        "test/loss",
        "test/precision",
        "test/recall",
        "val/acc",
        "train/acc",
    ):
        assert 0 <= s["metrics"][key] <= (100 if key.endswith("loss") else 1), key
    assert s["params"] > 0 and s["duration_s"] > 0 and s["checkpoint"] == "checkpoints/best.ckpt"
    assert (run / ".hydra" / "config.yaml").is_file() and (
        run / "checkpoints" / "last.ckpt"
    ).is_file()

    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2] and s["epochs"] == len(rows)
    for column in ("train/loss", "train/acc", "val/loss", "val/acc", "val/f1", "lr"):
        assert all(r[column] != "" for r in rows), column
    best = rows[s["best_epoch"]]
    assert float(best["val/acc"]) == pytest.approx(s["metrics"]["val/acc"])
    assert float(best["train/acc"]) == pytest.approx(s["metrics"]["train/acc"])

    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)  # plain containers only
    assert ckpt["hyper_parameters"]["config"]["model"]["name"] == "mlp"
    out = proc.stdout + proc.stderr
    assert "test/acc" in out and str(run) in out and "config" in out
    for noise in ("litmodels", "Tip:", "does not have many workers", "GPU available"):
        assert noise not in out, noise

    # eval rebuilds the run from its checkpoint and reproduces the test metrics
    ev = run_cli("eval", f"ckpt={run / 'checkpoints' / 'best.ckpt'}", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    evaluated = json.loads((run / "eval" / "best.json").read_text())["metrics"]
    for key, value in evaluated.items():
        assert value == pytest.approx(s["metrics"][key], abs=1e-9), key


def test_default_experiment_runs_from_any_directory(tmp_path: Path) -> None:
    """`dnnexp train` with the shipped defaults (digits, MLP); short, via trainer.max_epochs."""
    proc = run_cli("train", "trainer.max_epochs=2", "trainer.progress_bar=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = run_dirs(tmp_path / "outputs")
    s = summary(run)
    assert (
        s["input_shape"] == [1, 8, 8] and s["num_classes"] == 10 and s["metrics"]["test/acc"] > 0.8
    )


def test_recurrent_model_sees_rows_of_digits(tmp_path: Path) -> None:
    proc = run_cli(
        "train", "model=gru", "trainer=smoke", "trainer.progress_bar=false", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert summary(run_dirs(tmp_path)[0])["status"] == "completed"


def test_multirun_gives_one_dir_per_job(tmp_path: Path, fast_overrides: list[str]) -> None:
    proc = run_cli("train", "-m", *fast_overrides, "seed=0,1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = run_dirs(tmp_path / "outputs" / "multirun")
    assert [r.name for r in runs] == ["0", "1"]
    first, second = (summary(r) for r in runs)
    assert first["seed"] == 0 and second["seed"] == 1
    assert first["metrics"]["val/loss"] != second["metrics"]["val/loss"]


def test_user_config_dir_adds_options(tmp_path: Path) -> None:
    (tmp_path / "myconf" / "model").mkdir(parents=True)
    (tmp_path / "myconf" / "model" / "tiny.yaml").write_text(
        "# a tiny MLP\ndefaults:\n  - mlp\n  - _self_\nhidden: [16]\n"
    )
    proc = run_cli(
        "train",
        "--config-dir",
        "myconf",
        "model=tiny",
        "trainer=smoke",
        "trainer.progress_bar=false",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        summary(run_dirs(tmp_path / "outputs")[0])["params"] == 64 * 16 + 16 + 16 * 2 + 16 * 10 + 10
    )


def test_explicit_run_dir_that_holds_a_run_is_refused(
    tmp_path: Path, fast_overrides: list[str]
) -> None:
    target = tmp_path / "myrun"
    first = run_cli("train", *fast_overrides, f"hydra.run.dir={target}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()}
    again = run_cli("train", *fast_overrides, f"hydra.run.dir={target}", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"error: hydra.run.dir={target} already holds a run; pick a new directory"
        " (or leave hydra.run.dir out for a fresh outputs/<date>/<time>)"
    ]
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()} == before


def test_ddp_inside_a_multirun_runs_each_job_once(tmp_path: Path) -> None:
    """Lightning relaunches sys.argv for rank 1; under -m that would rerun the whole sweep."""
    args = [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.model_summary=false",  # the progress bar stays on: DDP ranks > 0 disable it
        "data=synthetic",
    ]
    proc = run_cli("train", "-m", *args, "seed=0,1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = run_dirs(tmp_path / "outputs")
    assert [r.name for r in runs] == ["0", "1"]
    assert all(summary(r)["status"] == "completed" for r in runs)
    assert len(list((tmp_path / "outputs" / "multirun").glob("*/*"))) == 1  # one sweep dir


def _file(name: str, content: bytes = b""):
    def make(tmp: Path) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(content)

    return make


def _truncated_checkpoint(tmp: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "hyper_parameters": {}}, tmp / "cut.ckpt")
    data = (tmp / "cut.ckpt").read_bytes()
    (tmp / "cut.ckpt").write_bytes(data[: len(data) // 2])


# The README's "Bad input" table, row by row: the arguments, what must be on the last line of
# stderr, and what to create first. Every row also checks: non-zero exit, no traceback, and
# no run dir left behind that looks like a run.
BAD_INPUTS = [
    (
        ["nosuch"],
        "dnnexp: unknown command 'nosuch'; commands: train, eval, predict, export, prune, report",
        None,
    ),
    (
        ["train", "model=nosuch"],
        "error: model=nosuch: no such option; available: cnn, densenet",
        None,
    ),
    (
        ["train", "reg.dropuot=0.1"],
        "error: reg.dropuot: no such key in 'reg' (did you mean reg.dropout?)",
        None,
    ),
    (["train", "+reg.dropuot=0.1"], "error: reg.dropuot: no such key in 'reg'", None),
    (["train", "model.widht=3"], "error: model.widht: no such key in 'model'", None),
    (["train", "+foo=1"], "error: foo: no such key at the top level; allowed: data", None),
    (
        ["train", "optimizer.lr=fast"],
        "error: optimizer.lr: Value 'fast' of type 'str' could not be converted to Float",
        None,
    ),
    (
        ["train", "trainer.max_epochs=abc"],
        "error: trainer.max_epochs: Value 'abc' of type 'str'",
        None,
    ),
    (
        ["train", "reg.dropout=1.5"],
        "error: reg.dropout=1.5 is out of range: must be less than 1",
        None,
    ),
    (
        ["train", "optimizer.lr=-1"],
        "error: optimizer.lr=-1.0 is out of range: must be greater than 0",
        None,
    ),
    (
        ["train", "data.batch_size=0"],
        "error: data.batch_size=0 is out of range: must be greater than 0",
        None,
    ),
    (
        ["train", "trainer.max_epochs=-1"],
        "error: trainer.max_epochs=-1 is out of range: must be greater than 0",
        None,
    ),
    (
        ["train", "data.train_fraction=0"],
        "error: data.train_fraction=0.0 is out of range: must be greater than 0",
        None,
    ),
    (
        ["train", "model=resnext", "model.cardinality=3"],
        "error: model.cardinality=3 does not divide the stage width 64",
        None,
    ),
    (
        ["train", "model=cnn", "model.bidirectional=true"],
        "error: model.bidirectional: no such key in 'model'",
        None,
    ),
    (
        ["train", "data.train_fraction=0.001"],
        "error: data.train_fraction=0.001 leaves class 0 with no training sample",
        None,
    ),
    (["train", "-m", "--cfg", "job"], "error: -m and --cfg cannot be combined", None),
    (
        ["train", "seed=99999999999"],
        "error: seed=99999999999 is out of range: must be at most 4294967295",
        None,
    ),
    (
        ["train", "tags=[héllo]"],
        "error: tags=[héllo]: Hydra's override grammar takes this value only in quotes (it has a"
        """ character outside letters a-z, digits and -_./:): write 'tags=["héllo"]'""",
        None,
    ),
    (
        ["train", "hydra.run.dir=afile/run"],
        "error: cannot write afile/run: Not a directory",
        _file("afile"),
    ),
    (["train"], "error: cannot write outputs/", _file("outputs")),
    (["train", "resume=nowhere"], "error: resume=nowhere: not a dnnexp run dir", None),
    (["eval"], "usage: dnnexp eval", None),
    (["eval", "ckpt="], "error: ckpt= is missing", None),
    (["eval", "ckpt=nope.ckpt"], "error: ckpt=nope.ckpt: no such file", None),
    (["eval", "ckpt=empty.ckpt"], "error: ckpt=empty.ckpt is empty (0 bytes)", _file("empty.ckpt")),
    (
        ["eval", "ckpt=junk.ckpt"],
        "error: ckpt=junk.ckpt is not a readable checkpoint",
        _file("junk.ckpt", b"junk" * 10),
    ),
    (
        ["eval", "ckpt=cut.ckpt"],
        "error: ckpt=cut.ckpt is not a readable checkpoint (truncated or corrupt",
        _truncated_checkpoint,
    ),
]


@pytest.mark.parametrize(
    ("args", "expected", "setup"), BAD_INPUTS, ids=[" ".join(a) for a, _, _ in BAD_INPUTS]
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], expected: str, setup) -> None:
    if setup is not None:
        setup(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = run_cli(*args, cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert expected in (proc.stderr.strip().splitlines() or [""])[-1] or expected in proc.stdout
    assert not run_dirs(tmp_path)  # nothing that looks like a run was written
    after = sorted(p.name for p in tmp_path.rglob("*") if not p.is_dir())
    assert set(after) <= set(before)  # and no new files


def test_a_config_error_fails_before_any_directory_is_made(tmp_path: Path) -> None:
    proc = run_cli("train", "model=resnext", "model.cardinality=3", cwd=tmp_path)
    assert proc.returncode == 2 and "does not divide" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # not even outputs/<date>/


def test_full_error_keeps_the_traceback(tmp_path: Path) -> None:
    proc = run_cli("train", "reg.dropout=1.5", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [["--help"], ["train", "--help"], ["train", "--cfg", "job"], ["train", "reg.dropout=2"]],
    ids=lambda a: " ".join(a),
)
def test_light_commands_do_not_import_lightning(tmp_path: Path, args: list[str]) -> None:
    code = (
        "import sys\nfrom dnnexp.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('lightning', 'torch', 'torchmetrics', 'sklearn') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert "HEAVY []" in proc.stdout, proc.stdout[-500:] + proc.stderr[-500:]


def test_console_script_and_module_agree(tmp_path: Path) -> None:
    import shutil

    exe = shutil.which("dnnexp")
    if exe is None:
        pytest.skip("dnnexp console script not on PATH (package not installed)")
    a = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    b = run_cli("--help", cwd=tmp_path)
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout and "train" in a.stdout


def test_flags_may_come_after_overrides() -> None:
    """Hydra's argparse takes one run of overrides: dnnexp moves its flags in front."""
    from dnnexp.commands.train import _flags_first

    args = [
        "a=1",
        "-m",
        "b=2,3",
        "--config-dir",
        "my conf",
        "c=3",
        "--info",
        "plugins",
        "--cfg",
        "job",
    ]
    assert _flags_first(args) == [
        "-m",
        "--config-dir",
        "my conf",
        "--info",
        "plugins",
        "--cfg",
        "job",
        "a=1",
        "b=2,3",
        "c=3",
    ]


CONFIG_ONLY_REFUSALS = [
    ["train", "seed=99999999999"],
    ["train", "reg.dropout=1.5"],
    ["train", "model=nosuch"],
    ["train", "tags=[héllo]"],
    ["train", "prune.end_epoch=3"],
    ["train", "prune.amount=0.5", "prune.schedule=gradual", "trainer.max_epochs=1"],
    ["train", "data.folds=3", "data.fold=3"],
    ["train", "-m", "sweep=kfold", "data.folds=1"],
    ["prune", "RUN", "amount=1.5"],
    ["prune", "RUN", "amount=0.5", "scope=row"],
]


def test_config_only_refusals_never_import_torch(tmp_path: Path) -> None:
    """A rule that needs only the config fails at validation, in about half a second: none of
    these refusals imports torch (or Lightning)."""
    from tests.test_report import make_run

    make_run(tmp_path / "RUN", ["seed=0"])
    (tmp_path / "RUN" / "checkpoints").mkdir()
    (tmp_path / "RUN" / "checkpoints" / "best.ckpt").write_bytes(b"")
    code = (
        "import sys, json\n"
        "from dnnexp.cli import main\n"
        "codes = []\n"
        f"for argv in {CONFIG_ONLY_REFUSALS!r}:\n"
        "    try:\n"
        "        codes.append(main(argv))\n"
        "    except SystemExit as stop:\n"
        "        codes.append(stop.code)\n"
        "print(json.dumps([codes, sorted(m for m in ('torch', 'lightning') if m in sys.modules)]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=user_env(), capture_output=True, text=True
    )
    codes, imported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert codes == [2] * len(CONFIG_ONLY_REFUSALS), proc.stderr
    assert imported == [], f"a config-only refusal imported {imported}"
    assert proc.stderr.count("error: ") == len(CONFIG_ONLY_REFUSALS), proc.stderr
