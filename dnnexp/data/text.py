"""Text files (`data=text`): a CSV, TSV or JSON-lines file with a text column (or several,
joined) and a label column. The loader reads the texts; the vocabulary is fitted by the data
module on the training split alone (`fit_vocab`) and every split is encoded with it
(`encode`): token ids padded with PAD to the longest text, cut at `data.max_length`.

Tokens are characters, words (`\\w+` runs and single punctuation marks) or sentencepiece
subwords (a unigram model trained on the training split alone, kept in the vocabulary as
base64 of its model file), optionally lowercased. Ids 0-3 are reserved: padding, unknown, begin
and end of a text."""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dnnexp.config.validate import SENTENCEPIECE_MISSING
from dnnexp.data import heads as head_targets
from dnnexp.data.arrays import Arrays
from dnnexp.data.local_files import DataError, existing

RESERVED = ("<pad>", "<unk>", "<bos>", "<eos>")
PAD, UNK, BOS, EOS = range(len(RESERVED))
WORD = re.compile(r"\w+|[^\w\s]")
FORMATS = "a .csv, .tsv (optionally .gz) or .jsonl file"


def tokenize(texts: Iterable[str], spec: dict[str, Any]) -> list[list[str]]:
    """Each text's tokens by the vocabulary's settings (`tokens`, `lowercase`, and for
    sentencepiece the trained model in `spec["sentencepiece"]`)."""
    texts = [t.lower() for t in texts] if spec["lowercase"] else list(texts)
    if spec["tokens"] == "char":
        return [list(t) for t in texts]
    if spec["tokens"] == "word":
        return [WORD.findall(t) for t in texts]
    processor = _sentencepiece().SentencePieceProcessor(
        model_proto=base64.b64decode(spec["sentencepiece"])
    )
    return processor.encode(texts, out_type=str)


def _sentencepiece() -> Any:
    try:
        import sentencepiece
    except ImportError:
        raise DataError(SENTENCEPIECE_MISSING) from None
    return sentencepiece


def train_sentencepiece(texts: list[str], size: int) -> str:
    """A unigram sentencepiece model of at most `size` pieces trained on `texts` (the training
    split's), as base64 of its model file; every character of the texts is covered."""
    spm = _sentencepiece()
    spm.set_random_generator_seed(0)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            vocab_size=size,
            hard_vocab_limit=False,  # fewer pieces when the texts hold fewer
            model_type="unigram",
            character_coverage=1.0,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as err:
        raise DataError(f"data.tokens=sentencepiece: training failed ({err})") from None
    return base64.b64encode(model.getvalue()).decode("ascii")


def _decoded(path: Path, encoding: str, errors: str) -> bytes:
    """The file's bytes as UTF-8; an undecodable byte is one line naming its row."""
    raw = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: not a readable gzip file ({err})") from None
    try:
        return raw.decode(encoding, errors=errors).encode("utf-8")
    except LookupError:
        raise DataError(f"data.encoding={encoding}: not an encoding Python knows") from None
    except UnicodeDecodeError as err:
        row = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: row {row} is not valid {encoding} (byte {raw[err.start]:#04x}): set"
            " data.encoding to the file's, or data.encoding_errors=replace"
        ) from None


def read_table_of_texts(path: Path, cfg: Any) -> Any:
    """The file as a pyarrow Table; only an empty cell is missing (a text "NA" is text)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson

    name = path.name.lower()
    data = io.BytesIO(_decoded(path, cfg.encoding, cfg.encoding_errors))
    try:
        if name.endswith((".jsonl", ".jsonl.gz", ".json")):
            table = pajson.read_json(data)
        elif name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
            delimiter = "\t" if ".tsv" in name else ","
            table = pacsv.read_csv(
                data,
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    null_values=[""],
                    strings_can_be_null=True,
                    column_types=_all_text(data, delimiter),
                ),
            )
        else:
            raise DataError(f"{path}: not a text file dnnexp reads; expected {FORMATS}")
    except pa.ArrowInvalid as err:
        first = (str(err).strip().splitlines() or ["unreadable"])[0]
        raise DataError(f"{path}: not a readable file ({first})") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: empty (expected a header row and at least one text)")
    return table


def _all_text(data: io.BytesIO, delimiter: str) -> dict[str, Any]:
    """Every column read as text (a label column of digits stays its spelling)."""
    import pyarrow as pa

    header = data.getvalue().split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    names = next(csv.reader([header], delimiter=delimiter), [])
    return {name: pa.string() for name in names}


def _column(table: Any, name: str, path: Path, key: str) -> list[str | None]:
    if name not in table.column_names:
        raise DataError(
            f"{path}: no column {name!r} ({key}); the columns are: {', '.join(table.column_names)}"
        )
    import pyarrow as pa

    return table.column(name).cast(pa.string()).to_pylist()


def read_texts(
    path: Path, cfg: Any, labelled: bool = True
) -> tuple[list[str], list[str] | None, Any]:
    """The texts (`data.text`'s columns joined by a space), their labels (None if the target
    column is absent, or not `labelled`: task=multitask reads its heads' columns itself), and
    the table (for pass-through columns)."""
    table = read_table_of_texts(path, cfg)
    columns = [cfg.text] if isinstance(cfg.text, str) else list(cfg.text)
    parts = [_column(table, name, path, "data.text") for name in columns]
    texts = [" ".join(p for p in row if p) for row in zip(*parts, strict=True)]
    empty = next((i for i, text in enumerate(texts) if not text.strip()), None)
    if empty is not None:
        raise DataError(f"{path}: row {empty + 2} has an empty text ({', '.join(columns)})")
    labels = None
    if labelled and cfg.target in table.column_names:
        labels = _column(table, cfg.target, path, "data.target")
        missing = next((i for i, label in enumerate(labels) if label is None), None)
        if missing is not None:
            raise DataError(f"{path}: row {missing + 2} has no label ({cfg.target})")
    return texts, labels, table


@dataclass
class TextPlan:
    """The texts of the training file (and the test file after them), by row index: the
    loader's x holds these indices until the data module encodes them."""

    texts: list[str]
    tokens: str
    lowercase: bool
    min_freq: int
    max_vocab: int | None
    max_length: int
    subword_vocab: int = 8000
    # task=seq2seq: each source's target texts (its references), and how they are tokenized
    references: list[list[str]] | None = None
    target_tokens: str = "word"
    target_max_length: int = 64

    def target_plan(self) -> TextPlan:
        """The references of every source, one after another, as texts to fit a vocabulary on
        (`reference_rows` gives a source's rows among them)."""
        assert self.references is not None
        flat = [ref for refs in self.references for ref in refs]
        return TextPlan(
            flat, self.target_tokens, False, 1, None, self.target_max_length, self.subword_vocab
        )

    def reference_rows(self, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of `sources`' references in `target_plan()`'s texts, and each one's source."""
        assert self.references is not None
        counts = torch.tensor([len(refs) for refs in self.references])
        starts = torch.cumsum(counts, 0) - counts
        per = counts[sources]
        owner = torch.repeat_interleave(sources, per)
        offset = torch.arange(int(per.sum())) - torch.repeat_interleave(
            torch.cumsum(per, 0) - per, per
        )
        return starts[owner] + offset, owner

    def digest(self, rows: torch.Tensor) -> str:
        digest = hashlib.sha256()
        for i in rows.tolist():
            digest.update(self.texts[i].encode() + b"\0")
        return digest.hexdigest()[:16]


def fit_vocab(plan: TextPlan, rows: torch.Tensor) -> dict[str, Any]:
    """The vocabulary of the training rows alone (tokens seen at least min_freq times, the most
    frequent first, at most max_vocab), as the plain dict a checkpoint keeps."""
    texts = [plan.texts[i] for i in rows.tolist()]
    spec: dict[str, Any] = {"tokens": plan.tokens, "lowercase": plan.lowercase}
    if plan.tokens == "sentencepiece":
        lowered = [t.lower() for t in texts] if plan.lowercase else texts
        spec["sentencepiece"] = train_sentencepiece(lowered, plan.subword_vocab)
    counts: Counter[str] = Counter()
    for tokens in tokenize(texts, spec):
        counts.update(tokens)
    kept = [
        t for t, c in sorted(counts.items(), key=lambda tc: (-tc[1], tc[0])) if c >= plan.min_freq
    ]
    if plan.max_vocab is not None:
        kept = kept[: plan.max_vocab]
    if not kept:
        raise DataError(
            f"the vocabulary would be empty: no {plan.tokens} token occurs data.min_freq="
            f"{plan.min_freq} times in the training split"
        )
    return {**spec, "max_length": plan.max_length, "vocab": [*RESERVED, *kept]}


def encode(
    texts: list[str], spec: dict[str, Any], width: int | None = None
) -> tuple[torch.Tensor, int]:
    """Token ids (N, width) padded with PAD (width: the longest, at most max_length), and how
    many texts were cut at max_length."""
    index = {token: i for i, token in enumerate(spec["vocab"])}
    limit = spec["max_length"]
    ids = [[index.get(t, UNK) for t in tokens] for tokens in tokenize(texts, spec)]
    cut = sum(len(row) > limit for row in ids)
    width = width or max(1, min(limit, max((len(row) for row in ids), default=1)))
    out = torch.full((len(ids), width), PAD, dtype=torch.int64)
    for i, row in enumerate(ids):
        row = row[:width]
        out[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
    return out, cut


def encode_targets(
    texts: list[str], spec: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Target ids (N, width + 1) ending in EOS (teacher forcing predicts it last), padded with
    PAD; each text's length in tokens (before the cut), and how many were cut at max_length."""
    ids, cut = encode(texts, spec)
    lengths = (ids != PAD).sum(1)
    out = torch.nn.functional.pad(ids, (0, 1), value=PAD)
    out[torch.arange(len(out)), lengths] = EOS
    full = torch.tensor([len(tokens) for tokens in tokenize(texts, spec)])
    return out, full, cut


def group_references(ids: torch.Tensor, owner: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """Each source's references (rows of `ids`, whose source is `owner`) as (N, R, T), in the
    order of `sources`, padded with rows of PAD."""
    counts = torch.bincount(owner, minlength=int(sources.max()) + 1 if len(sources) else 0)
    most = int(counts[sources].max()) if len(sources) else 1
    out = torch.full((len(sources), most, ids.shape[1]), PAD, dtype=ids.dtype)
    position = {int(s): i for i, s in enumerate(sources.tolist())}
    seen = [0] * len(sources)
    for row, source in enumerate(owner.tolist()):
        i = position[source]
        out[i, seen[i]] = ids[row]
        seen[i] += 1
    return out


def decode(ids: torch.Tensor | list[list[int]], spec: dict[str, Any]) -> list[str]:
    """Token ids (N, L), padded with PAD, as texts: characters joined, words (symbols)
    joined by spaces, sentencepiece pieces decoded by its model; EOS and anything after it
    dropped."""
    vocab = spec["vocab"]
    rows = []
    for row in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
        kept = []
        for i in row:
            if i == EOS:
                break
            if i != PAD:
                kept.append(vocab[i])
        rows.append(kept)
    if spec["tokens"] == "char":
        return ["".join(tokens) for tokens in rows]
    if spec["tokens"] == "word":
        return [" ".join(tokens) for tokens in rows]
    processor = _sentencepiece().SentencePieceProcessor(
        model_proto=base64.b64decode(spec["sentencepiece"])
    )
    return [processor.decode_pieces(tokens) for tokens in rows]


def text_stats(spec: dict[str, Any], splits: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What summary.json and the model card say of the text: vocabulary size, the share of the
    validation split's tokens it knows, the longest and the median length (in tokens)."""
    lengths = (splits["train"] != PAD).sum(1).float()
    val = splits["val"]
    real = val != PAD
    known = (real & (val != UNK)).sum().item() / max(real.sum().item(), 1)
    return {
        "tokens": spec["tokens"],
        "vocab_size": len(spec["vocab"]),
        "val_coverage": round(known, 4) if val.numel() else None,
        "longest": int(lengths.max().item()) if len(lengths) else 0,
        "median_length": float(lengths.median().item()) if len(lengths) else 0.0,
    }


def _plan(cfg: Any, texts: list[str], *pairs: Any) -> TextPlan:
    """The TextPlan of `data.*`'s tokenizer knobs (and, for pairs, the references and the
    target's tokens and length)."""
    knobs = (cfg.tokens, cfg.lowercase, cfg.min_freq, cfg.max_vocab, cfg.max_length)
    return TextPlan(texts, *knobs, cfg.subword_vocab, *pairs)


def load_pairs(cfg: Any) -> Arrays:
    """task=seq2seq: source texts (`data.text`) and target texts (`data.target`). Rows with the
    same source are one sample whose references are their targets (in one split together): x
    and y are the index of each distinct source (the training file's, then the test file's)."""
    sources: list[str] = []
    references: list[list[str]] = []
    counts = []
    for key, name in (("data.path", cfg.path), ("data.test_path", cfg.test_path)):
        if name is None:
            continue
        path = existing(name, key, f"{FORMATS} with a header row")
        texts, targets, table = read_texts(path, cfg)
        if targets is None:
            _column(table, cfg.target, path, "data.target")  # raises, listing the columns
        empty = next((i for i, t in enumerate(targets) if not t.strip()), None)
        if empty is not None:
            raise DataError(f"{path}: row {empty + 2} has an empty target ({cfg.target})")
        index: dict[str, int] = {}
        for text, target in zip(texts, targets, strict=True):
            if text not in index:
                index[text] = len(sources)
                sources.append(text)
                references.append([])
            if target not in references[index[text]]:
                references[index[text]].append(target)
        counts.append(len(index))
    n = counts[0]
    plan = _plan(cfg, sources, references, cfg.target_tokens, cfg.target_max_length)
    ids = torch.arange(len(sources))
    test = (ids[n:], ids[n:]) if cfg.test_path is not None else (None, None)
    return Arrays(ids[:n], ids[:n], None, *test, text=plan)


def load(cfg: Any) -> Arrays:
    path = existing(cfg.path, "data.path", f"{FORMATS} with a header row")
    texts, labels, table = read_texts(path, cfg)
    if labels is None:
        _column(table, cfg.target, path, "data.target")  # raises: no such column, and the columns
    names = sorted(set(labels))
    x_test = y_test = None
    all_texts = list(texts)
    if cfg.test_path is not None:
        test = existing(cfg.test_path, "data.test_path", f"{FORMATS} of the same columns")
        test_texts, test_labels, _ = read_texts(test, cfg)
        if test_labels is None:
            raise DataError(f"{test}: no column {cfg.target!r} (data.target)")
        unknown = sorted(set(test_labels) - set(names))
        if unknown:
            raise DataError(f"{test}: labels {unknown} are not among the training labels")
        x_test = torch.arange(len(texts), len(texts) + len(test_texts))
        y_test = torch.tensor([names.index(label) for label in test_labels])
        all_texts += test_texts
    plan = _plan(cfg, all_texts)
    index = {name: i for i, name in enumerate(names)}
    y = torch.tensor([index[label] for label in labels], dtype=torch.int64)
    return Arrays(torch.arange(len(texts)), y, names, x_test, y_test, text=plan)


def _head_file(
    path: Path, cfg: Any, heads: list[dict[str, Any]], classes: Any
) -> tuple[list[str], torch.Tensor, Any]:
    """A file's texts and (N, heads) targets (NaN where a row has no label for a head)."""
    texts, _, table = read_texts(path, cfg, labelled=False)
    head_targets.head_columns(heads, table.column_names, path)
    cells = [_column(table, head["column"], path, "task.heads") for head in heads]
    y, classes = head_targets.targets(cells, heads, path, classes)
    head_targets.check_labelled(y, path)
    return texts, y, classes


def load_multitask(cfg: Any, heads: list[dict[str, Any]]) -> Arrays:
    """task=multitask: the texts as `load` reads them, the targets from the heads' columns
    (`data/heads.py`), a missing (empty) label kept as NaN."""
    path = existing(cfg.path, "data.path", f"{FORMATS} with a header row")
    texts, y, classes = _head_file(path, cfg, heads, None)
    all_texts, x_test, y_test = list(texts), None, None
    if cfg.test_path is not None:
        test = existing(cfg.test_path, "data.test_path", f"{FORMATS} of the same columns")
        test_texts, y_test, _ = _head_file(test, cfg, heads, classes)
        x_test = torch.arange(len(texts), len(texts) + len(test_texts))
        all_texts += test_texts
    named = head_targets.with_classes(heads, classes)
    plan = _plan(cfg, all_texts)
    return Arrays(torch.arange(len(texts)), y, None, x_test, y_test, text=plan, heads=named)
