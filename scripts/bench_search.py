"""Measure the search (issue 22) on digits, on this CPU.

    python scripts/bench_search.py overhead [--trials 10]
    python scripts/bench_search.py samplers [--trials 20] [--repeats 3]
    python scripts/bench_search.py small
    python scripts/bench_search.py sweeps

overhead: the same K configs (seed=0..K-1, trainer=smoke) as a plain multirun and as a grid
  search over `seed`, alternated twice: the median time from one job's end to the next's, and
  the difference. Target: at most 5% of a trial or 0.2 s.
samplers: sweep=random, bayesian and evolutionary at the same budget, each with search.seed
  0..R-1: the best validation accuracy after 5, 10, ... trials, mean and range over the repeats.
small: the README's search on 10% of digits' training split with search.confirm_seeds=5: the
  confirmed mean test accuracy of the winner (target: at least 0.95) and its time.
sweeps: the README's five search commands, timed.
Results go to outputs/bench/search_<part>.json (and the terminal). Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "outputs" / "bench"
QUIET = ["trainer.progress_bar=false", "trainer.model_summary=false"]


def dnnexp(*args: str, cwd: Path = OUT) -> float:
    """Run `dnnexp ARGS` (must exit 0); its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "dnnexp", *args], cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"dnnexp {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return wall


def fresh(name: str) -> Path:
    path = OUT / name
    shutil.rmtree(path, ignore_errors=True)
    return path


def study(sweep_dir: Path):  # noqa: ANN201 - an optuna Study
    import optuna

    from dnnexp.search.study import JOURNAL, open_storage

    storage = open_storage(f"journal:{sweep_dir / JOURNAL}")
    return optuna.load_study(study_name="dnnexp", storage=storage)


def job_intervals(sweep_dir: Path, jobs: int) -> list[float]:
    """Seconds between consecutive jobs' ends (their summary.json): what each job costs in the
    running process, without the start-up and the end of the sweep."""
    ends = [(sweep_dir / str(i) / "summary.json").stat().st_mtime for i in range(jobs)]
    return [b - a for a, b in zip(ends, ends[1:], strict=False)]


def overhead(trials: int) -> dict:
    """Per-job cost of a plain multirun and of a search over the same jobs. (Total wall times
    differ by more: a plain multirun ends with its sweep report, a search with its own.)"""
    seeds = ",".join(str(i) for i in range(trials))
    # the grid's own keys fixed at the defaults: its K points are the K seeds
    grid = ["sweep=grid", "optimizer.lr=choice(0.001)", "reg.dropout=choice(0.0)"]
    plain, search = [], []
    for _ in range(2):  # alternated
        dnnexp("train", "-m", "trainer=smoke", *QUIET, f"seed={seeds}",
               f"hydra.sweep.dir={fresh('plain')}")  # fmt: skip
        plain += job_intervals(OUT / "plain", trials)
        dnnexp("train", "-m", *grid, "trainer=smoke", *QUIET, f"seed=choice({seeds})",
               f"hydra.sweep.dir={fresh('grid')}")  # fmt: skip
        search += job_intervals(OUT / "grid", trials)
    job, trial = statistics.median(plain), statistics.median(search)
    return {
        "jobs": trials,
        "plain_job_s": job,
        "search_trial_s": trial,
        "overhead_per_trial_s": trial - job,
        "overhead_share": (trial - job) / job,
    }


def samplers(trials: int, repeats: int) -> dict:
    checkpoints = [n for n in (5, 10, 20, 40, 80) if n < trials] + [trials]
    results: dict = {}
    for sweep in ("random", "bayesian", "evolutionary"):
        bests, walls = [], []
        for seed in range(repeats):
            sweep_dir = fresh(f"{sweep}-{seed}")
            knobs = [f"search.seed={seed}", f"search.n_trials={trials}"]
            walls.append(dnnexp("train", "-m", f"sweep={sweep}", *QUIET, *knobs,
                                f"hydra.sweep.dir={sweep_dir}"))  # fmt: skip
            # in trial order; a pruned or failed trial adds nothing to the best so far
            values = [t.value if t.state.name == "COMPLETE" else 0.0
                      for t in study(sweep_dir).trials]  # fmt: skip
            bests.append([max(values[:n], default=0.0) for n in checkpoints])
        results[sweep] = {
            f"best_after_{n}": {
                "mean": statistics.mean(b[i] for b in bests),
                "min": min(b[i] for b in bests),
                "max": max(b[i] for b in bests),
            }
            for i, n in enumerate(checkpoints)
        }
        results[sweep]["wall_s"] = walls
        print(sweep, json.dumps(results[sweep]), flush=True)
    return {"trials": trials, "repeats": repeats, "results": results}


SMALL = [
    "sweep=bayesian",
    "data.train_fraction=0.1",
    "search.n_trials=30",
    "search.confirm_seeds=5",
    "model=choice(mlp,cnn)",
    "reg.augment.enabled=choice(true,false)",
    "trainer.max_epochs=choice(100,200)",
    "data.batch_size=choice(16,64)",
    "search.prune_warmup_epochs=30",
]


def small() -> dict:
    sweep_dir = fresh("small")
    wall = dnnexp("train", "-m", *SMALL, *QUIET, f"hydra.sweep.dir={sweep_dir}")
    confirmation = json.loads((sweep_dir / "confirmation.json").read_text())
    return {"command": SMALL, "wall_s": wall, "confirmation": confirmation}


SWEEPS = {
    "grid": ["sweep=grid", "optimizer.lr=choice(0.001,0.01)", "reg.dropout=choice(0.0,0.3)"],
    "random": ["sweep=random", "search.n_trials=8"],
    "bayesian": [
        "sweep=bayesian",
        "search.n_trials=8",
        "optimizer.lr=tag(log,interval(1e-4,1e-1))",
    ],
    "evolutionary": ["sweep=evolutionary", "search.n_trials=8"],
    "nas": ["sweep=nas", "search.n_trials=8", "trainer.max_epochs=5"],
}


def sweeps() -> dict:
    out = {}
    for name, args in SWEEPS.items():
        sweep_dir = fresh(f"sweep-{name}")
        wall = dnnexp("train", "-m", *args, *QUIET, f"hydra.sweep.dir={sweep_dir}")
        trials = study(sweep_dir).trials
        best = max((t.value for t in trials if t.value is not None), default=None)
        out[name] = {"args": args, "wall_s": wall, "trials": len(trials), "best_val_acc": best}
        print(name, json.dumps(out[name]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("overhead", "samplers", "small", "sweeps"))
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.part == "overhead":
        result = overhead(args.trials or 10)
    elif args.part == "samplers":
        result = samplers(args.trials or 20, args.repeats)
    elif args.part == "small":
        result = small()
    else:
        result = sweeps()
    (OUT / f"search_{args.part}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
