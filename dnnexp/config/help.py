"""`dnnexp train --help`: every config group and option with its one-line description.

Read straight from the YAML files (no composition), so it prints in a fraction of a second;
Hydra's own help composes every option of every group and takes seconds.
"""

from __future__ import annotations

from pathlib import Path

from dnnexp.config import conf_dir

HEADER = """\
usage: dnnexp train [--multirun|-m] [--cfg job|hydra|all] [--config-dir DIR] [key=value ...]

Trains a model from config groups; pick an option per group with group=option, change any
key with key=value, sweep with -m key=a,b,c. The run goes to outputs/<date>/<time>/.

examples:
  dnnexp train                                    the default experiment (MLP on digits)
  dnnexp train model=resnext reg=dropout          another model, with dropout
  dnnexp train task=regression data=diabetes      regression on a bundled table
  dnnexp train reg=[dropout,weight_decay] optimizer.lr=0.003
  dnnexp train -m reg=none,dropout seed=0,1,2     a multirun: 2 variants x 3 seeds
  dnnexp train trainer=smoke                      one short epoch (CI smoke test)
  dnnexp train --cfg job                          print the composed config and exit

config groups (option: description; * = default):
"""

FOOTER = """
other flags: --cfg job (composed config), --resolve, --info, --hydra-help (Hydra's own help),
  hydra.run.dir=DIR (where the run goes), --config-dir DIR (add your own groups/options)
"""


def _description(path: Path) -> str:
    """The first sentence of the file's leading comment block."""
    words = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            words.append(line.lstrip("# ").strip())
    text = " ".join(words)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def _defaults(root: Path) -> dict[str, str]:
    """group -> default option, from the defaults list of train.yaml (one level, plain entries)."""
    out: dict[str, str] = {}
    for line in (root / "train.yaml").read_text().splitlines():
        entry = line.split("#")[0].strip()
        if entry.startswith("- ") and ":" in entry:
            group, option = entry[2:].split(":", 1)
            out[group.strip()] = option.strip()
    return out


def render(extra_dirs: list[str] = ()) -> str:
    roots = [conf_dir(), *(Path(d) for d in extra_dirs)]
    defaults = _defaults(roots[0])
    groups: dict[str, dict[str, str]] = {}
    for root in roots:
        for path in sorted(root.glob("*/*.yaml")):
            if path.parent.name != "hydra":
                groups.setdefault(path.parent.name, {})[path.stem] = _description(path)
    lines = [HEADER]
    width = max([16, *(len(o) for options in groups.values() for o in options)])
    for group in sorted(
        groups,
        key=lambda g: (g not in defaults, list(defaults).index(g) if g in defaults else 0, g),
    ):
        lines.append(f"  {group}")
        for option, text in groups[group].items():
            mark = "*" if defaults.get(group) == option else " "
            lines.append(f"    {mark} {option:<{width}} {text}")
    lines.append(FOOTER)
    return "\n".join(lines)


def knob_choices(key: str, words: list[str]) -> list[str] | None:
    """The schema's allowed values of `key` (a knob with `choices`), for the group options
    picked in `words` (else the defaults): `model.norm` of model=resnet is resnet's."""
    import dataclasses
    import typing

    from dnnexp.config.schema import GROUP_SCHEMAS, TrainSchema
    from dnnexp.config.validate import _schema_at

    parts = key.split(".")
    schema: typing.Any = TrainSchema
    if parts[0] in GROUP_SCHEMAS and len(parts) > 1:
        picked = [w.split("=", 1)[1] for w in words if w.startswith(parts[0] + "=")]
        option = picked[-1] if picked else _defaults(conf_dir()).get(parts[0])
        schema, parts = GROUP_SCHEMAS[parts[0]].get(option), parts[1:]
    node = _schema_at(schema, parts[:-1])  # the dataclass that holds the knob
    if node is None or not dataclasses.is_dataclass(node):
        return None
    field = {f.name: f for f in dataclasses.fields(node)}.get(parts[-1])
    choices = None if field is None else field.metadata.get("choices")
    return None if choices is None else ["null" if c is None else str(c) for c in choices]
