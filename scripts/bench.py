"""Benchmark dnnexp against a hand-written PyTorch loop, and time the CLI.

    python scripts/bench.py            # the full benchmark (about 9 minutes on 2 cores)
    python scripts/bench.py --quick    # one repetition, fewer configs

Prints a table and writes JSON to outputs/bench/bench-<time>.json. Throughput: the same model on
the same in-memory data for the same epochs, (a) in a plain loop written here (tensors sliced
from memory, zero_grad(set_to_none=True), validation each epoch, no logging, no checkpoints),
once with torch's default Adam (the ten-line loop) and once with dnnexp's optimizer (the same
update kernels: like for like), and (b) through dnnexp's real code path (its task, data module,
callbacks, logger and checkpoints, timed around trainer.fit), alternated so that drift hits all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (model, batch size, epochs, extra overrides): epochs chosen so that each measurement takes a
# second or more. Digits epochs are short (5-20 steps, 15-50 ms), so dnnexp's fixed cost per epoch
# (validation loop, checkpoint state, metrics row) weighs on them; the 20k-sample synthetic set
# shows the same MLP with epochs of a more common length.
CONFIGS = [
    ("mlp", 64, 20, ()),
    ("mlp", 256, 40, ()),
    ("mlp", 256, 6, ("data=synthetic", "data.num_samples=20000")),
    ("resnext", 64, 2, ()),
    ("resnext", 256, 2, ()),
    ("lstm", 64, 8, ()),
]


def compose(*overrides: str):
    from tests.conftest import compose as _compose

    return _compose(*overrides)


def plain_loop(cfg, data, epochs: int, same_optimizer: bool = False) -> float:
    """Train samples per second of a hand-written loop on the same model and data: the ten-line
    loop (torch's default Adam), or with dnnexp's optimizer (same update kernels, so that the
    difference to dnnexp is the framework's cost alone)."""
    import torch
    import torch.nn.functional as F

    from dnnexp.models import build_model
    from dnnexp.tasks.optim import build_optimizer, param_groups

    torch.manual_seed(0)
    model = build_model(cfg.model, data.input_shape, data.num_classes, 0.0)
    if same_optimizer:
        opt = build_optimizer(cfg.optimizer, param_groups(model, cfg.reg.weight_decay))
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr)
    x, y = data.splits["train"]
    xv, yv = data.splits["val"]
    b, n = cfg.data.batch_size, len(y) // cfg.data.batch_size * cfg.data.batch_size
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(y))
        xs, ys = x[perm], y[perm]
        for i in range(0, n, b):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xs[i : i + b]), ys[i : i + b]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for i in range(0, len(yv), cfg.data.eval_batch_size):
                model(xv[i : i + cfg.data.eval_batch_size])
    return n * epochs / (time.perf_counter() - start)


def dnnexp_fit(cfg, data, epochs: int) -> float:
    """Train samples per second of dnnexp's real training path (fit with its callbacks)."""
    from omegaconf import OmegaConf

    from dnnexp.tasks.module import TrainingModule
    from dnnexp.training.trainer import build_trainer
    from dnnexp.utils.quiet import silence_lightning_noise

    silence_lightning_noise()
    import lightning as L

    L.seed_everything(0, verbose=False)
    task = TrainingModule(OmegaConf.to_container(cfg), data.spec)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(cfg, Path(run_dir), [])
        start = time.perf_counter()
        trainer.fit(task, datamodule=data)
        elapsed = time.perf_counter() - start
    b = cfg.data.batch_size
    return len(data.splits["train"][1]) // b * b * epochs / elapsed


def bench_setup(model: str, batch: int, epochs: int, *overrides: str):
    """The config (constant learning rate, no progress bar or summary) and its loaded data."""
    from dnnexp.data.datamodule import ArrayDataModule

    cfg = compose(
        f"model={model}",
        f"data.batch_size={batch}",
        f"trainer.max_epochs={epochs}",
        "scheduler=none",
        "trainer.progress_bar=false",
        "trainer.model_summary=false",
        *overrides,
    )
    data = ArrayDataModule.for_run(cfg)
    data.setup()
    return cfg, data


def throughput(reps: int, configs: list) -> list[dict]:
    rows = []
    for model, batch, epochs, extra in configs:
        cfg, data = bench_setup(model, batch, epochs, *extra)
        plain_loop(cfg, data, 1)  # warm up every path
        plain_loop(cfg, data, 1, same_optimizer=True)
        dnnexp_fit(cfg, data, 1)
        plains, sames, ours = [], [], []
        for _ in range(reps):
            plains.append(plain_loop(cfg, data, epochs))
            ours.append(dnnexp_fit(cfg, data, epochs))
            sames.append(plain_loop(cfg, data, epochs, same_optimizer=True))
        ratios = [b / a for a, b in zip(plains, ours, strict=True)]
        like = [b / a for a, b in zip(sames, ours, strict=True)]
        samples = len(data.splits["train"][1]) // batch * batch
        # dnnexp's time per epoch beyond the like-for-like plain loop's, in ms
        overhead = [1e3 * samples * (1 / b - 1 / a) for a, b in zip(sames, ours, strict=True)]
        rows.append(
            {
                "model": model + (" (20k synthetic)" if extra else ""),
                "batch": batch,
                "epochs": epochs,
                "train_samples_per_epoch": samples,
                "plain_samples_s": statistics.median(plains),
                "plain_same_optimizer_samples_s": statistics.median(sames),
                "dnnexp_samples_s": statistics.median(ours),
                "ratio_min": min(ratios),
                "ratio_median": statistics.median(ratios),
                "ratio_max": max(ratios),
                "like_for_like_ratio_median": statistics.median(like),
                "overhead_ms_per_epoch": statistics.median(overhead),
            }
        )
        print(
            f"  {rows[-1]['model']} batch {batch}: ratio {statistics.median(ratios):.3f},"
            f" like for like {statistics.median(like):.3f}",
            flush=True,
        )
    return rows


def wall(cmd: list[str], cwd: Path, reps: int = 3) -> float:
    """The fastest of `reps` runs: start-up noise on a shared machine only ever adds time."""
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def cli_timings(tmp: Path) -> dict:
    py, dnnexp = sys.executable, [sys.executable, "-m", "dnnexp"]
    out = {
        "dnnexp --help": wall([*dnnexp, "--help"], tmp, 7),
        "dnnexp train --help": wall([*dnnexp, "train", "--help"], tmp, 7),
        "dnnexp train --cfg job": wall([*dnnexp, "train", "--cfg", "job"], tmp, 7),
        "config error (reg.dropout=2)": wall([*dnnexp, "train", "reg.dropout=2"], tmp, 7),
    }
    # alternated, so that the machine's drift hits both; the fastest of 3 each
    smoke = [*dnnexp, "train", "trainer=smoke", "trainer.progress_bar=false"]
    pairs = [(wall([py, "-c", "import lightning"], tmp, 1), wall(smoke, tmp, 1)) for _ in range(3)]
    out["python -c 'import lightning'"] = min(a for a, _ in pairs)
    out["dnnexp train trainer=smoke"] = min(b for _, b in pairs)
    out["smoke minus import lightning"] = (
        out["dnnexp train trainer=smoke"] - out["python -c 'import lightning'"]
    )
    default_run = ["train", "trainer.progress_bar=false"]
    out["peak RSS of a default run (MiB)"] = peak_rss_mib(default_run, tmp)
    return out


def peak_rss_mib(args: list[str], cwd: Path) -> float:
    """The run's own high-water mark (VmHWM, read by the run as it exits). getrusage's maxrss of
    a child counts the parent's memory as well: the child starts as a copy of this process."""
    code = (
        "import atexit, sys\n"
        "def report():\n"
        "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "    print('VMHWM', hwm.split()[1], file=sys.stderr)\n"
        "atexit.register(report)\n"
        "from dnnexp.cli import main\n"
        f"sys.exit(main({args!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)
    kib = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("VMHWM")]
    return int(kib[-1]) / 1024 if kib else float("nan")


def sweep_timings(tmp: Path) -> dict:
    """4-job seed sweeps, sequential vs joblib. Every process pays `import lightning` once
    (~6-8 s here) in both modes, so the speed-up is bounded by how long the jobs are: short MLP
    jobs (10 epochs, <1 s) and CNN jobs (30 and 120 epochs, ~5 and ~20 s) are timed."""
    out = {}
    for label, job in (
        ("mlp 10 epochs", ["trainer.max_epochs=10"]),
        ("cnn 30 epochs", ["model=cnn"]),
        ("cnn 120 epochs", ["model=cnn", "trainer.max_epochs=120"]),
    ):
        args = [sys.executable, "-m", "dnnexp", "train", "-m", "seed=0,1,2,3", *job]
        args.append("trainer.progress_bar=false")
        name = label.replace(" ", "-")
        seq = wall([*args, f"hydra.sweep.dir={tmp}/{name}-seq"], tmp, 1)
        par = wall([*args, "hydra/launcher=joblib", f"hydra.sweep.dir={tmp}/{name}-par"], tmp, 1)
        out[f"4-job sweep, {label}: sequential (s)"] = seq
        out[f"4-job sweep, {label}: joblib (s)"] = par
        out[f"4-job sweep, {label}: joblib speed-up"] = seq / par
    return out


def speed_options(reps: int) -> list[dict]:
    """dnnexp's speed knobs on this machine, each run alternately with the default; the ratio
    option/default is the median of `reps` pairs. Model knobs on resnext (batch 64, 2 epochs),
    the optimizer's update kernels on the digits MLP (batch 64, 20 epochs)."""

    def setup(model: str, *knobs: str):
        epochs = 2 if model == "resnext" else 20
        return (*bench_setup(model, 64, epochs, *knobs), epochs)

    rows = []
    for model, option in (
        ("resnext", "trainer.precision=bf16-mixed"),
        ("resnext", "trainer.channels_last=true"),
        ("resnext", "trainer.compile=true"),
        ("resnext", "trainer.steps_per_call=1"),
        ("mlp", "optimizer.implementation=for_loop"),
        ("mlp", "optimizer.implementation=foreach"),
    ):
        base, (cfg, data, epochs) = setup(model), setup(model, option)
        try:
            pairs = [(dnnexp_fit(*base), dnnexp_fit(cfg, data, epochs)) for _ in range(reps)]
        except Exception as err:  # noqa: BLE001 - e.g. no C++ compiler for torch.compile
            error = f"{type(err).__name__}: {err}"[:200]
            rows.append({"option": option, "model": model, "error": error})
        else:
            rows.append(
                {
                    "option": option,
                    "model": model,
                    "default_samples_s": statistics.median(a for a, _ in pairs),
                    "samples_s": statistics.median(b for _, b in pairs),
                    "ratio": statistics.median(b / a for a, b in pairs),
                }
            )
        print(f"  {rows[-1]}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, two configs")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    reps, configs = (1, CONFIGS[:1] + CONFIGS[-1:]) if args.quick else (args.reps, CONFIGS)
    started = time.perf_counter()
    print("throughput: plain loop vs dnnexp (alternating)", flush=True)
    rows = throughput(reps, configs)
    print("speed options", flush=True)
    options = [] if args.quick else speed_options(3)
    with tempfile.TemporaryDirectory() as tmp:
        print("CLI and sweep timings", flush=True)
        cli = cli_timings(Path(tmp))
        sweep = {} if args.quick else sweep_timings(Path(tmp))

    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="training throughput (train samples/s). ratio = dnnexp / ten-line loop (torch's"
        " default Adam); like for like = dnnexp / the loop with dnnexp's optimizer kernels;"
        " overhead = dnnexp's extra time per epoch"
    )
    columns = ("model", "batch", "epochs", "plain", "plain, same opt", "dnnexp")
    for column in (*columns, "ratio min", "median", "max", "like for like", "overhead ms/ep"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r["model"],
            str(r["batch"]),
            str(r["epochs"]),
            f"{r['plain_samples_s']:,.0f}",
            f"{r['plain_same_optimizer_samples_s']:,.0f}",
            f"{r['dnnexp_samples_s']:,.0f}",
            f"{r['ratio_min']:.3f}",
            f"{r['ratio_median']:.3f}",
            f"{r['ratio_max']:.3f}",
            f"{r['like_for_like_ratio_median']:.3f}",
            f"{r['overhead_ms_per_epoch']:.1f}",
        )
    console = Console()
    if not console.is_terminal:  # a log file: keep every column readable
        console = Console(width=180)
    console.print(table)
    other = Table(title="CLI, memory and sweeps")
    other.add_column("measure")
    other.add_column("value", justify="right")
    for key, value in {**cli, **sweep}.items():
        other.add_row(key, f"{value:.2f}")
    console.print(other)
    if options:
        speed = Table(title="speed options (batch 64; ratio = option / default)")
        for column in ("option", "model", "default samples/s", "option samples/s", "ratio"):
            speed.add_column(column, justify="right")
        for r in options:
            if "error" in r:
                speed.add_row(r["option"], r["model"], "", "", r["error"])
            else:
                speed.add_row(
                    r["option"],
                    r["model"],
                    f"{r['default_samples_s']:,.0f}",
                    f"{r['samples_s']:,.0f}",
                    f"{r['ratio']:.2f}",
                )
        console.print(speed)
    result = {
        "throughput": rows,
        "speed_options": options,
        "cli": cli,
        "sweep": sweep,
        "bench_s": time.perf_counter() - started,
        "python": sys.version.split()[0],
    }
    out = REPO / "outputs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {path} ({result['bench_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
