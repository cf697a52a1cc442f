"""The schema of every config group: types, allowed values and ranges.

The YAML files in ``conf/<group>/<option>.yaml`` hold the values; the dataclasses here say what
each key may hold.  ``dnnexp.config.validate`` checks a composed config against them before any
heavy module is imported, so a typo or a bad value costs milliseconds, not a training run.

Ranges are declared in field metadata (``ge``/``gt``/``le``/``lt``, ``choices``) and checked by
one generic walker, so adding a knob means adding one line here and one line of YAML.
This module must stay import-light: dataclasses and omegaconf only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from dnnexp.config.heads import HEAD_KINDS, HEAD_LOSSES
from dnnexp.config.metrics import TASK_METRICS

OPTIMIZER_IMPLEMENTATIONS = ("auto", "fused", "foreach", "for_loop")
FUSED_OPTIMIZERS = ("sgd", "adam", "adamw")  # the optimizers torch has fused kernels for
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")
NORMS = ("batch", "group", "layer", "none")
INITS = ("kaiming", "xavier", "default")
# every validation metric of some task (checked against the run's task in validate.py)
VAL_METRICS = tuple(dict.fromkeys(f"val/{m}" for ms in TASK_METRICS.values() for m in ms))


def is_head_metric(value: Any) -> bool:
    """`val/<head>/<metric>`: a metric of a multitask head (checked against the run's heads in
    validate.py), allowed beside VAL_METRICS wherever a validation metric is named."""
    return isinstance(value, str) and value.startswith("val/") and value.count("/") == 2


# the largest seed every library takes: numpy's (and Lightning's seed_everything) are 32-bit
MAX_SEED = 2**32 - 1


def knob(default: Any, *, doc: str = "", **limits: Any) -> Any:
    """A dataclass field with a default, a one-line doc and optional limits.

    limits: ge, gt, le, lt (numbers, applied to the value or to every item of a list),
    choices (a tuple of allowed values) and also (a predicate: other values it allows).
    """
    if isinstance(default, (list, dict)):
        return field(
            default_factory=lambda: type(default)(default), metadata={"doc": doc, **limits}
        )
    return field(default=default, metadata={"doc": doc, **limits})


# ----------------------------------------------------------------------------------------- task
@dataclass
class TaskConfig:
    name: str = knob("classification")


@dataclass
class ClassificationTaskConfig(TaskConfig):
    pass


@dataclass
class RegressionTaskConfig(TaskConfig):
    loss: str = knob("mse", choices=("mse", "huber", "l1"), doc="the training loss")
    huber_delta: float = knob(
        1.0, gt=0, doc="loss=huber: where it turns from squared to linear (standardized units)"
    )


@dataclass
class Seq2SeqTaskConfig(TaskConfig):
    teacher_forcing: float = knob(
        1.0, gt=0, le=1, doc="share of decoder steps fed the reference (< 1: scheduled sampling)"
    )


@dataclass
class HeadConfig:
    """One head of task=multitask (an item of `task.heads`; `config/heads.py` reads the
    compact `COLUMN[:KIND[:WEIGHT]]` form into these keys)."""

    column: str = knob("", doc="the target column (a table's, or a text file's)")
    name: Optional[str] = knob(
        None, doc="its metrics' name (val/<name>/acc); null = the column's name"
    )
    kind: str = knob("classification", choices=HEAD_KINDS)
    loss: Optional[str] = knob(
        None,
        choices=(None, *dict.fromkeys(loss for ls in HEAD_LOSSES.values() for loss in ls)),
        doc="classification: cross_entropy; regression: mse, huber or l1; null = the first",
    )
    weight: float = knob(1.0, ge=0, doc="its loss's weight in the sum the model trains on")


@dataclass
class MultiTaskConfig(TaskConfig):
    heads: Any = knob(
        [], doc="the heads: COLUMN[:KIND[:WEIGHT]] or {column, kind, loss, weight, name} each"
    )
    score: Optional[str] = knob(
        None, doc="HEAD/METRIC: the run's score is val/HEAD/METRIC; null = the first head's"
    )
    huber_delta: float = knob(
        1.0, gt=0, doc="regression heads with loss huber: where it turns linear (standardized)"
    )


TASK_SCHEMAS = {
    "classification": ClassificationTaskConfig,
    "regression": RegressionTaskConfig,
    "seq2seq": Seq2SeqTaskConfig,
    "multitask": MultiTaskConfig,
}


# ----------------------------------------------------------------------------------------- data
DATA_SCHEMAS: dict[str, type] = {}  # data.name -> its schema (filled by @data_schema)


def data_schema(name: str) -> Any:
    def add(cls: type) -> type:
        DATA_SCHEMAS[name] = cls
        return cls

    return add


@dataclass
class DataConfig:
    tasks: ClassVar[tuple[str, ...]] = ("classification",)  # the tasks its targets fit
    natural_images: ClassVar[bool] = False  # photos: augmented by crops and flips, not rotations
    # the user's files: the key that names them and whether it is a "dir" or a "file"
    files: ClassVar[Optional[tuple[str, str]]] = None
    inputs: ClassVar[str] = "image"  # "image": (C, H, W); "tabular": (F,); "unknown"

    name: str = knob("digits")
    batch_size: int = knob(64, gt=0, doc="training batch size")
    eval_batch_size: int = knob(512, gt=0, doc="batch size for validation and test")
    val_fraction: float = knob(0.1, gt=0, lt=1, doc="share of all samples held out for validation")
    test_fraction: float = knob(0.2, gt=0, lt=1, doc="share of all samples held out for testing")
    train_fraction: float = knob(1.0, gt=0, le=1, doc="share of the training split actually used")
    split_seed: int = knob(
        0, ge=0, le=MAX_SEED, doc="fixes the train/val/test split, independent of `seed`"
    )
    classes: Optional[list[str]] = knob(
        None, doc="keep these classes only (by name), relabelled 0..k-1 in this order; null = all"
    )
    stratify: Optional[bool] = knob(
        None, doc="class-stratified splits; null = for classification (regression: random)"
    )
    folds: Optional[int] = knob(
        None,
        ge=2,
        doc="k-fold cross-validation: training + validation data cut into this many folds"
        " (stratified as the splits are; the test split held out as before, val_fraction"
        " unused); null = off",
    )
    fold: int = knob(0, ge=0, doc="with data.folds: the fold that validates (0 .. folds-1)")

    @classmethod
    def input_kind(cls, data: Any) -> str:
        return cls.inputs


@data_schema("digits")
@dataclass
class DigitsConfig(DataConfig):
    pass


@dataclass
class TabularConfig(DataConfig):
    inputs: ClassVar[str] = "tabular"


@data_schema("breast_cancer")
@dataclass
class BreastCancerConfig(TabularConfig):
    pass


@data_schema("wine")
@dataclass
class WineConfig(TabularConfig):
    pass


@data_schema("diabetes")
@dataclass
class DiabetesConfig(TabularConfig):
    tasks: ClassVar[tuple[str, ...]] = ("regression",)


@dataclass
class GeneratedConfig(DataConfig):
    num_samples: int = knob(1200, gt=0, doc="samples generated in all")
    shape: list[int] = knob(
        [1, 8, 8], gt=0, doc="per-sample shape: [channels, height, width], or [features]"
    )
    noise: float = knob(1.0, ge=0, doc="std of the noise")

    @classmethod
    def input_kind(cls, data: Any) -> str:
        return "tabular" if len(data.shape) == 1 else "image"


@data_schema("synthetic")
@dataclass
class SyntheticConfig(GeneratedConfig):
    num_classes: int = knob(4, ge=2)


@data_schema("synthetic_regression")
@dataclass
class SyntheticRegressionConfig(GeneratedConfig):
    tasks: ClassVar[tuple[str, ...]] = ("regression",)
    num_targets: int = knob(1, gt=0, doc="target columns (several: a 2-D target)")


@dataclass
class FilesConfig(DataConfig):
    """The user's own files: what they hold is known once they are read."""

    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression")
    inputs: ClassVar[str] = "unknown"  # known once the files are read (then checked again)


@dataclass
class ImageFilesConfig(FilesConfig):
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    inputs: ClassVar[str] = "image"
    files: ClassVar[Optional[tuple[str, str]]] = ("root", "dir")
    root: Optional[str] = knob(None, doc="the directory that holds the files")


@data_schema("mnist")
@dataclass
class MNISTConfig(ImageFilesConfig):
    pass


@data_schema("cifar10")
@dataclass
class CIFAR10Config(ImageFilesConfig):
    natural_images: ClassVar[bool] = True


@data_schema("cifar100")
@dataclass
class CIFAR100Config(ImageFilesConfig):
    natural_images: ClassVar[bool] = True
    label: str = knob("fine", choices=("fine", "coarse"), doc="100 fine or 20 coarse classes")


@data_schema("image_folder")
@dataclass
class ImageFolderConfig(ImageFilesConfig):
    natural_images: ClassVar[bool] = True
    image_size: Optional[int] = knob(None, gt=0, doc="resize to size x size; null = as stored")
    channels: int = knob(3, choices=(1, 3), doc="1 = grey, 3 = RGB")


@data_schema("table")
@dataclass
class TableConfig(FilesConfig):
    """A table file: CSV or TSV (optionally gzipped), Parquet, Feather/Arrow IPC, by suffix."""

    tasks: ClassVar[tuple[str, ...]] = ("classification", "regression", "multitask")
    inputs: ClassVar[str] = "tabular"
    files: ClassVar[Optional[tuple[str, str]]] = ("path", "file")
    path: Optional[str] = knob(None, doc="the table file (a header row, one sample per row)")
    test_path: Optional[str] = knob(None, doc="a table file of the same columns: the test split")
    target: Any = knob("label", doc="the label column, or a list of numeric target columns")
    features: Optional[list[str]] = knob(
        None, doc="feature columns; null = every other usable column (numeric or text)"
    )
    missing: str = knob(
        "impute",
        choices=("impute", "drop", "error"),
        doc="missing features: the training median (+ a was-missing column), drop the row, refuse",
    )
    categorical: list[str] = knob([], doc="columns taken as categories (e.g. integer codes)")
    ignore: list[str] = knob([], doc="columns left out (ids)")
    max_categories: int = knob(
        50, ge=2, doc="a text column with more distinct values is ignored (unless categorical)"
    )
    na_values: Optional[list[str]] = knob(
        None, doc="cell spellings read as missing; null = the default list (README)"
    )


@data_schema("csv")
@dataclass
class CSVConfig(TableConfig):
    """data=csv: the table option under its first name."""


@data_schema("text")
@dataclass
class TextConfig(FilesConfig):
    """Texts and their labels: a CSV, TSV or JSON-lines file."""

    tasks: ClassVar[tuple[str, ...]] = ("classification", "seq2seq", "multitask")
    inputs: ClassVar[str] = "tokens"
    files: ClassVar[Optional[tuple[str, str]]] = ("path", "file")
    path: Optional[str] = knob(None, doc="the file: .csv, .tsv (optionally .gz) or .jsonl")
    test_path: Optional[str] = knob(None, doc="a file of the same columns: the test split")
    text: Any = knob("text", doc="the text column, or a list of columns joined by a space")
    target: str = knob("label", doc="the label column")
    tokens: str = knob(
        "word",
        choices=("char", "word", "sentencepiece"),
        doc="characters, words and marks, or subwords (sentencepiece, fitted on training texts)",
    )
    subword_vocab: int = knob(8000, ge=16, doc="tokens=sentencepiece: the subwords it trains")
    target_tokens: str = knob(
        "word",
        choices=("char", "word", "sentencepiece"),
        doc="task=seq2seq: the target column's tokens (word: symbols between spaces and marks)",
    )
    target_max_length: int = knob(
        64, gt=0, doc="task=seq2seq: target tokens kept in training, and the longest output"
    )
    lowercase: bool = knob(True)
    min_freq: int = knob(1, ge=1, doc="a token seen fewer times in training is unknown")
    max_vocab: Optional[int] = knob(None, gt=0, doc="the most frequent tokens kept; null = all")
    max_length: int = knob(256, gt=0, doc="tokens per text; longer texts are cut (one line)")
    bucket: bool = knob(False, doc="training batches of similar lengths (shuffled): less padding")
    encoding: str = knob("utf-8", doc="the file's text encoding")
    encoding_errors: str = knob(
        "strict", choices=("strict", "replace"), doc="an undecodable byte: refuse, or replace it"
    )


@data_schema("npz")
@dataclass
class NPZConfig(FilesConfig):
    files: ClassVar[Optional[tuple[str, str]]] = ("path", "file")
    path: Optional[str] = knob(None, doc="the .npz file: x/y, or x_train/y_train/x_test/y_test")
    layout: str = knob("nchw", choices=("nchw", "nhwc"), doc="the axes of 4-D image arrays")


# ---------------------------------------------------------------------------------------- model
MODEL_SCHEMAS: dict[str, type] = {}  # model.name -> its schema (filled by @model_schema)


def model_schema(*names: str) -> Any:
    """Register a model family's schema under its `model.name`(s)."""

    def add(cls: type) -> type:
        for name in names:
            MODEL_SCHEMAS[name] = cls
        return cls

    return add


@dataclass
class ModelConfig:
    # what a family reads: "flat" (any input, flattened: images and tabular features), "image"
    # (C, H, W), "rows" (an image as a sequence of its rows), "tokens" (token ids only)
    reads: ClassVar[str] = "image"
    tokens: ClassVar[bool] = False  # also reads token ids (data=text), through an embedding
    decoder: ClassVar[bool] = False  # has an encoder-decoder form (task=seq2seq)
    classifier: ClassVar[bool] = True  # has a one-output-vector form (the other tasks)

    name: str = knob("mlp")
    activation: str = knob("relu", choices=ACTIVATIONS)
    norm: str = knob("batch", choices=NORMS)
    norm_groups: int = knob(
        8, gt=0, doc="groups for norm=group; must divide every normalized width"
    )
    init: str = knob("kaiming", choices=INITS)

    @staticmethod
    def norm_widths(model: Any) -> list[tuple[str, int]]:
        """The widths a norm=group normalizes, named by the key that sets them."""
        return []


@model_schema("mlp")
@dataclass
class MLPConfig(ModelConfig):
    reads: ClassVar[str] = "flat"
    hidden: list[int] = knob([256, 256], gt=0, doc="width of each hidden layer")

    @staticmethod
    def norm_widths(model: Any) -> list[tuple[str, int]]:
        return [("model.hidden", w) for w in model.hidden]


@model_schema("cnn")
@dataclass
class CNNConfig(ModelConfig):
    channels: list[int] = knob([32, 64], gt=0, doc="output channels of each conv block")
    kernel_size: int = knob(3, gt=0)
    fc_hidden: int = knob(128, ge=0, doc="width of the hidden fully connected layer, 0 = none")

    @staticmethod
    def norm_widths(model: Any) -> list[tuple[str, int]]:
        return [("model.channels", w) for w in model.channels]


@model_schema("resnet")
@dataclass
class ResNetConfig(ModelConfig):
    channels: list[int] = knob([32, 64], gt=0, doc="width of each stage")
    blocks_per_stage: int = knob(2, gt=0)

    @staticmethod
    def norm_widths(model: Any) -> list[tuple[str, int]]:
        return [("model.channels", w) for w in model.channels]


@model_schema("resnext")
@dataclass
class ResNeXtConfig(ModelConfig):
    channels: list[int] = knob([64, 128], gt=0, doc="output width of each stage")
    blocks_per_stage: int = knob(1, gt=0)
    cardinality: int = knob(8, gt=0, doc="groups of the 3x3 grouped convolution")
    width_per_group: Optional[int] = knob(
        None, gt=0, doc="channels per group; null = the stage width split into `cardinality` groups"
    )

    @staticmethod
    def norm_widths(model: Any) -> list[tuple[str, int]]:
        widths = [("model.channels", w) for w in model.channels]
        if model.width_per_group is not None:
            inner = model.cardinality * model.width_per_group
            widths.append(("model.cardinality*width_per_group", inner))
        return widths


@model_schema("densenet")
@dataclass
class DenseNetConfig(ModelConfig):
    growth_rate: int = knob(12, gt=0, doc="channels each dense layer adds")
    block_layers: list[int] = knob([4, 4], gt=0, doc="dense layers in each dense block")
    init_channels: int = knob(24, gt=0, doc="channels of the stem convolution")
    compression: float = knob(0.5, gt=0, le=1, doc="channel reduction of each transition layer")
    bottleneck: bool = knob(True, doc="1x1 bottleneck before each 3x3 conv (DenseNet-BC)")

    @staticmethod
    def norm_widths(model: Any) -> list[tuple[str, int]]:
        return [
            ("model.init_channels", model.init_channels),
            ("model.growth_rate", model.growth_rate),
        ]


@model_schema("rnn", "lstm", "gru")
@dataclass
class RecurrentConfig(ModelConfig):
    reads: ClassVar[str] = "rows"
    tokens: ClassVar[bool] = True
    hidden_size: int = knob(128, gt=0)
    embed_dim: int = knob(64, gt=0, doc="token embedding width (data=text)")
    num_layers: int = knob(1, gt=0)
    bidirectional: bool = knob(False)
    pooling: str = knob(
        "last",
        choices=("last", "max", "mean"),
        doc="data=text: the final states, or the max or mean of the outputs over the text",
    )

    @staticmethod
    def norm_widths(model: Any) -> list[tuple[str, int]]:
        return [("model.hidden_size", model.hidden_size * (2 if model.bidirectional else 1))]


@model_schema("textcnn")
@dataclass
class TextCNNConfig(ModelConfig):
    reads: ClassVar[str] = "tokens"
    tokens: ClassVar[bool] = True
    embed_dim: int = knob(64, gt=0, doc="token embedding width")
    widths: list[int] = knob([3, 4, 5], gt=0, doc="the convolutions' widths, in tokens")
    channels: int = knob(64, gt=0, doc="filters per width")
    pooling: str = knob(
        "max", choices=("max", "mean"), doc="over a text's windows: max (Kim 2014) or mean"
    )

    @staticmethod
    def norm_widths(model: Any) -> list[tuple[str, int]]:
        return [("model.channels", model.channels * len(model.widths))]


@model_schema("transformer")
@dataclass
class TransformerConfig(ModelConfig):
    reads: ClassVar[str] = "tokens"
    tokens: ClassVar[bool] = True
    decoder: ClassVar[bool] = True
    embed_dim: int = knob(64, gt=0, doc="token embedding width (a multiple of heads)")
    heads: int = knob(4, gt=0, doc="attention heads")
    layers: int = knob(2, gt=0, doc="encoder layers (and decoder layers, task=seq2seq)")
    ff_dim: int = knob(128, gt=0, doc="width of each layer's feed-forward block")
    pooling: str = knob("mean", choices=("mean", "first"), doc="a text's positions, or its first")
    tie_embeddings: bool = knob(
        False, doc="task=seq2seq: the output layer shares the target embedding's weights"
    )


@model_schema("seq2seq_rnn")
@dataclass
class Seq2SeqRNNConfig(ModelConfig):
    reads: ClassVar[str] = "tokens"
    tokens: ClassVar[bool] = True
    decoder: ClassVar[bool] = True
    classifier: ClassVar[bool] = False
    cell: str = knob("gru", choices=("gru", "lstm"), doc="the encoder's and decoder's cell")
    attention: str = knob("luong", choices=("none", "luong", "bahdanau"))
    embed_dim: int = knob(64, gt=0, doc="token embedding width (source and target)")
    hidden_size: int = knob(256, gt=0)
    num_layers: int = knob(1, gt=0, doc="layers of the encoder and of the decoder")
    bidirectional: bool = knob(True, doc="the encoder reads both ways")


def models_with_decoder() -> list[str]:
    return [name for name, schema in MODEL_SCHEMAS.items() if schema.decoder]


def models_reading_tokens() -> list[str]:
    return [name for name, schema in MODEL_SCHEMAS.items() if schema.tokens]


def models_reading(*kinds: str) -> list[str]:
    """The model names whose family reads one of `kinds` ("flat", "image", "rows")."""
    return [name for name, schema in MODEL_SCHEMAS.items() if schema.reads in kinds]


# ------------------------------------------------------------------------------------ optimizer
@dataclass
class OptimizerConfig:
    name: str = knob("adam")
    lr: float = knob(1e-3, gt=0, doc="learning rate")
    backbone_lr_ratio: float = knob(
        1.0, gt=0, le=1, doc="the layers init_from loaded train at lr x this ratio"
    )
    implementation: str = knob(
        "auto",
        choices=OPTIMIZER_IMPLEMENTATIONS,
        doc="torch's update kernels: auto = fused where torch has them, else foreach",
    )


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = knob(0.9, ge=0, lt=1)
    nesterov: bool = knob(True)


@dataclass
class AdamConfig(OptimizerConfig):
    betas: list[float] = knob([0.9, 0.999], ge=0, lt=1)
    eps: float = knob(1e-8, gt=0)


@dataclass
class RMSpropConfig(OptimizerConfig):
    alpha: float = knob(0.99, gt=0, lt=1)
    momentum: float = knob(0.0, ge=0, lt=1)
    eps: float = knob(1e-8, gt=0)


OPTIMIZER_SCHEMAS = {
    "sgd": SGDConfig,
    "adam": AdamConfig,
    "adamw": AdamConfig,
    "rmsprop": RMSpropConfig,
}


# ------------------------------------------------------------------------------------ scheduler
@dataclass
class SchedulerConfig:
    name: str = knob("none")


@dataclass
class StepSchedulerConfig(SchedulerConfig):
    step_size: int = knob(10, gt=0, doc="epochs between decays")
    gamma: float = knob(0.1, gt=0, le=1)


@dataclass
class CosineSchedulerConfig(SchedulerConfig):
    min_lr_ratio: float = knob(0.0, ge=0, le=1, doc="final lr as a share of optimizer.lr")
    warmup_epochs: int = knob(0, ge=0)


@dataclass
class OneCycleSchedulerConfig(SchedulerConfig):
    max_lr_ratio: float = knob(10.0, gt=0, doc="peak lr as a multiple of optimizer.lr")
    pct_start: float = knob(0.3, gt=0, lt=1)


@dataclass
class PlateauSchedulerConfig(SchedulerConfig):
    monitor: str = knob("val/loss", choices=VAL_METRICS, also=is_head_metric)
    factor: float = knob(0.1, gt=0, lt=1)
    patience: int = knob(3, ge=0)


SCHEDULER_SCHEMAS = {
    "none": SchedulerConfig,
    "step": StepSchedulerConfig,
    "cosine": CosineSchedulerConfig,
    "onecycle": OneCycleSchedulerConfig,
    "plateau": PlateauSchedulerConfig,
}


# ------------------------------------------------------------------------------ regularization
@dataclass
class EarlyStoppingConfig:
    enabled: bool = knob(False)
    monitor: str = knob(
        "val/loss", choices=VAL_METRICS, also=is_head_metric, doc="a validation metric of the task"
    )
    patience: int = knob(5, ge=0, doc="epochs without improvement before stopping")
    min_delta: float = knob(0.0, ge=0)


@dataclass
class AugmentConfig:
    enabled: bool = knob(False)
    strength: float = knob(1.0, ge=0, le=1, doc="0..1: scales shifts, rotations and noise together")
    flip: Optional[bool] = knob(
        None, doc="random horizontal flips; null = for natural images (CIFAR, image folders)"
    )


@dataclass
class EmaConfig:
    decay: float = knob(
        0.0,
        ge=0,
        lt=1,
        doc="0 = off; the average keeps this share of itself at every optimizer step"
        " (0.999: about the last 1,000 steps)",
    )
    warmup: bool = knob(
        True, doc="decay min(decay, (1+n)/(10+n)) at the n-th step, so the start is forgotten"
    )


@dataclass
class SwaConfig:
    start: Optional[float] = knob(
        None,
        ge=0,
        doc="null = off; the epoch averaging starts: a share of trainer.max_epochs (< 1) or an"
        " epoch number (>= 1, counted from 0)",
    )
    lr: Optional[float] = knob(
        None, gt=0, doc="the learning rate from start on; null = the schedule's rate at start"
    )
    anneal_epochs: int = knob(1, gt=0, doc="epochs over which the rate moves to lr (cosine)")


@dataclass
class AdversarialConfig:
    enabled: bool = knob(False)
    method: str = knob("pgd", choices=("fgsm", "pgd"), doc="how training examples are attacked")
    eps: float = knob(
        2.0, gt=0, doc="L-inf budget in raw input units (digits' pixels 0..16; 8-bit images 0..255)"
    )
    steps: int = knob(7, gt=0, le=100, doc="PGD iterations")
    alpha: Optional[float] = knob(None, gt=0, doc="PGD step in raw units; null = 2.5 x eps/steps")
    ratio: float = knob(0.5, gt=0, le=1, doc="share of each training batch made adversarial")


@dataclass
class RegConfig:
    """One flat node that every `reg` option writes into, so options compose as a list."""

    dropout: float = knob(0.0, ge=0, lt=1, doc="dropout probability in the model")
    weight_decay: float = knob(0.0, ge=0, doc="decoupled from biases and norm parameters")
    l1: float = knob(0.0, ge=0, doc="lambda of the L1 penalty added to the loss")
    label_smoothing: float = knob(0.0, ge=0, lt=1)
    grad_clip: float = knob(0.0, ge=0, doc="max gradient norm, 0 = off")
    token_dropout: float = knob(
        0.0, ge=0, lt=1, doc="data=text: share of a training text's tokens replaced by <unk>"
    )
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    swa: SwaConfig = field(default_factory=SwaConfig)


# -------------------------------------------------------------------------------------- trainer
@dataclass
class TrainerConfig:
    accelerator: str = knob("auto", choices=("auto", "cpu", "gpu", "cuda", "mps"))
    devices: Any = knob("auto", doc="'auto', a count, or a list of device ids")
    strategy: str = knob("auto", choices=("auto", "ddp", "ddp_spawn", "ddp_fork"))
    num_nodes: int = knob(1, gt=0)
    precision: str = knob(
        "32-true", choices=("32-true", "32", "16-mixed", "bf16-mixed", "64-true", "bf16-true")
    )
    max_epochs: int = knob(30, gt=0)
    limit_train_batches: float = knob(1.0, gt=0, doc="share (<=1.0) or count (>1) of batches")
    limit_val_batches: float = knob(1.0, gt=0)
    limit_test_batches: float = knob(1.0, gt=0)
    deterministic: bool = knob(False, doc="force deterministic algorithms (slower on GPU)")
    progress_bar: bool = knob(True)
    model_summary: bool = knob(True)
    compile: bool = knob(False, doc="torch.compile the model")
    steps_per_call: int = knob(
        16, gt=0, doc="optimizer steps (batches) per Lightning training_step call"
    )
    channels_last: bool = knob(False, doc="channels_last memory format for image models (GPU)")
    data_on_device: str = knob(
        "auto",
        choices=("auto", "never"),
        doc="auto: copy the dataset to the GPU once when it fits in half its free memory",
    )
    checkpoint_interval_s: float = knob(
        10.0, ge=0, doc="write checkpoints at most this often (plus at the end); 0 = every epoch"
    )
    num_threads: Optional[int] = knob(
        None, gt=0, doc="torch CPU threads; null = the cores divided among parallel sweep jobs"
    )
    flush_denormal: bool = knob(
        True, doc="CPU: denormal floats computed as zero (they cost many times a normal op)"
    )
    # Lightning's own Trainer knobs, with Lightning's meaning (batches are training batches)
    fast_dev_run: Any = knob(
        False, doc="true (1) or N: N batches of train, val and test; no checkpoints or metrics"
    )
    max_steps: int = knob(-1, ge=-1, doc="stop after this many optimizer steps; -1 = no limit")
    max_time: Optional[str] = knob(None, doc="stop after this long, 'DD:HH:MM:SS'; null = no limit")
    val_check_interval: float = knob(
        1.0, gt=0, doc="validate every share (<= 1.0) of an epoch or every N (> 1) batches"
    )
    check_val_every_n_epoch: int = knob(1, gt=0, doc="validate every N epochs")
    accumulate_grad_batches: int = knob(
        1, gt=0, doc="batches whose gradients add up to one optimizer step"
    )
    num_sanity_val_steps: int = knob(
        0, ge=-1, doc="validation batches run before training as a check; -1 = all"
    )
    log_every_n_steps: Optional[int] = knob(
        None, gt=0, doc="also log the training loss every N optimizer steps; null = per epoch only"
    )
    benchmark: Optional[bool] = knob(None, doc="cudnn.benchmark; null = torch's default")
    detect_anomaly: bool = knob(False, doc="autograd anomaly detection (slow; finds NaN sources)")
    profiler: Optional[str] = knob(
        None, choices=(None, "simple", "advanced", "pytorch"), doc="writes <run dir>/profile/"
    )
    overfit_batches: float = knob(
        0.0,
        ge=0,
        doc="debug: train and validate on the first N batches (>= 1) or share (< 1) of the"
        " training split, unshuffled; 0 = off",
    )


# Keys users bring from Lightning or elsewhere that dnnexp has under another name: refused with a
# pointer to the dnnexp key, so there is one knob per concept.
ELSEWHERE = {
    "trainer.gradient_clip_val": "gradient clipping is reg.grad_clip (e.g. reg.grad_clip=1.0)",
    "trainer.gradient_clip_algorithm": "reg.grad_clip clips the global gradient norm",
    "trainer.enable_progress_bar": "use trainer.progress_bar",
    "trainer.enable_model_summary": "use trainer.model_summary",
    "trainer.enable_checkpointing": (
        "best.ckpt and last.ckpt are always written; trainer.checkpoint_interval_s sets how often"
    ),
    "trainer.logger": "pick loggers with the logger group (logger=[csv,tensorboard,mlflow])",
    "logger.name": "loggers are a list now: logger=[csv,tensorboard,mlflow,wandb]",
    "trainer.default_root_dir": "the run dir is hydra.run.dir (hydra.sweep.dir with -m)",
    "ckpt_path": (
        "to continue a run use resume=RUN_DIR (its last.ckpt, exactly); to start from a run's"
        " weights, init_from=RUN_DIR"
    ),
    "trainer.ckpt_path": (
        "to continue a run use resume=RUN_DIR (its last.ckpt, exactly); to start from a run's"
        " weights, init_from=RUN_DIR"
    ),
}


# --------------------------------------------------------------------------------------- logger
@dataclass
class TensorBoardConfig:
    enabled: bool = knob(
        False, doc="event files in <run dir>/tensorboard (pip install tensorboard)"
    )


@dataclass
class MlflowConfig:
    enabled: bool = knob(False, doc="an MLflow run per dnnexp run (pip install 'dnnexp[mlflow]')")
    tracking_uri: Optional[str] = knob(
        None, doc="null = one SQLite store for every run: sqlite:///<cwd>/outputs/mlflow.db"
    )
    experiment: Optional[str] = knob(
        None, doc="null = the sweep dir (a multirun) or the run's name"
    )


@dataclass
class WandbConfig:
    enabled: bool = knob(False, doc="a W&B run per dnnexp run (pip install 'dnnexp[wandb]')")
    mode: str = knob(
        "offline", choices=("offline", "online", "disabled"), doc="offline: nothing is sent"
    )
    project: str = knob("dnnexp")
    entity: Optional[str] = knob(None, doc="the W&B team or user (online mode)")


@dataclass
class LoggerConfig:
    """One node every `logger` option writes into, so they compose as a list
    (`logger=[csv,tensorboard,mlflow]`). metrics.csv is always written: it is the report's."""

    tensorboard: TensorBoardConfig = field(default_factory=TensorBoardConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)


# ---------------------------------------------------------------------------------------- search
@dataclass
class SearchConfig:
    """`search`, set by the search sweeps (conf/sweep/{grid,random,bayesian,evolutionary,nas});
    the space itself is `hydra.sweeper.params`."""

    n_trials: int = knob(20, gt=0, doc="the study's total trials; a re-run continues up to it")
    sampler: str = knob(
        "tpe", choices=("grid", "random", "tpe", "gp", "cmaes", "nsga2"), doc="Optuna's sampler"
    )
    pruner: str = knob("median", choices=("none", "median", "hyperband"), doc="stops bad trials")
    prune_startup_trials: int = knob(5, ge=0, doc="median pruner: trials before it prunes")
    prune_warmup_epochs: int = knob(2, ge=0, doc="median pruner: epochs before it prunes a trial")
    metric: Optional[str] = knob(None, doc="a validation metric; null = the task's score")
    direction: Optional[str] = knob(
        None, choices=(None, "maximize", "minimize"), doc="null = the metric's own direction"
    )
    param_penalty: float = knob(0.0, ge=0, doc="objective minus this x millions of parameters")
    objectives: int = knob(1, choices=(1, 2), doc="2: the metric and the parameter count")
    storage: Optional[str] = knob(None, doc="an Optuna storage URL; null = a journal file")
    study_name: str = knob("dnnexp", doc="the study in the storage (one per search)")
    seed: int = knob(0, ge=0, le=MAX_SEED, doc="seeds the sampler")
    retry_failed: bool = knob(False, doc="re-run trials a killed worker left behind")
    batch_size: Optional[int] = knob(None, gt=0, doc="trials per launch; null = the launcher's")
    confirm_seeds: int = knob(
        0, ge=0, le=100, doc="re-train best and start on this many fresh seeds; 0 = off"
    )
    trial: Optional[int] = knob(None, ge=0, doc="set by the search in each job")


# ----------------------------------------------------------------------------------------- eval
@dataclass
class EvalConfig:
    """Robust accuracy on the test split: `test/acc_<attack>` next to the clean metrics, after
    training and in `dnnexp eval` (`attack=pgd attack.eps=4` there is `eval.attacks=[pgd]`...)."""

    attacks: list[str] = knob([], choices=("fgsm", "pgd"), doc="attacks scored on the test split")
    eps: float = knob(2.0, gt=0, doc="their L-inf budget in raw input units")
    steps: int = knob(10, gt=0, le=1000, doc="PGD iterations")
    alpha: Optional[float] = knob(None, gt=0, doc="PGD step in raw units; null = 2.5 x eps/steps")
    beam: int = knob(5, ge=1, le=1000, doc="task=seq2seq: beam width of the test's beam search")
    length_penalty: float = knob(
        1.0, ge=0, le=2, doc="beam scores: log-probability / length**this (0: the plain sum)"
    )


# -------------------------------------------------------------------------------------- distill
@dataclass
class DistillConfig:
    teacher: Optional[str] = knob(None, doc="a run dir or .ckpt whose model teaches; null = off")
    temperature: float = knob(4.0, gt=0, le=100, doc="softens both outputs (T)")
    alpha: float = knob(0.5, ge=0, le=1, doc="weight of the soft-target loss (x T^2)")


# ---------------------------------------------------------------------------------------- prune
@dataclass
class PruneConfig:
    """Magnitude pruning of the Linear, Conv and recurrent weight matrices (biases and norms stay
    dense): `dnnexp/training/weight_pruning.py`; `dnnexp prune RUN_DIR amount=A` sets it up."""

    amount: float = knob(0.0, ge=0, lt=1, doc="share of the weights set to zero; 0 = off")
    scope: str = knob(
        "global",
        choices=("global", "layer"),
        doc="global: one magnitude threshold over all pruned layers; layer: amount in each",
    )
    schedule: str = knob(
        "once",
        choices=("once", "gradual"),
        doc="once: when fit starts (after init_from); gradual: cubic ramp 0 -> amount",
    )
    end_epoch: Optional[int] = knob(
        None, gt=0, doc="gradual: amount is reached after this many epochs; null = max_epochs - 1"
    )


# -------------------------------------------------------------------------------------- privacy
@dataclass
class PrivacyConfig:
    """Differentially private training (DP-SGD through Opacus: `dnnexp/tasks/privacy.py`)."""

    name: str = knob("none", choices=("none", "dp"), doc="dp: per-sample clipping and noise")
    epsilon: Optional[float] = knob(
        None,
        gt=0,
        doc="the target ε for the whole run (the noise multiplier is found for its epochs, batch"
        " size and δ); inf = no privacy (as privacy=none); null = give noise_multiplier",
    )
    noise_multiplier: Optional[float] = knob(
        None, gt=0, doc="σ: noise std / max_grad_norm, instead of a target epsilon"
    )
    max_grad_norm: float = knob(1.0, gt=0, doc="C: each sample's gradient is clipped to this norm")
    delta: Optional[float] = knob(
        None, gt=0, lt=1, doc="δ; null = min(1e-5, 0.1/N), N the training split's size"
    )
    accountant: str = knob(
        "prv", choices=("prv", "rdp"), doc="how ε is computed: PRV (Opacus's default) or RDP"
    )
    poisson: bool = knob(
        True,
        doc="Poisson sampling (each sample in each batch with rate batch_size/N), as the"
        " accountant assumes; false: shuffled fixed batches (ε then only approximate)",
    )


# ------------------------------------------------------------------------------------- top level
@dataclass
class LrFindConfig:
    """The learning-rate range test (`dnnexp/training/lr_find.py`)."""

    mode: str = knob(
        "off",
        choices=("off", "only", "apply"),
        doc="only: the test alone (dnnexp lr-find); apply: the test, then train at its suggestion",
    )
    min_lr: float = knob(1e-7, gt=0, doc="the ramp's first learning rate")
    max_lr: float = knob(1.0, gt=0, doc="the ramp's last learning rate")
    steps: int = knob(100, ge=20, doc="optimizer steps of the ramp (exponential in the rate)")
    smoothing: float = knob(0.98, ge=0, lt=1, doc="the loss's exponential average: its decay")
    divergence: float = knob(
        4.0, gt=1, doc="stop once the smoothed loss exceeds this times its lowest"
    )


@dataclass
class TrainSchema:
    """The typed base of `conf/train.yaml` (first entry of its defaults list).

    Groups whose options have different keys (task, data, model, optimizer, scheduler) are
    plain nodes here and are checked against their option's schema by `dnnexp.config.validate`.
    """

    seed: int = knob(
        0, ge=0, le=MAX_SEED, doc="seeds torch, numpy and Python, and each epoch's shuffle"
    )
    name: str = knob("default", doc="a label for the run, shown in reports")
    tags: list[str] = knob([])
    resume: Optional[str] = knob(None, doc="a run dir to continue from its last.ckpt")
    init_from: Optional[str] = knob(
        None, doc="a run dir or .ckpt: start from its weights (same names and shapes)"
    )
    freeze: str = knob("none", choices=("none", "backbone"), doc="backbone: init_from's layers")
    freeze_epochs: Optional[int] = knob(
        None, gt=0, doc="unfreeze the backbone after this many epochs; null = frozen throughout"
    )
    task: Any = None
    data: Any = None
    model: Any = None
    optimizer: Any = None
    scheduler: Any = None
    reg: RegConfig = field(default_factory=RegConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    lr_find: LrFindConfig = field(default_factory=LrFindConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    search: Optional[SearchConfig] = None


GROUP_SCHEMAS = {
    "task": TASK_SCHEMAS,
    "data": DATA_SCHEMAS,
    "model": MODEL_SCHEMAS,
    "optimizer": OPTIMIZER_SCHEMAS,
    "scheduler": SCHEDULER_SCHEMAS,
}


def register() -> None:
    """Put the typed base into Hydra's ConfigStore (cheap; called before composing)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="dnnexp_schema", node=TrainSchema)
