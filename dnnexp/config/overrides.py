"""What an override string says about pairing runs: the one rule the report (variants, paired
tests) and the trackers (a run's variant tag) share."""

from __future__ import annotations


def key_of(override: str) -> str:
    """The key an override sets (`+seed=1` -> `seed`)."""
    return override.partition("=")[0].strip().lstrip("+~")


def is_seed(override: str) -> bool:
    """Whether an override sets the seed (seed=1, +seed=1, ++seed=1)."""
    return key_of(override) == "seed"


def is_unit(override: str) -> bool:
    """Whether an override sets what pairs runs across variants: the seed, or data.fold."""
    return is_seed(override) or key_of(override) == "data.fold"


def privacy_warning(runs: int) -> str:
    """The one line the report and the search summary print over private runs."""
    return (
        f"privacy: each ε covers its own run; comparing or choosing among these {runs} private"
        " runs of the same data spends privacy that no single run's ε accounts for (ε adds up"
        " across runs: pick the setting on public data, or count the selection too)"
    )
