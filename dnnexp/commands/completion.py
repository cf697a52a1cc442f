"""Shell completion: `dnnexp -sc install=bash|zsh|fish` prints a script for the shell to source.
Its TAB asks `dnnexp -sc query=SHELL` (with the line in COMP_LINE): the command word first,
then for `train` and `lr-find` Hydra's own completer (groups, options, keys) on what follows
the command word, plus the schema's choices for a key's value (`trainer.precision=`)."""

from __future__ import annotations

import os
import shlex
import sys

SHELLS = ("bash", "zsh", "fish")
TAKES_OVERRIDES = ("train", "lr-find")

BASH = """\
_dnnexp_completion()
{
    local word="${COMP_WORDS[COMP_CWORD]}"
    local choices
    choices=$(COMP_LINE="${COMP_LINE:0:$COMP_POINT}" dnnexp -sc query=bash 2>/dev/null)
    COMPREPLY=($(compgen -W "$choices" -- "$word"))
    if [[ $COMP_CWORD == 1 ]]; then compopt +o nospace 2>/dev/null; fi  # a command: then a space
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
COMP_WORDBREAKS=${COMP_WORDBREAKS//:}
complete -o nospace -o default -F _dnnexp_completion dnnexp
"""
ZSH = "autoload -U +X bashcompinit && bashcompinit\n" + BASH
FISH = """\
function _dnnexp_completion
    COMP_LINE=(commandline -cp) dnnexp -sc query=fish 2>/dev/null
end
complete -c dnnexp -f -a '(_dnnexp_completion)'
"""
SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}

USAGE = (
    'usage: dnnexp -sc install=bash|zsh|fish (print the script: eval "$(dnnexp -sc'
    ' install=bash)" in ~/.bashrc, the same with zsh; dnnexp -sc install=fish | source)'
)


def main(args: list[str], commands: tuple[str, ...]) -> int:
    request = dict(a.split("=", 1) for a in args if "=" in a)
    action = next((k for k in ("install", "uninstall", "query") if k in request), None)
    shell = request.get(action or "", "")
    if action is None or shell not in SHELLS or len(args) != 1:
        print(f"error: {USAGE}", file=sys.stderr)
        return 2
    if action == "install":
        print(SCRIPTS[shell], end="")
    elif action == "uninstall":
        print("complete -e -c dnnexp" if shell == "fish" else "complete -r dnnexp")
    else:
        separator = "\n" if shell == "fish" else " "
        print(separator.join(query(os.environ.get("COMP_LINE", ""), commands)))
    return 0


def query(line: str, commands: tuple[str, ...]) -> list[str]:
    """What may come next after `line` (the command line up to the cursor); `commands`: the
    CLI's (handed down by `cli.py`)."""
    from dnnexp.config.help import knob_choices

    words = line.split()
    new_word = not line or line[-1].isspace()
    args = words[1:]  # after "dnnexp"
    if not args or (len(args) == 1 and not new_word):
        typed = "" if not args else args[0]
        return [c for c in commands if c.startswith(typed)]
    if args[0] not in TAKES_OVERRIDES:
        return []  # eval, predict, ...: the shell's own file names
    rest = " ".join(shlex.quote(a) if "'" not in a else a for a in args[1:])
    rest += " " if new_word else ""
    current = "" if new_word else args[-1]
    if "=" in current and not current.startswith(("+", "~")):
        key, typed = current.split("=", 1)
        choices = knob_choices(key, args[1:-1])
        if choices is not None:
            return [f"{key}={c}" for c in choices if c.startswith(typed)]
    return _hydra(rest)


def _hydra(line: str) -> list[str]:
    from dnnexp import compat
    from dnnexp.config import conf_dir, schema
    from dnnexp.config.hydra_setup import register_resolvers

    schema.register()
    register_resolvers()
    try:
        return compat.hydra_completions(str(conf_dir()), "train", line)
    except Exception:  # a half-typed override Hydra cannot parse: nothing to offer
        return []
