"""The model families: shapes, knobs, trainability and weight init."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dnnexp.config.schema import MODEL_SCHEMAS
from dnnexp.models import MODELS, build_model

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
NAMES = sorted(n for n, s in MODEL_SCHEMAS.items() if s.reads != "tokens")  # images, tables
TOKEN_ONLY = sorted(n for n, s in MODEL_SCHEMAS.items() if s.reads == "tokens")  # test_text.py
RECURRENT = ("rnn", "lstm", "gru")
NORM_TYPES = {
    "batch": (nn.BatchNorm1d, nn.BatchNorm2d),
    "group": (nn.GroupNorm,),
    "layer": (nn.LayerNorm, nn.GroupNorm),
}


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)


def load(name: str, **overrides: object) -> DictConfig:
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert isinstance(cfg, DictConfig)
    return OmegaConf.merge(cfg, overrides)


def classifier(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def test_registry_matches_schema() -> None:
    from dnnexp.models import DECODERS

    assert set(MODELS) == {name for name, schema in MODEL_SCHEMAS.items() if schema.classifier}
    assert set(DECODERS) == {name for name, schema in MODEL_SCHEMAS.items() if schema.decoder}


def test_each_form_of_a_family_is_built_under_its_task() -> None:
    with pytest.raises(ValueError, match="model=seq2seq_rnn has only an encoder-decoder form"):
        build_model(load("seq2seq_rnn"), (12,), 10, 0.0, vocab_size=20)
    with pytest.raises(ValueError, match="model=gru has no encoder-decoder form"):
        build_model(load("gru"), (12,), 10, 0.0, vocab_size=20, decoder=True)
    classifier = build_model(load("transformer"), (12,), 10, 0.0, vocab_size=20)
    seq2seq = build_model(load("transformer"), (12,), 10, 0.0, vocab_size=20, decoder=True)
    assert hasattr(seq2seq, "step") and not hasattr(classifier, "step")


@pytest.mark.parametrize("name", NAMES)
def test_yaml_lists_every_schema_key(name: str) -> None:
    cfg = load(name)
    assert cfg.name == name
    assert set(cfg) == {f.name for f in dataclasses.fields(MODEL_SCHEMAS[name])}


def test_unknown_model_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="mlp"):
        build_model(OmegaConf.create({"name": "vit"}), (1, 8, 8), 10, 0.0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("shape", "classes"),
    [((1, 8, 8), 10), ((3, 16, 12), 5), ((2, 3, 5), 3), ((1, 28, 28), 10), ((3, 32, 32), 100)],
)
def test_output_shape(name: str, shape: tuple[int, ...], classes: int) -> None:
    model = build_model(load(name), shape, classes, 0.0)
    assert model(torch.randn(4, *shape)).shape == (4, classes)
    model.eval()
    assert model(torch.randn(1, *shape)).shape == (1, classes)


@pytest.mark.parametrize("name", NAMES)
def test_dropout_modules_use_requested_p(name: str) -> None:
    model = build_model(
        load(name, num_layers=2) if name in RECURRENT else load(name), (1, 8, 8), 10, 0.3
    )
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(m.p == 0.3 for m in dropouts)
    if name in RECURRENT:
        assert model.rnn.dropout == 0.3


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "none"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet", "resnext", "densenet", "lstm"])
def test_every_norm_builds_and_runs(name: str, norm: str) -> None:
    model = build_model(load(name, norm=norm), (1, 8, 8), 10, 0.0)
    norms = [m for m in model.modules() if isinstance(m, NORM_TYPES.get(norm, ()))]
    assert bool(norms) == (norm != "none")
    if norm == "group":
        assert all(m.num_groups == load(name).norm_groups for m in norms)
    assert torch.isfinite(model(torch.randn(4, 1, 8, 8))).all()


@pytest.mark.parametrize(("width_per_group", "inner"), [(None, {64, 128}), (4, {32})])
def test_resnext_grouped_convs(width_per_group: int | None, inner: set[int]) -> None:
    cfg = load("resnext", width_per_group=width_per_group)
    model = build_model(cfg, (1, 8, 8), 10, 0.0)
    grouped = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(grouped) == len(cfg.channels) * cfg.blocks_per_stage
    assert all(m.groups == cfg.cardinality for m in grouped)
    assert {m.in_channels for m in grouped} == inner


@pytest.mark.parametrize("name", RECURRENT)
def test_bidirectional_doubles_classifier_input(name: str) -> None:
    uni = build_model(load(name), (1, 8, 8), 10, 0.0)
    bi = build_model(load(name, bidirectional=True, num_layers=2), (1, 8, 8), 10, 0.0)
    assert classifier(bi).in_features == 2 * classifier(uni).in_features
    assert bi(torch.randn(4, 1, 8, 8)).shape == (4, 10)


def test_rnn_rejects_unsupported_activation() -> None:
    with pytest.raises(ValueError, match="tanh or relu"):
        build_model(load("rnn", activation="gelu"), (1, 8, 8), 10, 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_few_adam_steps_lower_the_loss(name: str) -> None:
    model = build_model(load(name), (1, 8, 8), 10, 0.0)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def first_linear(init: str) -> nn.Linear:
    model = build_model(load("mlp", init=init), (1, 8, 8), 10, 0.0)
    return next(m for m in model.modules() if isinstance(m, nn.Linear))


def test_init_schemes() -> None:
    kaiming, xavier = first_linear("kaiming"), first_linear("xavier")  # Linear(64, 256), relu
    assert kaiming.weight.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.1)
    assert xavier.weight.std().item() == pytest.approx((2 / (64 + 256)) ** 0.5, rel=0.1)
    assert not kaiming.bias.any() and not xavier.bias.any()
    assert first_linear("default").bias.abs().sum() > 0


@pytest.mark.parametrize("name", ["cnn", "resnet", "densenet", "gru"])
def test_init_zeroes_biases_and_keeps_norms(name: str) -> None:
    model = build_model(load(name, init="xavier"), (1, 8, 8), 10, 0.0)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)) and module.bias is not None:
            assert not module.bias.any()
        if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            assert (module.weight == 1).all() and not module.bias.any()


def test_tabular_inputs_build_the_mlp_only() -> None:
    assert build_model(load("mlp"), (13,), 3, 0.0)(torch.randn(4, 13)).shape == (4, 3)
    for name in ("cnn", "lstm"):
        with pytest.raises(ValueError, match="use model=mlp for tabular features"):
            build_model(load(name), (13,), 3, 0.0)


@pytest.mark.parametrize("name", [n for n in TOKEN_ONLY if MODEL_SCHEMAS[n].classifier])
def test_a_family_of_token_ids_refuses_images(name: str) -> None:
    with pytest.raises(ValueError, match=f"model={name} reads token ids"):
        build_model(load(name), (1, 8, 8), 10, 0.0)
