"""Time the local-file loaders at real size, without the real data.

    python scripts/bench_files.py [--dir DIR] [--keep]

Writes CIFAR-10-sized binary files (50,000 + 10,000 random 3x32x32 images, 184 MB) into DIR (a
temporary dir by default), then measures (1) reading them with dnnexp's CIFAR-10 loader, best of
three, and (2) one epoch of `dnnexp train data=cifar10` on them (the default MLP), its wall time
and peak RSS. Targets: reading in at most 3 s, the run's peak RSS at most 1.5 GB.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PER_BATCH, TEST = 10_000, 10_000


def write_cifar10(root: Path) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        records = rng.integers(0, 256, (PER_BATCH if name != "test_batch.bin" else TEST, 3073))
        records[:, 0] %= 10
        (root / name).write_bytes(records.astype(np.uint8).tobytes())


def time_load(root: Path) -> float:
    from omegaconf import OmegaConf

    from dnnexp.data.cifar import load_cifar10

    cfg = OmegaConf.create({"root": str(root)})
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        arrays = load_cifar10(cfg)
        best = min(best, time.perf_counter() - start)
        assert arrays.x.shape == (50_000, 3, 32, 32) and arrays.x_test.shape[0] == TEST
        del arrays
    return best


def one_epoch(root: Path, out: Path) -> tuple[float, float, int]:
    """Wall time (s), peak RSS (MiB) and exit status of one epoch through the CLI."""
    command = [
        sys.executable,
        "-m",
        "dnnexp",
        "train",
        "data=cifar10",
        f"data.root={root}",
        "trainer.max_epochs=1",
        "trainer.progress_bar=false",
        "trainer.model_summary=false",
        f"hydra.run.dir={out}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return wall, peak, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where to write the files (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    options = parser.parse_args()
    base = options.dir or Path(tempfile.mkdtemp(prefix="dnnexp-bench-files-"))
    root = base / "cifar10"
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=base)) / "run"  # a fresh one each time
    try:
        start = time.perf_counter()
        write_cifar10(root)
        print(f"wrote CIFAR-10-sized binary files in {time.perf_counter() - start:.1f} s: {root}")
        load_s = time_load(root)
        print(f"read with data=cifar10's loader: {load_s:.2f} s (best of 3; target <= 3 s)")
        wall, peak, status = one_epoch(root, run_dir)
        print(
            f"one epoch of dnnexp train data=cifar10 (mlp): {wall:.1f} s wall, peak RSS"
            f" {peak:.0f} MiB (target <= 1536), exit {status}"
        )
    finally:
        if not options.keep:
            shutil.rmtree(base if options.dir is None else root, ignore_errors=True)
            if options.dir is not None:
                shutil.rmtree(run_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
