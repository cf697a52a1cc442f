"""A small synthetic text file for trying `data=text` (no real data: that comes from a script
that builds it on your machine).

    python scripts/toy_texts.py OUT.csv [--rows 600]

Writes `id,text,label` rows: short "reviews" of 2-12 words drawn from a positive or a negative
word list mixed with neutral words, labelled pos or neg.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

WORDS = {
    "pos": ["good", "great", "love", "nice", "superb", "fun", "moving", "clever"],
    "neg": ["bad", "awful", "hate", "sad", "boring", "dull", "weak", "silly"],
}
NEUTRAL = ["the", "a", "film", "plot", "was", "actors", "and", "very", "story", "it"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=600)
    args = parser.parse_args()
    rng = random.Random(0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "label"])
        for i in range(args.rows):
            label = "pos" if i % 2 else "neg"
            pool = WORDS[label] + NEUTRAL * 2
            words = [rng.choice(pool) for _ in range(rng.randint(2, 12))]
            writer.writerow([i, " ".join(words).capitalize() + ".", label])
    print(args.out)


if __name__ == "__main__":
    main()
