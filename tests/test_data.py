"""Datasets, splits and the in-memory loader."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from dnnexp.config.errors import ConfigError
from dnnexp.data import digits
from dnnexp.data.loader import InMemoryLoader
from dnnexp.data.splits import standardize, stratified_split, stratified_subsample
from tests.conftest import compose


def test_digits_loads_the_bundled_images() -> None:
    x, y, classes = digits.load()[:3]
    assert classes == [str(i) for i in range(10)]
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert sorted(torch.unique(y).tolist()) == list(range(10))
    from sklearn.datasets import load_digits

    ref_x, ref_y = load_digits(return_X_y=True)
    assert torch.equal(x.reshape(1797, 64), torch.as_tensor(ref_x, dtype=torch.float32))
    assert torch.equal(y, torch.as_tensor(ref_y))


def test_stratified_split_sizes_and_proportions() -> None:
    y = digits.load().y
    train, val, test = stratified_split(y, 0.1, 0.2, seed=0)
    assert len(test) == 360 and len(train) + len(val) + len(test) == 1797
    assert len(set(train.tolist()) | set(val.tolist()) | set(test.tolist())) == 1797
    for part in (train, val, test):  # every class in every split, in about the same share
        counts = torch.bincount(y[part], minlength=10).double()
        assert counts.min() > 0 and counts.max() / counts.min() < 1.25


def test_split_is_fixed_by_split_seed_only() -> None:
    y = digits.load().y
    a, b = stratified_split(y, 0.1, 0.2, seed=0), stratified_split(y, 0.1, 0.2, seed=0)
    c = stratified_split(y, 0.1, 0.2, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[2], c[2])


def test_train_fraction_keeps_every_class_or_refuses() -> None:
    y = digits.load().y
    keep = stratified_subsample(y, 0.1, seed=0)
    assert torch.bincount(y[keep], minlength=10).min() >= 17
    with pytest.raises(ConfigError, match="leaves class .* with no training sample"):
        stratified_subsample(y, 0.001, seed=0)


def test_standardize_uses_train_statistics() -> None:
    train, other = torch.randn(100, 1, 4, 4) * 3 + 5, torch.full((10, 1, 4, 4), 5.0)
    s_train, s_other = standardize(train, other)
    assert abs(float(s_train.mean())) < 1e-5 and abs(float(s_train.std()) - 1) < 1e-5
    assert torch.allclose(s_other, (other - train.mean()) / train.std())


def test_datamodule_shapes_flow_from_the_data() -> None:
    from dnnexp.data.datamodule import ArrayDataModule

    dm = ArrayDataModule(compose().data, seed=0)
    dm.setup()
    assert dm.input_shape == (1, 8, 8) and dm.num_classes == 10
    syn = ArrayDataModule(
        compose("data=synthetic", "data.shape=[3,5,7]", "data.num_classes=6").data, 0
    )
    syn.setup()
    assert syn.input_shape == (3, 5, 7) and syn.num_classes == 6


def test_the_dataset_goes_to_an_accelerator_once_when_it_fits() -> None:
    """On a GPU the splits are copied once when they fit in half its free memory (CPU CI
    stands in a `meta` device and a given free size for the GPU and its memory)."""
    from dnnexp.data.datamodule import ArrayDataModule

    def data(on_device: str = "auto") -> ArrayDataModule:
        dm = ArrayDataModule(compose().data, seed=0, data_on_device=on_device)
        dm.setup()
        return dm

    dm = data()
    need = sum(x.nbytes + y.nbytes for x, y in dm.splits.values())
    fingerprint = ArrayDataModule(compose().data, seed=0)
    fingerprint.setup()
    meta = torch.device("meta")
    assert not dm.place_on_device(torch.device("cpu"), free_bytes=10**12)
    assert not dm.place_on_device(meta, free_bytes=2 * need - 1)  # does not fit: stays
    assert dm.splits["train"][0].device.type == "cpu"
    dm = data()
    assert dm.place_on_device(meta, free_bytes=2 * need)
    assert {t.device for split in dm.splits.values() for t in split} == {meta}
    assert dm.place_on_device(meta, free_bytes=0)  # decided once: not copied again
    assert dm.fingerprint == fingerprint.fingerprint  # hashed before the copy
    never = data("never")
    assert not never.place_on_device(meta, free_bytes=10**12)
    loader = InMemoryLoader(*dm.splits["train"], batch_size=8, shuffle=True)
    x, y = next(iter(loader))  # shuffled where the data is
    assert x.device == meta and y.device == meta and x.shape[0] == 8


def _epoch(loader: InMemoryLoader, epoch: int) -> torch.Tensor:
    loader.sampler.set_epoch(epoch)
    return torch.cat([y for _, y in loader])


def test_loader_covers_every_sample_and_shuffles_by_seed_and_epoch() -> None:
    x, y = torch.arange(100.0).view(100, 1), torch.arange(100)
    loader = InMemoryLoader(x, y, batch_size=32, shuffle=True, seed=3)
    assert len(loader) == 3 and [len(b) for _, b in loader] == [32, 32, 32]  # drops the last 4
    e0, e1 = _epoch(loader, 0), _epoch(loader, 1)
    assert len(set(e0.tolist())) == 96 and not torch.equal(e0, e1)
    assert set(e0.tolist()) != set(e1.tolist())  # a different 4 are left out each epoch
    evaluation = InMemoryLoader(x, y, batch_size=32)
    assert [len(b) for _, b in evaluation] == [32, 32, 32, 4]  # evaluation sees every sample
    assert torch.equal(e0, _epoch(InMemoryLoader(x, y, 32, shuffle=True, seed=3), 0))  # resumable
    assert not torch.equal(e0, _epoch(InMemoryLoader(x, y, 32, shuffle=True, seed=4), 0))
    for xb, yb in loader:
        assert torch.equal(xb.view(-1).long(), yb)  # inputs stay paired with their labels
    assert torch.equal(torch.cat([b for _, b in InMemoryLoader(x, y, 32)]), y)


def test_loader_shards_for_ddp() -> None:
    x, y = torch.zeros(10, 1), torch.arange(10)
    train = [InMemoryLoader(x, y, 2, shuffle=True, seed=0, rank=r, world_size=3) for r in range(3)]
    shards = [_epoch(loader, 0) for loader in train]
    assert {len(s) for s in shards} == {4}  # equal steps on every rank
    assert len(set(torch.cat(shards).tolist())) >= 9
    evals = [
        torch.cat([b for _, b in InMemoryLoader(x, y, 2, rank=r, world_size=3)]) for r in range(3)
    ]
    assert sorted(torch.cat(evals).tolist()) == list(range(10))  # no sample counted twice


def test_synthetic_is_learnable_and_seeded() -> None:
    from dnnexp.data import synthetic

    cfg = OmegaConf.create(
        {"split_seed": 0, "shape": [1, 4, 4], "num_classes": 3, "num_samples": 90, "noise": 0.1}
    )
    x1, y1, _ = synthetic.make(cfg)[:3]
    x2, _, _ = synthetic.make(cfg)[:3]
    assert x1.shape == (90, 1, 4, 4) and torch.equal(x1, x2)
    assert torch.bincount(y1).tolist() == [30, 30, 30]
