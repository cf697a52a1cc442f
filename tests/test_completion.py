"""Shell completion: the command word, then Hydra's completer and the schema's choices."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dnnexp.cli import COMMANDS
from dnnexp.commands.completion import SCRIPTS, query
from tests.conftest import needs_slow_mark, run_here


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("dnnexp ", ["train", "eval", "predict", "export", "prune", "report", "lr-find"]),
        ("dnnexp tr", ["train"]),
        ("dnnexp train model=res", ["model=resnet", "model=resnext"]),
        ("dnnexp train trainer.prec", ["trainer.precision="]),
        (
            "dnnexp train trainer.precision=bf16",
            ["trainer.precision=bf16-mixed", "trainer.precision=bf16-true"],
        ),
        (
            "dnnexp train model=resnet model.norm=",
            ["model.norm=batch", "model.norm=group", "model.norm=layer", "model.norm=none"],
        ),
        (
            "dnnexp lr-find debug=",
            ["debug=default", "debug=fdr", "debug=limit", "debug=overfit", "debug=profiler"],
        ),
        ("dnnexp eval ", []),  # the shell's own file names
    ],
)
def test_query_completes_commands_then_overrides(line: str, expected: list[str]) -> None:
    assert query(line, COMMANDS) == expected


def test_train_sc_install_prints_the_script_that_completes_every_command(tmp_path: Path) -> None:
    """`dnnexp train -sc install=bash` (Hydra's spelling) installs dnnexp's script, whose TAB
    asks `dnnexp -sc query=bash`: before, that answered "unknown command '-sc'"."""
    for args in (("train", "-sc", "install=bash"), ("-sc", "install=bash")):
        done = run_here(*args, cwd=tmp_path)
        assert done.returncode == 0 and done.stdout == SCRIPTS["bash"]
    done = run_here("-sc", "install=tcsh", cwd=tmp_path)
    assert done.returncode == 2 and "install=bash|zsh|fish" in done.stderr


@pytest.mark.slow
def test_tab_in_bash_completes_through_the_installed_script(tmp_path: Path) -> None:
    """The script as bash sources it, its completion function called as bash calls it on TAB,
    with `dnnexp` on the PATH."""
    needs_slow_mark()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "dnnexp"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m dnnexp "$@"\n')
    shim.chmod(0o755)
    script = tmp_path / "complete.sh"
    script.write_text(
        'eval "$(dnnexp -sc install=bash)"\n'
        "tab() {\n"
        '  COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}\n'
        '  read -ra COMP_WORDS <<< "$COMP_LINE"\n'
        '  if [[ "$COMP_LINE" == *" " ]]; then COMP_WORDS+=(""); fi\n'
        "  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        "  _dnnexp_completion\n"
        '  echo "${COMPREPLY[*]}"\n'
        "}\n"
        'tab "dnnexp tr"\n'
        'tab "dnnexp train model=res"\n'
        'tab "dnnexp train reg=e"\n'
    )
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [shutil.which("bash") or "bash", str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "train",
        "model=resnet model=resnext",
        "reg=early_stopping reg=ema",
    ]
