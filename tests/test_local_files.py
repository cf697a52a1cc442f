"""The user's own data from local files: tiny valid and broken files in every format, and each
bad input's one line. A smoke epoch on every format through the CLI is the README's export
block (`python scripts/export_digits.py mydata` and a `dnnexp train` per format), run as
written by tests/test_readme.py."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dnnexp.config.errors import ConfigError
from dnnexp.data.local_files import DataError
from dnnexp.data.spec import DataSpec
from tests.conftest import compose, run_cli, summary

RNG = np.random.default_rng(0)


def idx_file(path: Path, array: np.ndarray, magic: int | None = None, gz: bool = False) -> None:
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    data = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    data += array.astype(np.uint8).tobytes()
    (
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
        if gz
        else path.write_bytes(data)
    )


def labels(n: int, classes: int) -> np.ndarray:
    return np.arange(n) % classes


def write_mnist(root: Path, n: int = 60, n_test: int = 20) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n), ("t10k", n_test)):
        y = labels(count, 10)
        x = (RNG.integers(0, 40, (count, 28, 28)) + y[:, None, None] * 20).astype(np.uint8)
        idx_file(root / f"{prefix}-images-idx3-ubyte", x, gz=prefix == "train")
        idx_file(root / f"{prefix}-labels-idx1-ubyte", y)


def cifar_records(count: int, label_bytes: int, classes: int) -> bytes:
    y = labels(count, classes)
    pixels = (RNG.integers(0, 60, (count, 3072)) + y[:, None] * 19).astype(np.uint8)
    heads = np.stack([y // 5, y] if label_bytes == 2 else [y], axis=1).astype(np.uint8)
    return np.concatenate([heads, pixels], axis=1).tobytes()


def write_cifar(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        (root / f"data_batch_{i}.bin").write_bytes(cifar_records(20, 1, 10))
    (root / "test_batch.bin").write_bytes(cifar_records(20, 1, 10))
    (root / "batches.meta.txt").write_text("\n".join(f"thing{i}" for i in range(10)) + "\n")
    (root / "train.bin").write_bytes(cifar_records(60, 2, 5))  # CIFAR-100: fine labels 0..4
    (root / "test.bin").write_bytes(cifar_records(20, 2, 5))


def write_images(root: Path, size: int = 10, per_class: int = 8) -> None:
    from PIL import Image

    for label, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = RNG.integers(0, 80, (size, size, 3)) + 120 * label
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")


def write_csv(path: Path, rows: int = 40) -> None:
    lines = ["id,f1,f2,f3,label"]
    for i in range(rows):
        label = "dog" if i % 2 else "cat"
        lines.append(f"a{i},{i % 2 + RNG.normal(0, 0.1):.3f},{RNG.normal():.3f},{i},{label}")
    path.write_text("\n".join(lines) + "\n")


def write_npz(path: Path, n: int = 60) -> None:
    y = labels(n, 3)
    x = (RNG.integers(0, 50, (n, 8, 8, 1)) + y[:, None, None, None] * 60).astype(np.uint8)
    np.savez(path, x=x, y=y)


def load(*overrides: str, task: str = "classification"):
    from dnnexp.data.datamodule import ArrayDataModule

    cfg = compose(*overrides, f"task={task}")
    data = ArrayDataModule(cfg.data, cfg.seed, task=task)
    data.setup()
    return data


def test_each_format_loads_with_its_own_test_split(tmp_path: Path) -> None:
    write_mnist(tmp_path / "m")
    mnist = load("data=mnist", f"data.root={tmp_path / 'm'}")
    x, _ = mnist.splits["train"]
    assert x.dtype == torch.uint8 and mnist.input_shape == (1, 28, 28) and mnist.num_classes == 10
    assert len(mnist.splits["test"][1]) == 20 and len(mnist.splits["val"][1]) == 6
    assert len(mnist.input_stats["mean"]) == 1 and mnist.input_stats["std"][0] > 1
    write_cifar(tmp_path / "c")
    cifar = load("data=cifar10", f"data.root={tmp_path / 'c'}")
    assert cifar.input_shape == (3, 32, 32) and cifar.classes[:2] == ["thing0", "thing1"]
    assert len(cifar.splits["test"][1]) == 20 and len(cifar.input_stats["mean"]) == 3
    fine = load("data=cifar100", f"data.root={tmp_path / 'c'}")
    coarse = load("data=cifar100", f"data.root={tmp_path / 'c'}", "data.label=coarse")
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert set(coarse.splits["test"][1].tolist()) == {0}  # fine 0..4 are coarse class 0
    write_images(tmp_path / "i")
    images = load("data=image_folder", f"data.root={tmp_path / 'i'}", "data.image_size=6")
    assert images.classes == ["cat", "dog"] and images.input_shape == (3, 6, 6)
    grey = load("data=image_folder", f"data.root={tmp_path / 'i'}", "data.channels=1")
    assert grey.input_shape == (1, 10, 10)
    write_csv(tmp_path / "t.csv")
    table = load("data=csv", f"data.path={tmp_path / 't.csv'}")
    assert table.classes == ["cat", "dog"] and table.input_shape == (3,)  # id is not a feature
    regression = load(
        "data=csv", f"data.path={tmp_path / 't.csv'}", "data.target=[f1,f2]", task="regression"
    )
    # the features: f3, and the text column label one-hot (cat, dog)
    assert regression.input_shape == (3,) and regression.num_outputs == 2
    write_npz(tmp_path / "a.npz")
    arrays = load("data=npz", f"data.path={tmp_path / 'a.npz'}", "data.layout=nhwc")
    assert arrays.input_shape == (1, 8, 8) and arrays.num_classes == 3


def test_uint8_images_are_normalized_per_batch_with_the_training_statistics(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from dnnexp.tasks.module import TrainingModule

    write_cifar(tmp_path / "c")
    cfg = compose("data=cifar10", f"data.root={tmp_path / 'c'}", "model.hidden=[8]")
    data = load("data=cifar10", f"data.root={tmp_path / 'c'}")
    module = TrainingModule(OmegaConf.to_container(cfg), data.spec)
    x = data.splits["train"][0]
    normalized = module.normalize(x)
    assert normalized.dtype == torch.float32
    per_channel = normalized.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-4)
    assert torch.allclose(per_channel.std(1), torch.ones(3), atol=1e-3)
    assert module.normalize(normalized) is normalized  # floats pass through


def _broken(tmp_path: Path, name: str) -> list[str]:
    """Each bad input's overrides, its files written into tmp_path."""
    root = tmp_path / name
    if name.startswith("mnist"):
        write_mnist(root)
        images = root / "t10k-images-idx3-ubyte"
        if name == "mnist-magic":
            idx_file(images, np.zeros((20, 28, 28)), magic=2049)
        elif name == "mnist-count":
            idx_file(root / "t10k-labels-idx1-ubyte", labels(19, 10))
        elif name == "mnist-truncated":
            images.write_bytes(images.read_bytes()[:-100])
        elif name == "mnist-label":
            idx_file(root / "t10k-labels-idx1-ubyte", np.full(20, 12))
        elif name == "mnist-missing":
            images.unlink()
        return ["data=mnist", f"data.root={root}"]
    if name.startswith("cifar"):
        write_cifar(root)
        if name == "cifar-pickle":
            for path in root.glob("*.bin"):
                path.unlink()
            (root / "data_batch_1").write_bytes(b"\x80\x04pickle")
        elif name == "cifar-truncated":
            path = root / "data_batch_3.bin"
            path.write_bytes(path.read_bytes()[:-10])
        elif name == "cifar-label":
            (root / "test_batch.bin").write_bytes(b"\x0c" + bytes(3072))
        return ["data=cifar10", f"data.root={root}"]
    if name.startswith("folder"):
        root.mkdir()
        if name == "folder-flat":
            write_images(tmp_path / "tmp")
            for path in (tmp_path / "tmp" / "cat").iterdir():
                path.rename(root / path.name)
        else:
            write_images(root)
        if name == "folder-text":
            (root / "cat" / "notes.txt").write_text("hi")
        elif name == "folder-corrupt":
            (root / "dog" / "bad.png").write_bytes(b"not a png")
        elif name == "folder-sizes":
            write_images(root / "extra", size=12, per_class=1)
            (root / "extra" / "cat" / "0.png").rename(root / "cat" / "big.png")
        return ["data=image_folder", f"data.root={root}"]
    if name.startswith("csv"):
        path = tmp_path / f"{name}.csv"
        write_csv(path)
        lines = path.read_text().splitlines()
        if name == "csv-target":
            return ["data=csv", f"data.path={path}", "data.target=species"]
        if name == "csv-text":
            lines[2] = lines[2].replace(",", ",abc,", 1).replace(",", "", 1)
            lines[2] = "a1,abc," + ",".join(lines[2].split(",")[2:])
        elif name == "csv-empty-cell":
            cells = lines[3].split(",")
            cells[2] = ""
            lines[3] = ",".join(cells)
        elif name == "csv-empty":
            lines = []
        elif name == "csv-lonely":
            lines.append("z,0.5,0.5,99,bird")
        path.write_text("\n".join(lines) + ("\n" if lines else ""))
        if name == "csv-empty-cell":  # missing cells are imputed, unless refused on purpose
            return ["data=csv", f"data.path={path}", "data.missing=error"]
        return ["data=csv", f"data.path={path}"]
    path = tmp_path / f"{name}.npz"
    if name == "npz-missing":
        np.savez(path, x=np.zeros((5, 3)), labels=np.zeros(5))
    elif name == "npz-lengths":
        np.savez(path, x=np.zeros((10, 3)), y=np.zeros(9, dtype=int))
    return ["data=npz", f"data.path={path}"]


BAD_FILES = [
    (
        "mnist-magic",
        "t10k-images-idx3-ubyte: not an IDX file of this kind (magic number 2049, expected 2051)",
    ),
    ("mnist-count", "holds 20 images but"),
    ("mnist-truncated", "truncated or corrupt"),
    ("mnist-label", "t10k-labels-idx1-ubyte: label 12 is out of range (0..9)"),
    (
        "mnist-missing",
        "no t10k-images-idx3-ubyte (or t10k-images-idx3-ubyte.gz) there; expected DIR/train-images-idx3-ubyte",
    ),
    (
        "cifar-pickle",
        "holds the Python (pickle) version of CIFAR-10, which dnnexp does not unpickle (that can run code): download the binary version, cifar-10-binary.tar.gz",
    ),
    (
        "cifar-truncated",
        "data_batch_3.bin: 61450 bytes is not a whole number of 3073-byte CIFAR records",
    ),
    ("cifar-label", "test_batch.bin: label 12 is out of range for CIFAR-10's 10 classes"),
    ("folder-flat", "no class subfolders; expected DIR/<class>/<image>.png"),
    ("folder-text", "notes.txt: not an image file"),
    ("folder-corrupt", "bad.png: not a readable image"),
    ("folder-sizes", "set data.image_size to resize them all"),
    ("csv-target", "no column 'species'; the columns are: id, f1, f2, f3, label"),
    ("csv-text", "row 3, column 'f1' is not a number: 'abc'"),
    ("csv-empty-cell", "row 4, column 'f2' is missing (data.missing=error;"),
    ("csv-empty", "empty (expected a header row and at least one data row)"),
    ("csv-lonely", "class 'bird' has 1 sample; a stratified split needs at least 2 per class"),
    ("npz-missing", "no array y; it holds labels, x"),
    ("npz-lengths", "x has 10 rows but y 9"),
]


@pytest.mark.parametrize(("name", "expected"), BAD_FILES, ids=[n for n, _ in BAD_FILES])
def test_bad_files_fail_in_one_line_naming_the_file(
    tmp_path: Path, name: str, expected: str
) -> None:
    overrides = _broken(tmp_path, name)
    with pytest.raises(DataError) as err:
        load(*overrides)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_missing_files_and_unset_paths_fail_before_the_run_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.root=/nowhere: no such directory"):
        compose("data=mnist", "data.root=/nowhere")
    with pytest.raises(ConfigError, match="data.path is not set: data=csv reads your own file"):
        compose("data=csv")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file; data=cifar10 reads a directory"):
        compose("data=cifar10", f"data.root={tmp_path / 'f'}")


@pytest.mark.slow
def test_a_bad_file_is_one_line_and_exit_2_through_the_cli(tmp_path: Path) -> None:
    overrides = _broken(tmp_path, "csv-text")
    proc = run_cli("train", *overrides, "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "row 3, column 'f1' is not a number: 'abc' (a marker of a missing value? add it to"
            " data.na_values)"
        )
    )
    assert not (tmp_path / "run").exists()  # no run dir that looks like a run
    write_csv(tmp_path / "ok.csv")
    wrong = run_cli(
        "train", "data=csv", f"data.path={tmp_path / 'ok.csv'}", "model=cnn", cwd=tmp_path
    )
    assert wrong.returncode == 2 and "model=cnn reads images" in wrong.stderr


@pytest.mark.slow
def test_a_sweep_over_file_formats_sets_their_root_with_plus_plus(tmp_path: Path) -> None:
    """`-m data=mnist,cifar10 data.root=...` is refused by Hydra's first composition (with the
    default data=digits, which has no root): the line says so and names `++data.root`, which
    then runs every job."""
    write_mnist(tmp_path / "mnist")
    write_cifar(tmp_path / "cifar10")
    sweep = ["-m", "data=mnist,cifar10", "trainer=smoke", "hydra.sweep.dir=sweep"]
    root = f"data.root={tmp_path}/$" + "{data.name}"
    plain = run_cli("train", *sweep, root, cwd=tmp_path)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert "write ++data.root=... to set it in every job" in plain.stderr.strip().splitlines()[-1]
    forced = run_cli("train", *sweep, f"++{root}", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert "2 jobs, 2 completed, 0 failed" in forced.stdout + forced.stderr
    shapes = [summary(tmp_path / "sweep" / job)["input_shape"] for job in ("0", "1")]
    assert shapes == [[1, 28, 28], [3, 32, 32]]


def test_the_swept_group_hint_only_where_a_group_is_swept() -> None:
    from dnnexp.config.hydra_setup import swept_group_hint

    line = "data.root: no such key in 'data'; allowed: name"
    assert swept_group_hint(line, ["-m", "data=mnist", "data.root=x"]) == line  # not swept
    assert swept_group_hint(line, ["data=mnist,cifar10", "data.root=x"]) == line  # not -m
    assert "++data.root" in swept_group_hint(line, ["--multirun", "data=choice(mnist,csv)"])
    assert swept_group_hint("seed: bad", ["-m", "data=a,b"]) == "seed: bad"


def test_random_crop_takes_a_window_of_the_padded_image_and_flips_mirror() -> None:
    from dnnexp.data.augment import random_crop, random_flip

    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).view(2, 3, 16, 16)
    assert torch.equal(random_crop(x, 0.0), x)
    out = random_crop(x, 1.0)  # pad 2
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for n in range(2):
        windows = [padded[n, :, i : i + 16, j : j + 16] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[n], w) for w in windows)
    flipped = random_flip(x)
    for n in range(2):
        assert torch.equal(flipped[n], x[n]) or torch.equal(flipped[n], x[n].flip(2))


@pytest.mark.parametrize(
    ("overrides", "ops"),
    [
        ([], ["augment_images"]),  # digits: shifts and rotations, never flips
        (["reg.augment.flip=true"], ["augment_images", "random_flip"]),
        (["data=cifar10"], ["random_crop", "random_flip"]),
        (["data=cifar10", "reg.augment.flip=false"], ["random_crop"]),
        (["model=lstm"], ["add_noise"]),
    ],
)
def test_augmentation_suits_the_data(tmp_path: Path, overrides: list[str], ops: list[str]) -> None:
    from omegaconf import OmegaConf

    from dnnexp.tasks.module import TrainingModule

    if "data=cifar10" in overrides:
        write_cifar(tmp_path / "c")
        overrides = [*overrides, f"data.root={tmp_path / 'c'}"]
    cfg = compose("reg=augment", *overrides)
    shape = [3, 32, 32] if "data=cifar10" in overrides else [1, 8, 8]
    module = TrainingModule(OmegaConf.to_container(cfg), DataSpec(list(shape), 10))
    (augment,) = module._batch_transforms
    assert [getattr(op, "func", op).__name__ for op in augment.ops] == ops
