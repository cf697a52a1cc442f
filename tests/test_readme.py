"""Every command the README shows runs as written.

The README's ```bash blocks run in order, in one fresh directory (as a new user would, so the
`run=$(ls -d outputs/...)` lines find the runs of the lines before them), each block as one bash
script that stops at the first failing line. Each `dnnexp train` gets smoke-sized limits put in
front of its own overrides (so the line's own values still win), but a line's own
`trainer.max_epochs` above 2 is cut to 2 (a measured command trains for 25 or 30 epochs, and a
seq2seq one decodes its validation split after each). Lines that need a GPU are
skipped where torch sees none, as are installs and other programs (`pip`, `tensorboard`). The
```console blocks show a command and what it prints: the output must be exactly that (the
GPU example shows a machine without one). `python scripts/...` lines run the repo's script. The
```yaml blocks the README introduces with a file name (`myconf/model/wide_mlp.yaml`:) are
written there first, so the `--config-dir myconf` lines find them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, dnnexp_command, user_env

README = REPO / "README.md"
SMOKE = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
MAX_EPOCHS = 2  # a line's own trainer.max_epochs is cut to this
MAX_SEEDS = 1  # a multirun over seeds runs its first seed (the report says: too few seeds)
SEEDED_SWEEPS = (
    "reg_ablation",
    "lr_grid",
    "norm_ablation",
    "privacy",
)  # conf/sweep/ options over seed
SKIPPED_PROGRAMS = ("pip ", "tensorboard ", "ruff ", "pytest")
SEARCHES = (
    "grid",
    "random",
    "bayesian",
    "evolutionary",
    "nas",
    "nas_text",
)  # sweeps that run a search
SEARCH_BUDGET = (("search.n_trials", 2), ("search.confirm_seeds", 2))  # where a line sets them


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


def needs_a_gpu(command: str) -> bool:
    words = shlex.split(command, comments=True)
    return (
        "trainer=gpu" in words
        or "trainer.accelerator=gpu" in words
        or ("trainer=ddp" in words and "trainer.accelerator=cpu" not in words)
    )


def runnable(command: str) -> bool:
    if command.startswith(SKIPPED_PROGRAMS):
        return False
    if needs_a_gpu(command) and not torch.cuda.is_available():
        return False
    loggers = [w for w in shlex.split(command, comments=True) if w.startswith("logger=")]
    for tracker in ("tensorboard", "mlflow", "wandb"):  # optional extras
        if any(tracker in w for w in loggers) and not importlib.util.find_spec(tracker):
            return False
    return True


def with_smoke_limits(command: str) -> str:
    """`dnnexp train ...` (also after torchrun's `-m`) with the smoke limits first; not a
    `resume=`, which re-runs the run's own overrides (the limits among them). A search gets
    smoke-sized budgets last (`search.n_trials`, `search.confirm_seeds`): its own space and
    knobs are still composed and checked, its trials and confirmation still run. A multirun
    over seeds runs its first MAX_SEEDS."""
    if "resume=" in command:
        return command
    command = _fewer_seeds(command)
    command = re.sub(r"\bdnnexp train\b", "dnnexp train " + " ".join(SMOKE), command, count=1)
    command = re.sub(
        r"\btrainer\.max_epochs=(\d+)\b",
        lambda m: f"trainer.max_epochs={min(int(m.group(1)), MAX_EPOCHS)}",
        command,
    )
    words = shlex.split(command, comments=True)
    budgets = [f"{key}={value}" for key, value in SEARCH_BUDGET if f"{key}=" in command]
    if not any(w.startswith("sweep=") and w[6:] in SEARCHES for w in words) or not budgets:
        return command
    code, hash_, comment = command.partition(" #")
    return f"{code.rstrip()} {' '.join(budgets)}{hash_}{comment}"


def _fewer_seeds(command: str) -> str:
    words = shlex.split(command, comments=True)
    if "-m" not in words and "--multirun" not in words:
        return command
    listed = re.search(r"\bseed=([\d,]+)", command)
    if listed:
        first = ",".join(listed.group(1).split(",")[:MAX_SEEDS])
        return command[: listed.start(1)] + first + command[listed.end(1) :]
    if any(w in (f"sweep={name}" for name in SEEDED_SWEEPS) for w in words):
        code, hash_, comment = command.partition(" #")
        seeds = ",".join(map(str, range(MAX_SEEDS)))
        return f"{code.rstrip()} seed={seeds}{hash_}{comment}"
    return command


def commands(body: str) -> list[str]:
    """The block's lines, continuation lines joined."""
    return body.replace("\\\n", " ").splitlines()


def script(body: str) -> tuple[str, list[str]]:
    """The block as a bash script, and the dnnexp/torchrun lines it runs."""
    lines, ran = [], []
    for line in commands(body):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith(("dnnexp ", "torchrun ")):
            if not runnable(stripped):
                continue
            stripped = with_smoke_limits(stripped)
            ran.append(stripped)
        elif stripped.startswith("python scripts/"):  # the repo's scripts, from any directory
            stripped = f"{shlex.quote(sys.executable)} {REPO}/{stripped[len('python ') :]}"
        elif not re.match(r"^\w+=\$\(", stripped):  # only the README's run=$(ls ...) helpers
            continue
        lines.append(stripped)
    return "set -euo pipefail\n" + "\n".join(lines) + "\n", ran


def shims(directory: Path) -> dict[str, str]:
    """`dnnexp` (through the warm runner: conftest.dnnexp_command) and `torchrun` as this
    interpreter runs them, first on PATH."""
    directory.mkdir()
    dnnexp = " ".join(shlex.quote(part) for part in dnnexp_command())
    torchrun = f"{shlex.quote(sys.executable)} -m torch.distributed.run"
    for name, command in (("dnnexp", dnnexp), ("torchrun", torchrun)):
        shim = directory / name
        shim.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        shim.chmod(0o755)
    return user_env(PATH=f"{directory}{os.pathsep}{os.environ.get('PATH', '')}")


def write_config_files(cwd: Path) -> list[Path]:
    """Each ```yaml block whose paragraph before it names a file (`dir/file.yaml`)."""
    text, written = README.read_text(), []
    for block in FENCE.finditer(text):
        paragraph = text[: block.start()].rstrip("\n").rsplit("\n\n", 1)[-1]
        named = re.findall(r"`([\w./-]+\.yaml)`", paragraph)
        if block.group(1) == "yaml" and named:
            path = cwd / named[-1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.group(2))
            written.append(path)
    return written


def test_the_readme_shows_the_commands_this_test_runs() -> None:
    """The parser finds what the README documents (a change of fences would skip them)."""
    ran = [c for body in blocks("bash") for c in script(body)[1]]
    assert any("trainer=ddp trainer.accelerator=cpu trainer.devices=2" in c for c in ran)
    assert any(c.startswith("torchrun ") for c in ran)
    assert any("dnnexp eval" in c for c in ran) and any("dnnexp report" in c for c in ran)
    assert any("resume=$run" in c for c in ran)
    assert len(ran) >= 20
    assert with_smoke_limits("dnnexp train -m seed=0,1  # x") == (
        "dnnexp train " + " ".join(SMOKE) + " -m seed=0  # x"
    )
    assert not runnable("pip install tensorboard") and needs_a_gpu("dnnexp train trainer=ddp")
    search = "dnnexp train -m sweep=bayesian search.n_trials=30 search.confirm_seeds=5 a=1  # x"
    assert with_smoke_limits(search).endswith(
        "a=1 search.n_trials=2 search.confirm_seeds=2 # x"
    )  # a search's own budgets are smoke-sized too; a line without them keeps the sweep's
    assert with_smoke_limits("dnnexp train -m sweep=random").endswith("-m sweep=random")
    assert with_smoke_limits("dnnexp train -m reg=a,b seed=0,1,2,3,4 x=1").endswith(
        "reg=a,b seed=0 x=1"
    )  # a multirun's seeds cut to the first; a sweep over seeds gets one
    assert with_smoke_limits("dnnexp train -m sweep=reg_ablation  # 25").endswith(
        "sweep=reg_ablation seed=0 # 25"
    )
    assert with_smoke_limits("dnnexp train trainer.max_epochs=25 a=1").endswith(
        " trainer.max_epochs=2 a=1"
    )  # the smoke limit first, the line's own cut to 2
    assert "max_epochs=choice(100,200)" in with_smoke_limits(
        "dnnexp train -m 'trainer.max_epochs=choice(100,200)'"
    )  # a searched value stays


def test_blocks_that_read_earlier_runs_stay_in_their_lane() -> None:
    train, read = "dnnexp train a=1", "run=$(ls -d outputs/20*/*/)\ndnnexp eval ckpt=$run"
    items = [(0, train, [1]), (1, train, [1]), (2, read, [1]), (3, train, [1, 1])]
    assert [[n for n, *_ in lane] for lane in lanes(items)] == [[0, 3], [1, 2]]


def test_the_readme_config_files_are_found(tmp_path: Path) -> None:
    names = [p.relative_to(tmp_path).as_posix() for p in write_config_files(tmp_path)]
    assert names == ["myconf/model/wide_mlp.yaml", "myconf/sweep/my_ablation.yaml"]
    assert (tmp_path / names[1]).read_text().startswith("# @package _global_\n")


def cost(ran: list) -> int:
    """A block's expected time in units of one plain command (~6 s, mostly imports): a
    multirun ~4 (an ablation sweep's 25 jobs ~10), a DDP or torchrun run (processes of their
    own) ~7, a sequence-to-sequence model ~4. Measured per block."""
    total = 0
    for command in map(str, ran):
        total += 1 + 3 * (" -m " in command) + 6 * ("ddp" in command or "torchrun" in command)
        total += 6 * ("sweep=reg_ablation" in command) + 3 * ("seq2seq" in command)
    return total


def lanes(scripts: list[tuple[int, str, list[str]]]) -> list[list[tuple[int, str, list[str]]]]:
    """The blocks in two lanes that run side by side (one core each), each lane in its own
    directory and in README order, balanced by `cost`. A block that reads earlier runs
    (`$(ls -d outputs...` before its own first `dnnexp train`) or trains nothing itself (eval,
    predict, export of what the block before trained) stays in the lane of the block before."""
    two: list[list[tuple[int, str, list[str]]]] = [[], []]
    load, last = [0, 0], 0
    for item in scripts:
        text = item[1]
        reads = text.find("$(ls -d outputs")
        trains = text.find("dnnexp train")
        follows = trains < 0 or 0 <= reads < trains  # it uses what the block before made
        lane = last if follows else load.index(min(load))
        two[lane].append(item)
        load[lane] += cost(item[2])
        last = lane
    return two


README_DB = "postgresql://dnnexp@db.example.org/dnnexp"  # the README's shared-study server


def with_database(text: str, url: str | None) -> str:
    """The README's database URL replaced by the tests' own server (started on loopback), or,
    where PostgreSQL's binaries are missing, its lines left out."""
    if url:
        return text.replace(README_DB, url)
    return "\n".join(line for line in text.splitlines() if README_DB not in line) + "\n"


@pytest.mark.slow
def test_every_bash_command_in_the_readme_runs_as_written(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    env = shims(tmp_path / "bin")
    scripts = [(n, *script(body)) for n, body in enumerate(blocks("bash"))]
    assert any(README_DB in text for _, text, _ in scripts)
    try:
        url = request.getfixturevalue("postgres_url")
    except pytest.skip.Exception:
        url = None
    scripts = [(n, with_database(text, url), ran) for n, text, ran in scripts]

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

    def run_lane(lane: int, items: list) -> list[str]:
        cwd = tmp_path / f"user{lane}"
        cwd.mkdir()
        write_config_files(cwd)

        def own_core() -> None:  # each lane on a core of its own, as on a 1-core machine
            if len(cores) >= 2:
                os.sched_setaffinity(0, {cores[lane % len(cores)]})

        for n, text, _ in items:
            proc = subprocess.run(
                ["bash", "-c", text],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                preexec_fn=own_core,
            )
            if proc.returncode != 0 or "Traceback" in proc.stderr:
                return [f"README bash block {n}:\n{text}\n{proc.stderr[-3000:]}"]
        return []

    runnable_scripts = [item for item in scripts if item[2]]
    with ThreadPoolExecutor(2) as pool:
        failures = sum(pool.map(run_lane, range(2), lanes(runnable_scripts)), [])
    assert not failures, failures[0]


def console_examples() -> list[tuple[str, list[str]]]:
    """(command, the lines shown after it) for every `$ dnnexp ...` of a ```console block."""
    examples = []
    for body in blocks("console"):
        for chunk in re.split(r"^\$ ", body, flags=re.M)[1:]:
            command, *output = chunk.rstrip("\n").split("\n")
            examples.append((command, output))
    return examples


@pytest.mark.parametrize(("command", "output"), console_examples(), ids=lambda v: str(v)[:60])
def test_every_console_example_prints_what_the_readme_shows(
    tmp_path: Path, command: str, output: list[str]
) -> None:
    if needs_a_gpu(command) and torch.cuda.is_available():
        pytest.skip("shows what a machine without a GPU prints")
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        env=shims(tmp_path / "bin"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (proc.stdout + proc.stderr).splitlines() == output
