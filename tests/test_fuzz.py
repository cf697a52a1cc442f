"""Fuzz the real override parser, composition and validation: any command line either gives a
valid config or an error that dnnexp reports as one clean line, never a traceback."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from dnnexp.config.hydra_setup import one_line
from tests.conftest import compose


def _known_keys() -> list[str]:
    cfg = OmegaConf.to_container(compose(), resolve=True)
    keys: list[str] = []

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        keys.append(prefix.rstrip("."))

    walk(cfg, "")
    return [k for k in keys if k]


KEYS = _known_keys()
GROUPS = ["model", "data", "optimizer", "scheduler", "reg", "trainer", "logger", "sweep"]

keys = st.one_of(
    st.sampled_from(KEYS),
    st.sampled_from(GROUPS),
    st.text(alphabet=string.ascii_lowercase + "._", min_size=1, max_size=15),
)
values = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.booleans().map(str),
    st.sampled_from(
        [
            "",
            "null",
            "none",
            "[]",
            "[1,2]",
            "{a: 1}",
            "'quoted'",
            "${oops}",
            "[",
            "}",
            "mlp",
            "resnext",
            "[dropout,l1]",
            "nan",
            "-inf",
            "1e-300",
            "ddp",
            "gpu",
        ]
    ),
    st.text(alphabet=string.printable.strip(), max_size=10),
)
overrides = st.lists(
    st.tuples(st.sampled_from(["", "+", "~", "++"]), keys, values).map(
        lambda t: f"{t[0]}{t[1]}={t[2]}"
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides)
@example(["~seed=\\n"])  # a backslash and an n, typed: quoted back, still one line
@example(["++model=\\n"])
def test_any_overrides_compose_or_fail_with_one_clean_line(args: list[str]) -> None:
    try:
        compose(*args)
    except Exception as ex:  # noqa: BLE001 - the property is about every exception
        line = one_line(ex)
        assert line is not None, f"{args!r} -> uncaught {type(ex).__name__}: {ex}"
        quoted = line
        for arg in args:  # a value the user typed with a backslash is quoted back as typed
            quoted = quoted.replace(arg.split("=", 1)[-1], "")
        assert "\n" not in line.strip(), f"{args!r} -> a multi-line message: {line!r}"
        assert "\\n" not in quoted, f"{args!r} -> an escaped multi-line message: {line!r}"
