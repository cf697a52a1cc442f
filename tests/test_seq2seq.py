"""Sequence to sequence (task=seq2seq, model=seq2seq_rnn, models/decoding.py): beam search
against greedy decoding and exhaustive search, the encoder's padding invariance, the token error
rate against an independent edit distance, splits by source, one-line refusals."""

from __future__ import annotations

import csv
import functools
import itertools
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dnnexp.config.errors import ConfigError
from dnnexp.data.local_files import DataError
from tests.conftest import compose, run_cli, run_here, summary

ATTENTIONS = ["none", "bahdanau", "luong"]


def tiny_model(attention: str, cell: str = "gru", layers: int = 2, target_vocab: int = 7):
    from dnnexp.models.seq2seq_rnn import Seq2SeqRNN

    cfg = SimpleNamespace(
        cell=cell,
        attention=attention,
        num_layers=layers,
        hidden_size=16,
        embed_dim=8,
        bidirectional=True,
    )
    torch.manual_seed(0)
    return Seq2SeqRNN(cfg, 10, target_vocab, 0.0).eval()


def tiny_transformer(tie: bool = False, target_vocab: int = 7):
    from dnnexp.models.transformer import Seq2SeqTransformer

    cfg = SimpleNamespace(
        embed_dim=8, heads=2, layers=2, ff_dim=16, activation="gelu", tie_embeddings=tie
    )
    torch.manual_seed(0)
    return Seq2SeqTransformer(cfg, 10, target_vocab, 0.0).eval()


def tiny(kind: str, cell: str = "gru"):
    """A tiny encoder-decoder: an attention of the RNN family, or "transformer"."""
    return tiny_transformer() if kind == "transformer" else tiny_model(kind, cell)


def sources(lengths: list[int], width: int = 6) -> torch.Tensor:
    src = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(4, 10, (n,))
    return src


def _trimmed(ids: torch.Tensor) -> list[list[int]]:
    return [[t for t in row if t] for row in ids.tolist()]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", [*ATTENTIONS, "transformer"])
def test_a_beam_of_one_is_greedy_decoding(attention: str, cell: str) -> None:
    from dnnexp.models.decoding import beam_search, greedy

    model = tiny(attention, cell)
    src = sources([1, 6, 3, 2, 4, 6, 5, 1])
    for length_penalty in (0.0, 1.0):
        ids, _ = beam_search(model, src, 1, 8, length_penalty)
        assert _trimmed(ids) == _trimmed(greedy(model, src, 8))


@pytest.mark.parametrize("attention", [*ATTENTIONS, "transformer"])
def test_a_beam_wide_enough_for_every_hypothesis_finds_the_exhaustive_best(
    attention: str,
) -> None:
    from dnnexp.models.decoding import _log_probs, beam_search

    model = tiny(attention, "lstm")
    src, longest, emitted = sources([1, 5, 3, 2]), 3, [1, 4, 5, 6]  # every token but PAD, BOS
    for length_penalty in (0.0, 1.0):
        expected = []
        for row in src:
            scored = []
            for n in range(longest + 1):
                for seq in itertools.product(emitted, repeat=n):
                    steps = [*seq, 3] if n < longest else list(seq)  # EOS, or cut at the limit
                    state, token, total = model.start(model.encode(row[None])), 2, 0.0
                    with torch.no_grad():
                        for next_token in steps:
                            logits, state = model.step(torch.tensor([token]), state)
                            total += float(_log_probs(logits)[0, next_token])
                            token = next_token
                    scored.append((total / len(steps) ** length_penalty, list(seq)))
            expected.append(max(scored)[1])
        ids, scores = beam_search(model, src, 4**longest + 1, longest, length_penalty)
        assert _trimmed(ids) == expected
        assert torch.isfinite(scores).all()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_encoder_reads_a_source_the_same_whatever_its_padding(cell: str) -> None:
    model = tiny_model("luong", cell)
    src = sources([3, 6, 1, 4], width=6)
    with torch.no_grad():
        together = model.encode(src)
        for i, n in enumerate([3, 6, 1, 4]):
            alone = model.encode(src[i : i + 1, :n])
            padded = model.encode(torch.nn.functional.pad(src[i : i + 1, :n], (0, 7)))
            for other in (alone, padded):
                assert torch.allclose(other.hidden[0], together.hidden[i], atol=1e-6)
                assert torch.allclose(other.outputs[0, :n], together.outputs[i, :n], atol=1e-6)


def test_the_transformer_reads_a_source_the_same_whatever_its_padding() -> None:
    model = tiny_transformer()
    src = sources([3, 6, 1, 4], width=6)
    target = torch.tensor([[4, 5, 3]])
    with torch.no_grad():
        together = model.encode(src)
        for i, n in enumerate([3, 6, 1, 4]):
            for width in (n, n + 7):
                row = torch.nn.functional.pad(src[i : i + 1, :n], (0, width - n))
                alone = model.encode(row)
                assert torch.allclose(alone["memory"][0, :n], together["memory"][i, :n], atol=1e-6)
                # the decoder reads the source's tokens only, whatever the padding
                assert torch.allclose(model(row, target), model(src[i : i + 1], target), atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", [*ATTENTIONS, "transformer"])
def test_teacher_forcing_in_one_call_equals_the_decoder_step_by_step(
    attention: str, cell: str
) -> None:
    model = tiny(attention, cell)
    src = sources([3, 6, 1, 4])
    target = torch.tensor([[4, 5, 3, 0], [6, 3, 0, 0], [4, 4, 5, 3], [3, 0, 0, 0]])
    with torch.no_grad():
        together = model(src, target)
        state, tokens, steps = model.start(model.encode(src)), torch.full((4,), 2), []
        for t in range(target.shape[1]):
            logits, state = model.step(tokens, state)
            steps.append(logits)
            tokens = target[:, t]
    assert torch.allclose(together, torch.stack(steps, dim=1), atol=1e-5)


def test_tied_embeddings_share_one_weight() -> None:
    model = tiny_transformer(tie=True)
    assert model.out.weight is model.target_embed.weight
    names = [name for name, _ in model.named_parameters()]
    assert "out.weight" not in names  # one parameter, counted and decayed once


def reference_distance(a: tuple, b: tuple) -> int:
    """Levenshtein distance, written independently: the recursive definition, memoized."""

    @functools.cache
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def test_the_token_error_rate_is_the_edit_distance_to_the_closest_reference() -> None:
    from dnnexp.tasks.metrics import Seq2SeqStats

    rng = random.Random(0)
    stats, edits, tokens, wrong, n = Seq2SeqStats(), 0, 0, 0, 200
    outputs = torch.zeros(n, 9, dtype=torch.long)
    refs = torch.zeros(n, 3, 10, dtype=torch.long)
    for i in range(n):
        out = [rng.randint(4, 8) for _ in range(rng.randint(0, 8))]
        references = [
            [rng.randint(4, 8) for _ in range(rng.randint(1, 8))] for _ in range(rng.randint(1, 3))
        ]
        if i % 7 == 0:
            out = list(references[-1])  # an exact match of a later reference
        outputs[i, : len(out)] = torch.tensor(out, dtype=torch.long)
        for r, ref in enumerate(references):
            refs[i, r, : len(ref) + 1] = torch.tensor([*ref, 3])  # EOS ends a reference
        best = min((reference_distance(tuple(out), tuple(ref)), len(ref)) for ref in references)
        edits, tokens = edits + best[0], tokens + best[1]
        wrong += out not in references
    stats.update(outputs, refs, torch.tensor(1.0))
    metrics = stats.compute()
    assert metrics["ter"] == pytest.approx(edits / tokens)
    assert metrics["ser"] == pytest.approx(wrong / n) and 0 < wrong < n


def test_bleu_from_summed_sentence_statistics_is_sacrebleus_corpus_score() -> None:
    from sacrebleu.metrics import BLEU

    from dnnexp.data.text import decode
    from dnnexp.tasks.metrics import Seq2SeqStats

    spec = {"tokens": "word", "vocab": ["<pad>", "<unk>", "<bos>", "<eos>", *"abcdefgh"]}
    rng = random.Random(1)
    n, refs_per_source = 120, 2
    outputs = torch.zeros(n, 12, dtype=torch.long)
    refs = torch.zeros(n, refs_per_source, 13, dtype=torch.long)
    for i in range(n):
        out = [rng.randint(4, 11) for _ in range(rng.randint(1, 12))]
        outputs[i, : len(out)] = torch.tensor(out)
        for r in range(refs_per_source):
            ref = [t if rng.random() < 0.7 else rng.randint(4, 11) for t in out]
            ref = ref[: rng.randint(1, 12)]
            refs[i, r, : len(ref) + 1] = torch.tensor([*ref, 3])
    stats = Seq2SeqStats(lambda ids: decode(ids, spec))
    for part in (slice(0, 50), slice(50, n)):  # summed over batches, as over processes
        stats.update(outputs[part], refs[part], torch.tensor(1.0))
    hypotheses = decode(outputs, spec)
    streams = [decode(refs[:, r], spec) for r in range(refs_per_source)]
    expected = BLEU().corpus_score(hypotheses, streams).score
    assert 0 < expected < 100
    assert stats.compute()["bleu"] == pytest.approx(expected, abs=1e-9)
    assert "nrefs:var" in stats.bleu_signature() and "tok:13a" in stats.bleu_signature()


def write_pairs(
    path: Path, n: int = 300, *, seed: int = 0, cells: dict | None = None
) -> list[dict]:
    """Sources of 2-6 letters; targets their letters reversed, between spaces. Every 5th
    source has a second reference (the letters in order)."""
    rng = random.Random(seed)
    rows = []
    seen = set()
    while len(seen) < n:
        word = "".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 6)))
        if word in seen:
            continue
        seen.add(word)
        rows.append({"word": word, "spelled": " ".join(reversed(word))})
        if len(seen) % 5 == 0:
            rows.append({"word": word, "spelled": " ".join(word)})
    for i, values in (cells or {}).items():
        rows[i].update(values)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return rows


PAIRS = ["task=seq2seq", "data=text", "data.text=word", "data.target=spelled"]
PAIRS += ["data.tokens=char", "model=seq2seq_rnn"]


def test_a_sources_references_stay_in_one_split(tmp_path: Path) -> None:
    from dnnexp.data.datamodule import ArrayDataModule

    rows = write_pairs(tmp_path / "p.tsv")
    cfg = compose(*PAIRS, f"data.path={tmp_path / 'p.tsv'}", "data.val_fraction=0.2")
    data = ArrayDataModule(cfg.data, 0, task="seq2seq")
    data.setup()
    source_vocab = data.preprocess["text"]["vocab"]
    target_vocab = data.preprocess["target_text"]["vocab"]

    def words(x: torch.Tensor) -> set[str]:
        return {"".join(source_vocab[t] for t in row if t) for row in x.tolist()}

    splits = {name: words(x) for name, (x, _) in data.splits.items()}
    assert not splits["train"] & splits["val"] and not splits["train"] & splits["test"]
    assert not splits["val"] & splits["test"]
    pairs = {(r["word"], r["spelled"]) for r in rows}  # a palindrome's two are one
    assert len(data.splits["train"][0]) == sum(w in splits["train"] for w, _ in pairs)
    x_val, y_val = data.splits["val"]
    assert y_val.ndim == 3 and y_val.shape[1] == 2  # every source's references, padded
    for word_ids, refs in zip(x_val.tolist(), y_val.tolist(), strict=True):
        word = "".join(source_vocab[t] for t in word_ids if t)
        expected = [r["spelled"].split() for r in rows if r["word"] == word]
        expected = [ref for i, ref in enumerate(expected) if ref not in expected[:i]]
        got = [[target_vocab[t] for t in ref if t > 3] for ref in refs if ref[0]]
        assert got == expected


def test_the_g2p_script_splits_by_word() -> None:
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("g2p", REPO / "scripts" / "cmudict_g2p.py")
    g2p = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(g2p)
    lines = [
        ";;; a comment line",
        "read R IY1 D",
        "read(2) R EH1 D",
        "a's EY1 Z",
        "o'neil OW0 N IY1 L # a name",
        "x.ray EH1 K S R EY2",
        "don't D OW1 N T",
    ]
    prons = g2p.pronunciations(lines, stress=False)
    assert prons["read"] == ["R IY D", "R EH D"] and "x.ray" not in prons
    assert prons["o'neil"] == ["OW N IY L"] and ";;;" not in prons
    words = [f"w{i}" for i in range(1000)]
    split = g2p.split_by_word(words, seed=0)
    assert len(split["test"]) == 50 and not set(split["test"]) & set(split["train"])
    assert sorted(split["test"] + split["train"]) == sorted(words)


@pytest.mark.parametrize(
    "name, message",
    [
        ("empty-source", "row 4 has an empty text (word)"),
        ("empty-target", "row 6 has no label (spelled)"),
        ("no-target-column", "no column 'phones' (data.target); the columns are: word, spelled"),
        ("short-limit", "data.target_max_length=1 is shorter than every target of the training"),
    ],
)
def test_bad_pairs_are_one_line(tmp_path: Path, name: str, message: str) -> None:
    from dnnexp.data.datamodule import ArrayDataModule

    cells = {"empty-source": {2: {"word": ""}}, "empty-target": {4: {"spelled": ""}}}
    write_pairs(tmp_path / "p.tsv", 60, cells=cells.get(name))
    extra = {
        "no-target-column": ["data.target=phones"],
        "short-limit": ["data.target_max_length=1"],
    }
    cfg = compose(*PAIRS, f"data.path={tmp_path / 'p.tsv'}", *extra.get(name, []))
    with pytest.raises(DataError) as err:
        ArrayDataModule(cfg.data, 0, task="seq2seq").setup()
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["model=gru"],
            "task=seq2seq needs a model with a decoder; model=gru has none: use model=transformer or model=seq2seq_rnn",
        ),
        (
            ["task=classification"],
            "model=seq2seq_rnn is an encoder-decoder (it emits token sequences): use it with task=seq2seq",
        ),
        (["eval.beam=0"], "eval.beam"),
        (
            ["model=transformer", "task.teacher_forcing=0.5"],
            "task.teacher_forcing=0.5: scheduled sampling steps an RNN decoder token by token",
        ),
    ],
)
def test_a_seq2seq_config_that_cannot_work_is_one_line(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    write_pairs(tmp_path / "p.tsv", 20)
    with pytest.raises(ConfigError) as err:
        compose(*PAIRS, f"data.path={tmp_path / 'p.tsv'}", *overrides)
    assert message in str(err.value) and "\n" not in str(err.value)
    proc = run_here("train", *PAIRS, f"data.path={tmp_path / 'p.tsv'}", *overrides, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr
    with pytest.raises(ConfigError, match="task=seq2seq does not fit data=digits"):
        compose("task=seq2seq", "model=seq2seq_rnn")


@pytest.mark.slow
def test_a_sweep_over_attention_trains_decodes_and_ranks_lower_error_as_better(
    tmp_path: Path,
) -> None:
    write_pairs(tmp_path / "p.tsv", 400)
    test_file = tmp_path / "test.tsv"
    write_pairs(test_file, 60, seed=1)
    args = [*PAIRS, f"data.path={tmp_path / 'p.tsv'}", f"data.test_path={test_file}"]
    args += ["model.hidden_size=64", "data.batch_size=32", "eval.beam=3", "trainer.max_epochs=6"]
    proc = run_cli(
        "train", "-m", *args, "model.attention=none,luong", "seed=0,1", "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = summary(tmp_path / "sweep" / "2")  # luong, seed 0
    metrics = result["metrics"]
    assert {"test/ter", "test/ser", "test/ter_beam", "test/ser_beam", "val/ter"} <= set(metrics)
    assert {"test/bleu", "test/bleu_beam"} <= set(metrics)  # the targets are words
    assert result["bleu_signature"].startswith("nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp")
    assert 0 <= metrics["test/ter"] < 1 and result["task"] == "seq2seq"
    assert result["target_text"]["tokens"] == "word" and result["target_text"]["vocab_size"] == 12
    card = (tmp_path / "sweep" / "2" / "model_card.md").read_text()
    assert "Target text: word tokens" in card and "ser: outputs matching no reference" in card
    scored = run_cli("eval", "ckpt=sweep/2", cwd=tmp_path)  # the test split decoded again
    assert scored.returncode == 0, scored.stderr[-2000:]
    again = json.loads((tmp_path / "sweep" / "2" / "eval" / "best.json").read_text())["metrics"]
    assert again["test/ter_beam"] == metrics["test/ter_beam"]
    # predict on the test file gives the run's test metrics, greedy and beam
    for beam, suffix in ((1, ""), (3, "_beam")):
        out = tmp_path / f"pred{beam}.csv"
        predicted = run_cli(
            "predict", "ckpt=sweep/2", f"input={test_file}", f"out={out}", f"beam={beam}",
            cwd=tmp_path,
        )  # fmt: skip
        assert predicted.returncode == 0, predicted.stderr[-2000:]
        rows = list(csv.DictReader(out.open()))
        assert rows and {"word", "spelled", "prediction", "score"} <= set(rows[0])
        scored = json.loads(out.with_suffix(".metrics.json").read_text())["metrics"]
        assert scored["ter"] == metrics[f"test/ter{suffix}"]
        assert scored["ser"] == metrics[f"test/ser{suffix}"]
        assert scored["bleu"] == metrics[f"test/bleu{suffix}"]
        assert scored["loss"] == pytest.approx(metrics["test/loss"], abs=1e-5)
        assert len(rows) == 72 and all(float(row["score"]) <= 0 for row in rows)
    refused = run_cli("export", "ckpt=sweep/2", "format=pt2", cwd=tmp_path)
    assert refused.returncode == 2 and "a task=seq2seq run decodes step by step" in refused.stderr
    refused = run_cli("eval", "ckpt=[sweep/2,sweep/3]", cwd=tmp_path)
    assert refused.returncode == 2 and "task=seq2seq runs decode sequences" in refused.stderr
    (tmp_path / "words.txt").write_text("abc\nhgf\nabc\n")  # one source per line
    predicted = run_cli("predict", "ckpt=sweep/2", "input=words.txt", "out=w.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert "2 sources decoded (greedy)" in predicted.stdout
    rows = list(csv.DictReader((tmp_path / "w.csv").open()))
    assert [row["text"] for row in rows] == ["abc", "hgf", "abc"]
    assert rows[0]["prediction"] == rows[2]["prediction"]
    report = run_cli("report", "sweep", "--metric", "test/ter", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    table = (tmp_path / "sweep" / "report.md").read_text()
    assert "lower is better" in table or "test/ter" in table


@pytest.mark.slow
def test_seq2seq_under_ddp_sums_its_decoded_metrics_over_ranks(tmp_path: Path) -> None:
    """Two gloo ranks each decode half of the test split; their summed edit counts, wrong
    outputs and BLEU statistics give the metrics a one-process `dnnexp eval` computes."""
    write_pairs(tmp_path / "p.tsv", 200)
    args = [*PAIRS, f"data.path={tmp_path / 'p.tsv'}", "model.hidden_size=32"]
    args += ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "eval.beam=2"]
    proc = run_cli("train", *args, "trainer.max_epochs=2", "hydra.run.dir=ddp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = summary(tmp_path / "ddp")["metrics"]
    scored = run_cli("eval", "ckpt=ddp", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr[-3000:]
    alone = json.loads((tmp_path / "ddp" / "eval" / "best.json").read_text())["metrics"]
    for name in ("ter", "ser", "bleu", "ter_beam", "ser_beam", "bleu_beam"):
        assert alone[f"test/{name}"] == pytest.approx(trained[f"test/{name}"], abs=1e-9)


@pytest.mark.slow
def test_a_resumed_seq2seq_run_equals_the_uninterrupted_one(tmp_path: Path) -> None:
    write_pairs(tmp_path / "p.tsv", 200)
    args = [*PAIRS, f"data.path={tmp_path / 'p.tsv'}", "model.hidden_size=32"]
    args += ["trainer.progress_bar=false", "trainer.num_threads=1", "task.teacher_forcing=0.7"]
    args += ["scheduler=none"]  # a schedule over max_epochs would differ between 1 and 3
    whole = run_cli("train", *args, "trainer.max_epochs=3", "hydra.run.dir=whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    part = run_cli("train", *args, "trainer.max_epochs=1", "hydra.run.dir=part", cwd=tmp_path)
    assert part.returncode == 0, part.stderr[-3000:]
    resumed = run_cli("train", "resume=part", "trainer.max_epochs=3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert summary(tmp_path / "part")["metrics"] == summary(tmp_path / "whole")["metrics"]


@pytest.mark.slow
def test_a_search_over_seq2seq_minimizes_the_validation_token_error_rate(tmp_path: Path) -> None:
    write_pairs(tmp_path / "p.tsv", 150)
    args = [*PAIRS, f"data.path={tmp_path / 'p.tsv'}", "model.hidden_size=32"]
    args += ["sweep=random", "search.n_trials=2", "search.pruner=none", "trainer.max_epochs=1"]
    proc = run_cli("train", "-m", *args, "hydra.sweep.dir=search", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "search: 2 of 2 trials: 2 complete" in out
    assert "top trials by val/ter (minimize)" in out
    assert (tmp_path / "search" / "best.yaml").is_file()
