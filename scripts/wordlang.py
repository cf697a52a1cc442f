"""Language identification of single words, built on your machine from wordfreq's word lists.

    pip install wordfreq msgpack
    python scripts/wordlang.py OUT_DIR [--words 5000] [--languages en,fr,...] [--anchor]

wordfreq ships its word-frequency lists inside its wheel (`wordfreq/data/small_<lang>.msgpack.gz`,
CC-BY-SA 4.0: the derived files are written here, never committed to dnnexp). For each language
the script keeps the `--words` most frequent words made of letters only (wordfreq's own
tokenization: lowercase, apostrophes split off), then removes every word that is in the lists of
two languages or more (a word like "de" or "in" has no single answer). It writes
`OUT_DIR/train.tsv` and `OUT_DIR/test.tsv` (columns `word`, `lang`; 80/20, stratified by
language, fixed seed) for

    dnnexp train data=text data.path=OUT_DIR/train.tsv data.test_path=OUT_DIR/test.tsv \\
        data.text=word data.target=lang data.tokens=char

`--anchor` also fits the baseline the README compares with: TF-IDF of character 1-4-grams
(within word boundaries) + logistic regression on dnnexp's own split of the training file (its
stratified 10% validation split chooses C; the model fitted on the other 90% is scored on
test.tsv, and so is one refitted on the whole training file).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import random
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

LANGUAGES = "en,fr,de,es,it,pt,nl,sv,pl,cs"  # ten languages written in the Latin alphabet


def word_list(language: str, count: int) -> list[str]:
    """The `count` most frequent words of letters only, most frequent first. The file is a
    msgpack list: a header, then buckets of words by frequency (in centibels, most frequent
    first)."""
    import msgpack

    try:
        files = metadata.distribution("wordfreq").locate_file("wordfreq/data")
    except metadata.PackageNotFoundError:
        raise SystemExit("needs wordfreq's word lists: pip install wordfreq msgpack") from None
    path = Path(str(files)) / f"small_{language}.msgpack.gz"
    if not path.exists():
        raise SystemExit(f"wordfreq has no word list for {language!r} ({path})")
    header, *buckets = msgpack.unpackb(gzip.decompress(path.read_bytes()), raw=False)
    if header.get("format") != "cB":
        raise SystemExit(f"{path}: unexpected format {header!r}")
    words = [w for bucket in buckets for w in bucket if w.isalpha()]
    return words[:count]


def build(languages: list[str], count: int, seed: int = 0) -> tuple[list, list, dict]:
    lists = {lang: word_list(lang, count) for lang in languages}
    seen = Counter(w for words in lists.values() for w in set(words))
    rng = random.Random(seed)
    train, test, kept = [], [], {}
    for lang, words in lists.items():
        unique = [w for w in words if seen[w] == 1]
        kept[lang] = len(unique)
        rng.shuffle(unique)
        cut = round(len(unique) * 0.8)
        train += [(w, lang) for w in unique[:cut]]
        test += [(w, lang) for w in unique[cut:]]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test, kept


def write(rows: list[tuple[str, str]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["word", "lang"])
        writer.writerows(rows)


def anchor(train: list, test: list, seed: int = 0) -> dict[str, float]:
    """TF-IDF char 1-4-grams + LogisticRegression on the networks' own split: dnnexp's
    stratified 10% validation split of the training file (data.val_fraction=0.1,
    data.split_seed=0) chooses C; the model fitted on the other 90% is tested, and so is one
    refitted on the whole training file (the usual scikit-learn protocol)."""
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from dnnexp.data.splits import stratified_split

    words, langs = [w for w, _ in train], [lang for _, lang in train]
    names = sorted(set(langs))
    y = torch.tensor([names.index(lang) for lang in langs])
    fit_rows, val_rows, _ = stratified_split(y, 0.1, 0.0, seed)
    fit_w, fit_l = [words[i] for i in fit_rows.tolist()], [langs[i] for i in fit_rows.tolist()]
    val_w, val_l = [words[i] for i in val_rows.tolist()], [langs[i] for i in val_rows.tolist()]
    test_w, test_l = [w for w, _ in test], [lang for _, lang in test]

    def model(c: float):
        return make_pipeline(
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True),
            LogisticRegression(C=c, max_iter=2000),
        )

    fitted = {c: model(c).fit(fit_w, fit_l) for c in (1.0, 3.0, 10.0, 30.0, 100.0)}
    val = {c: m.score(val_w, val_l) for c, m in fitted.items()}
    best = max(val, key=val.get)
    started = time.perf_counter()
    final = model(best).fit(words, langs)
    seconds = time.perf_counter() - started
    return {
        "C": best,
        "val_acc": val[best],
        "test_acc": fitted[best].score(test_w, test_l),  # the networks' training split
        "test_acc_refit": final.score(test_w, test_l),  # the whole training file
        "fit_s": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--words", type=int, default=5000, help="per language, before removal")
    parser.add_argument("--languages", default=LANGUAGES)
    parser.add_argument("--anchor", action="store_true", help="fit and score the TF-IDF baseline")
    args = parser.parse_args()
    languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()]
    train, test, kept = build(languages, args.words)
    args.out.mkdir(parents=True, exist_ok=True)
    write(train, args.out / "train.tsv")
    write(test, args.out / "test.tsv")
    print(f"wordfreq {metadata.version('wordfreq')}: {len(train)} training and {len(test)} test")
    print("words kept per language: " + ", ".join(f"{k} {v}" for k, v in kept.items()))
    print(f"written: {args.out / 'train.tsv'}, {args.out / 'test.tsv'}")
    if args.anchor:
        result = anchor(train, test)
        print(
            f"anchor (TF-IDF char 1-4-grams + LogisticRegression, C={result['C']:g}):"
            f" val acc {result['val_acc']:.4f}, test acc {result['test_acc']:.4f} (fitted on"
            f" dnnexp's training split), {result['test_acc_refit']:.4f} (refitted on the whole"
            f" training file, {result['fit_s']:.1f} s)"
        )


if __name__ == "__main__":
    main()
