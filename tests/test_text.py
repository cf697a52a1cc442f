"""Text as input (`data=text`, `data/text.py`): the vocabulary of the training split alone,
padding that never changes an output, bad text files in one line each."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from dnnexp.config.errors import ConfigError
from dnnexp.data.local_files import DataError
from tests.conftest import compose, run_cli, summary

WORDS = {"pos": ["good", "great", "love", "nice"], "neg": ["bad", "awful", "hate", "sad"]}


def write_texts(path: Path, n: int = 120, *, seed: int = 0, **cells: list) -> list[dict]:
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = [
            rng.choice([*WORDS[label], "the", "film", "was"]) for _ in range(rng.randint(2, 9))
        ]
        rows.append({"id": str(i), "text": " ".join(words), "label": label})
    for column, values in cells.items():
        for row, value in zip(rows, values, strict=True):
            row[column] = value
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def load(*overrides: str):
    from dnnexp.data.datamodule import ArrayDataModule

    cfg = compose("data=text", "model=lstm", *overrides)
    data = ArrayDataModule(cfg.data, cfg.seed)
    data.setup()
    return data


def test_the_vocabulary_comes_from_the_training_split_alone(tmp_path: Path, capsys) -> None:
    from dnnexp.data.splits import stratified_split

    n = 120
    labels = torch.tensor([1 if i % 2 else 0 for i in range(n)])  # neg < pos
    train, val, test = stratified_split(labels, 0.1, 0.2, 0)
    held_out = set(val.tolist()) | set(test.tolist())
    rows = write_texts(tmp_path / "t.csv", n)
    texts = [r["text"] + (" poison" if i in held_out else "") for i, r in enumerate(rows)]
    long = ["x " * 40 if i == int(train[0]) else t for i, t in enumerate(texts)]
    write_texts(tmp_path / "t.csv", n, text=long)
    data = load(f"data.path={tmp_path / 't.csv'}", "data.max_length=20")
    assert "1 texts longer than data.max_length=20 tokens were cut" in capsys.readouterr().out
    spec = data.preprocess["text"]
    assert spec["vocab"][:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert "poison" not in spec["vocab"] and data.vocab_size == len(spec["vocab"])
    x_val = data.splits["val"][0]
    assert (x_val == 1).any(dim=1).all()  # each held-out text: its "poison" is <unk>
    assert data.splits["train"][0].shape[1] == 20 and spec["longest"] == 20
    assert 0 < spec["val_coverage"] < 1


def test_sentencepiece_is_trained_on_the_training_split_alone(tmp_path: Path) -> None:
    import base64

    import sentencepiece

    from dnnexp.data.splits import stratified_split
    from dnnexp.data.text import encode, tokenize

    n = 120
    labels = torch.tensor([1 if i % 2 else 0 for i in range(n)])
    _, val, test = stratified_split(labels, 0.1, 0.2, 0)
    held_out = set(val.tolist()) | set(test.tolist())
    rows = write_texts(tmp_path / "t.csv", n)
    texts = [r["text"] + (" zyzzyva" if i in held_out else "") for i, r in enumerate(rows)]
    write_texts(tmp_path / "t.csv", n, text=texts)
    data = load(
        f"data.path={tmp_path / 't.csv'}", "data.tokens=sentencepiece", "data.subword_vocab=40"
    )
    spec = data.preprocess["text"]
    assert isinstance(spec["sentencepiece"], str)  # a checkpoint's plain container
    model = sentencepiece.SentencePieceProcessor(
        model_proto=base64.b64decode(spec["sentencepiece"])
    )
    pieces = {model.id_to_piece(i) for i in range(model.get_piece_size())}
    assert not any("z" in piece for piece in pieces)  # no held-out text trained it
    assert tokenize(["good film"], spec) == [model.encode("good film", out_type=str)]
    ids, _ = encode(["Good zyzzyva"], spec)
    assert (ids[0, : len(tokenize(["good zyzzyva"], spec)[0])] > 0).all()
    assert 1 in ids[0].tolist()  # pieces training never saw are <unk>
    assert spec["vocab"][:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]


TOKEN_FAMILIES = [
    *(
        [f"model={family}", f"model.bidirectional={bi}"]
        for family in ("rnn", "lstm", "gru")
        for bi in ("false", "true")
    ),
    ["model=gru", "model.bidirectional=true", "model.pooling=max"],
    ["model=lstm", "model.pooling=mean"],
    ["model=textcnn"],
    ["model=textcnn", "model.pooling=mean"],
    ["model=transformer"],
    ["model=transformer", "model.pooling=first"],
]


@pytest.mark.parametrize("overrides", TOKEN_FAMILIES, ids=lambda o: " ".join(o))
def test_padding_never_changes_an_output(tmp_path: Path, overrides: list[str]) -> None:
    from dnnexp.models import build_model

    write_texts(tmp_path / "t.csv", 10)
    cfg = compose("data=text", f"data.path={tmp_path / 't.csv'}", *overrides).model
    torch.manual_seed(0)
    model = build_model(cfg, (30,), 3, 0.0, vocab_size=50).eval()
    lengths = [3, 7, 1, 12]
    texts = [torch.randint(4, 50, (n,)) for n in lengths]
    batch = torch.zeros(len(texts), 30, dtype=torch.int64)
    for i, ids in enumerate(texts):
        batch[i, : len(ids)] = ids
    with torch.no_grad():
        together = model(batch)
        for i, ids in enumerate(texts):
            alone = model(ids[None])
            padded = model(torch.nn.functional.pad(ids, (0, 5))[None])
            assert torch.allclose(together[i], alone[0], atol=1e-6)
            assert torch.allclose(padded[0], alone[0], atol=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [
        [f"model={family}", f"model.bidirectional={bi}", "model.num_layers=2", *act]
        for family, act in (("rnn", ["model.activation=relu"]), ("lstm", []), ("gru", []))
        for bi in ("false", "true")
    ]
    + [
        ["model=gru", "model.bidirectional=true", "model.num_layers=2", f"model.pooling={p}"]
        for p in ("max", "mean")
    ],
    ids=lambda o: " ".join(o),
)
def test_the_unrolled_reading_an_export_traces_equals_the_packed_one(
    tmp_path: Path, overrides: list[str]
) -> None:
    from dnnexp.models import build_model

    write_texts(tmp_path / "t.csv", 10)
    cfg = compose("data=text", f"data.path={tmp_path / 't.csv'}", *overrides).model
    torch.manual_seed(0)
    model = build_model(cfg, (30,), 3, 0.3, vocab_size=50).eval()
    batch = torch.zeros(5, 16, dtype=torch.int64)
    for i, n in enumerate([3, 16, 1, 9, 12]):
        batch[i, :n] = torch.randint(4, 50, (n,))
    with torch.no_grad():
        packed, unrolled = model._read_tokens(batch), model._read_tokens_unrolled(batch)
    assert packed.shape == unrolled.shape
    assert torch.allclose(packed, unrolled, atol=1e-6)


def test_the_transformers_scaled_embeddings_have_the_positions_scale(tmp_path: Path) -> None:
    from dnnexp.models import build_model

    write_texts(tmp_path / "t.csv", 10)
    cfg = compose("data=text", f"data.path={tmp_path / 't.csv'}", "model=transformer").model
    model = build_model(cfg, (30,), 3, 0.0, vocab_size=5000)
    scaled = model.embed.weight.detach()[1:] * cfg.embed_dim**0.5
    assert 0.9 < float(scaled.std()) < 1.1  # as the sinusoids' (std ~0.7), not 8 times them
    assert not model.embed.weight.detach()[0].any()  # padding


BAD_TEXTS = [
    ("no-text-column", "no column 'review' (data.text); the columns are: id, text, label"),
    ("no-label-column", "no column 'stars' (data.target); the columns are: id, text, label"),
    ("empty-text", "row 5 has an empty text (text)"),
    ("latin-1", "row 4 is not valid utf-8 (byte 0xe9): set data.encoding to the file's"),
    ("empty-vocab", "the vocabulary would be empty: no word token occurs data.min_freq=1000"),
]


def _bad(tmp_path: Path, name: str) -> list[str]:
    path = tmp_path / "t.csv"
    n = 30
    if name == "empty-text":
        write_texts(path, n, text=["" if i == 3 else "good" for i in range(n)])
    else:
        write_texts(path, n)
    extra = {
        "no-text-column": ["data.text=review"],
        "no-label-column": ["data.target=stars"],
        "empty-vocab": ["data.min_freq=1000"],
    }.get(name, [])
    if name == "latin-1":
        lines = path.read_bytes().split(b"\n")
        lines[3] = b"3,caf\xe9 good,pos\r"  # row 4: "caf\u00e9" in latin-1
        path.write_bytes(b"\n".join(lines))
    return [f"data.path={path}", *extra]


@pytest.mark.parametrize(("name", "expected"), BAD_TEXTS, ids=[n for n, _ in BAD_TEXTS])
def test_bad_text_files_fail_in_one_line(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(DataError) as err:
        load(*_bad(tmp_path, name))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_a_latin_1_file_reads_with_its_encoding_and_families_that_do_not_read_tokens_are_named(
    tmp_path: Path,
) -> None:
    overrides = _bad(tmp_path, "latin-1")
    data = load(*overrides, "data.encoding=latin-1")
    assert "café" in data.preprocess["text"]["vocab"]
    replaced = load(*overrides, "data.encoding_errors=replace")
    assert replaced.vocab_size > 4
    with pytest.raises(ConfigError, match="model=cnn does not read tokens; data=text is text: use"):
        compose("data=text", f"data.path={tmp_path / 't.csv'}", "model=cnn")
    with pytest.raises(ConfigError, match="reg=augment .* data=text is token ids"):
        compose("data=text", f"data.path={tmp_path / 't.csv'}", "model=gru", "reg=augment")


@pytest.mark.slow
def test_a_text_run_predicts_its_test_metrics_from_the_raw_file(tmp_path: Path) -> None:
    write_texts(tmp_path / "train.csv", 200, seed=1)
    write_texts(tmp_path / "test.csv", 60, seed=2)
    args = [
        "data=text",
        f"data.path={tmp_path / 'train.csv'}",
        f"data.test_path={tmp_path / 'test.csv'}",
        "model=lstm",
        "model.bidirectional=true",
        "trainer.max_epochs=3",
        "hydra.run.dir=run",
    ]
    proc = run_cli("train", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = summary(tmp_path / "run")
    assert result["text"]["tokens"] == "word" and result["text"]["vocab_size"] == 4 + 11
    predicted = run_cli(
        "predict", "ckpt=run", f"input={tmp_path / 'test.csv'}", "out=preds.csv", cwd=tmp_path
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    metrics = json.loads((tmp_path / "preds.metrics.json").read_text())["metrics"]
    assert metrics["acc"] == pytest.approx(result["metrics"]["test/acc"], abs=1e-9)
    assert metrics["loss"] == pytest.approx(result["metrics"]["test/loss"], abs=1e-6)
    rows = list(csv.DictReader(open(tmp_path / "preds.csv")))
    assert len(rows) == 60 and rows[0]["id"] == "0" and rows[0]["prediction"] in WORDS
    (tmp_path / "new.txt").write_text("good great film\nawful sad\n")
    lines = run_cli(
        "predict", "ckpt=run", f"input={tmp_path / 'new.txt'}", "out=new.csv", cwd=tmp_path
    )
    assert lines.returncode == 0, lines.stderr[-2000:]
    assert [r["text"] for r in csv.DictReader(open(tmp_path / "new.csv"))] == [
        "good great film",
        "awful sad",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "family, fmt",
    [
        (["model=textcnn"], "onnx"),
        (["model=transformer"], "onnx"),
        (["model=gru", "model.bidirectional=true", "model.num_layers=2"], "onnx"),
        (["model=lstm", "model.bidirectional=true"], "pt2"),
        (["model=rnn"], "onnx"),
    ],
    ids=lambda o: " ".join(o) if isinstance(o, list) else o,
)
def test_every_token_family_exports_with_parity(tmp_path: Path, family: list, fmt: str) -> None:
    write_texts(tmp_path / "t.csv", 120)
    args = ["data=text", f"data.path={tmp_path / 't.csv'}", *family, "trainer.max_epochs=2"]
    proc = run_cli("train", *args, "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    exported = run_cli("export", "ckpt=run", f"format={fmt}", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    sidecar = json.loads((tmp_path / "run" / "export" / f"model.{fmt}.json").read_text())
    assert sidecar["parity"]["passed"] and sidecar["input"]["dtype"] == "int64"
    assert sidecar["parity"]["max_abs_diff"] <= 1e-5
    assert sidecar["preprocess"]["text"]["vocab"][:2] == ["<pad>", "<unk>"]


def test_bucketing_serves_batches_of_similar_lengths_still_shuffled() -> None:
    from dnnexp.data.loader import InMemoryLoader

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 200, (1000,), generator=g)
    x = torch.zeros(1000, 200, dtype=torch.int64)
    for i, n in enumerate(lengths.tolist()):
        x[i, :n] = 5
    y = torch.arange(1000)

    def padded_share(loader: InMemoryLoader) -> float:
        pads = total = 0
        for xb, _ in loader:
            longest = int((xb != 0).sum(1).max())
            total += longest * len(xb)
            pads += longest * len(xb) - int((xb != 0).sum())
        return pads / total

    plain = InMemoryLoader(x, y, 32, shuffle=True, seed=1)
    bucketed = InMemoryLoader(x, y, 32, shuffle=True, seed=1, lengths=lengths)
    first = torch.cat([yb for _, yb in bucketed])
    assert len(set(first.tolist())) == len(first) == 992  # whole batches of distinct texts
    assert torch.equal(first, torch.cat([yb for _, yb in bucketed]))  # a function of the epoch
    bucketed.sampler.set_epoch(1)
    assert not torch.equal(first, torch.cat([yb for _, yb in bucketed]))
    assert padded_share(bucketed) < 0.1 < 0.4 < padded_share(plain)


def test_token_dropout_replaces_a_share_of_the_tokens_by_unk_and_nothing_else() -> None:
    from dnnexp.tasks.regularizers import TokenDropout

    torch.manual_seed(0)
    x = torch.randint(4, 50, (400, 30))
    x[:, 20:] = 0  # padding
    x[:, 0] = 2  # a reserved id (<bos>) stays
    y = torch.arange(400)
    out, same_y = TokenDropout(0.25)(x, y)
    changed = out != x
    assert same_y is y and (out[changed] == 1).all()
    assert not changed[:, 20:].any() and not changed[:, 0].any()
    share = changed[:, 1:20].float().mean().item()
    assert 0.23 < share < 0.27


def test_token_dropout_on_images_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"reg.token_dropout=0.1 replaces token ids: data=digits"):
        compose("reg=token_dropout")
