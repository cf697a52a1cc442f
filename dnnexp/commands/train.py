"""`dnnexp train`: compose conf/train.yaml with Hydra, validate, hand over to training/run.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from dnnexp.utils.run_files import LAST_CKPT


def main(args: list[str]) -> int:
    if "--help" in args or "-h" in args:
        from dnnexp.config import config_dirs
        from dnnexp.config.help import render

        print(render(config_dirs(args)))
        return 0
    from dnnexp.config.ranks import external_rank, secondary_rank

    rank = secondary_rank()
    if rank is not None and external_rank() is not None:  # torchrun/srun: as Lightning's children
        args = [*args, "hydra.output_subdir=null", f"hydra.job.name=train_ddp_rank_{rank}"]
    refusal = _refuse_flag_clash(args)
    if refusal is None and any(a.startswith("resume=") for a in args):
        args, refusal = _resume_args(args)
    elif refusal is None:
        refusal = _refuse_finished_run_dir(args) or _refuse_other_sweep(args)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    import hydra

    from dnnexp.config import conf_dir, schema
    from dnnexp.config.hydra_setup import (
        install_one_line_errors,
        register_resolvers,
        register_search_sweeper,
        speed_up_hydra,
        validate_before_run_dir,
    )

    schema.register()
    register_resolvers()
    install_one_line_errors(args)
    register_search_sweeper()  # also in one run: a DDP rank of a search trial has sweep=... too
    speed_up_hydra(args)
    validate_before_run_dir()
    sys.argv = [sys.argv[0], *_flags_first(args)]  # Hydra reads its flags and overrides there
    entry = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="train")(_job)
    entry()
    from dnnexp.sweep.callbacks import failed_jobs

    return 1 if failed_jobs() else 0


_VALUE_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn")
_VALUE_FLAGS += ("--config-dir", "-cd", "--experimental-rerun")
_INFO_VALUES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def _flags_first(args: list[str]) -> list[str]:
    """Hydra's flags (with their values) before the overrides: Hydra's argparse takes one run
    of overrides, so `dnnexp train a=1 -m b=2,3` would fail with 'unrecognized arguments'."""
    flags, overrides, i = [], [], 0
    while i < len(args):
        arg = args[i]
        takes_value = arg in _VALUE_FLAGS or (
            arg in ("--info", "-i") and i + 1 < len(args) and args[i + 1] in _INFO_VALUES
        )
        if arg.startswith("-") and takes_value and i + 1 < len(args):
            flags += args[i : i + 2]
            i += 2
            continue
        (flags if arg.startswith("-") else overrides).append(arg)
        i += 1
    return [*flags, *overrides]


def _resume_args(args: list[str]) -> tuple[list[str], str | None]:
    """`resume=RUN_DIR [overrides]` -> that run's own overrides, then the new ones, run in
    RUN_DIR itself (train() continues from checkpoints/last.ckpt)."""
    value = next(a for a in args if a.startswith("resume=")).split("=", 1)[1]
    run_dir = Path(value).expanduser().resolve()
    if _multirun(args):
        return (
            args,
            "resume= continues one run; to finish a sweep, re-run it into its hydra.sweep.dir",
        )
    if not (run_dir / ".hydra" / "overrides.yaml").is_file():
        return args, f"resume={value}: not a dnnexp run dir (no .hydra/overrides.yaml there)"
    if not (run_dir / LAST_CKPT).is_file():
        return (
            args,
            f"resume={value}: no checkpoints/last.ckpt there (no epoch finished): start anew",
        )
    from dnnexp.utils.claims import holder

    training = holder(run_dir)
    if training is not None:  # checked again, atomically, when the job claims the dir
        return args, _resume_refused(value, training)
    from omegaconf import OmegaConf

    earlier = [
        o
        for o in OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml"))
        if not o.startswith(("resume=", "hydra.run.dir="))
    ]
    extra = [a for a in args if not a.startswith(("resume=", "hydra.run.dir="))]
    # Hydra would rewrite the run's .hydra/ before any check: the job writes it once they pass
    hydra_files = "hydra.output_subdir=null"
    return [*earlier, *extra, f"resume={run_dir}", f"hydra.run.dir={run_dir}", hydra_files], None


def _multirun(args: list[str]) -> bool:
    return "-m" in args or "--multirun" in args


def _refuse_flag_clash(args: list[str]) -> str | None:
    modes = [a for a in args if a in ("-m", "--multirun", "--cfg", "-c", "--info", "-i", "--run")]
    if len(modes) > 1:
        return f"{' and '.join(modes)} cannot be combined: use one of them (e.g. --cfg job alone)"
    return None


def _refuse_finished_run_dir(args: list[str]) -> str | None:
    """An explicit hydra.run.dir that already holds a run is never reused (nothing overwritten).
    DDP ranks > 0 run inside their rank 0's run dir on purpose and skip this."""
    from dnnexp.config.ranks import secondary_rank
    from dnnexp.utils.claims import CLAIM
    from dnnexp.utils.run_files import SUMMARY

    if secondary_rank() is not None or _multirun(args):
        return None
    for arg in args:
        if arg.startswith("hydra.run.dir="):
            run_dir = Path(arg.split("=", 1)[1].strip("'\""))
            if any((run_dir / name).exists() for name in (SUMMARY, "checkpoints", CLAIM)):
                return (
                    f"hydra.run.dir={run_dir} already holds a run; pick a new directory"
                    " (or leave hydra.run.dir out for a fresh outputs/<date>/<time>)"
                )
    return None


def _refuse_other_sweep(args: list[str]) -> str | None:
    """Re-running a sweep into its explicit hydra.sweep.dir finishes it (completed jobs are
    skipped); a different sweep there would renumber the jobs over the earlier ones."""
    if not _multirun(args):
        return None
    sweep_dir = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.sweep.dir=")), None)
    if sweep_dir is None or not (Path(sweep_dir) / "multirun.yaml").is_file():
        return None
    from omegaconf import OmegaConf

    def same_sweep(overrides: list[str]) -> list[str]:
        """What makes it the same sweep; a search's own knobs (search.n_trials: extend it,
        search.confirm_seeds: confirm its winner) may change between runs."""
        return sorted(o for o in overrides if not o.startswith("search."))

    earlier = OmegaConf.load(Path(sweep_dir) / "multirun.yaml").hydra.overrides.task
    task = [a for a in args if "=" in a and not a.startswith(("-", "hydra.", "hydra/", "+hydra"))]
    if same_sweep(earlier) != same_sweep(task):
        return (
            f"hydra.sweep.dir={sweep_dir} holds another sweep ({' '.join(earlier)}): re-run"
            " exactly that command to finish it, or pick a new hydra.sweep.dir"
        )
    return None


def _job(cfg: DictConfig) -> float | None:
    """One training job: the whole run, or one job of a multirun.

    The job first claims its run dir (`utils/claims.py`): a dir that another live process is
    training in is skipped (a multirun) or refused (a run, a resume). In a multirun a job never
    raises into Hydra: it records its failure in its summary.json and returns, so its siblings
    run and the sweep ends with a table of every failure (dnnexp.sweep.callbacks); only a write
    that fails (a full disk) stops the sweep, since the next job would fail the same way. A job
    whose run dir already holds the same completed run is skipped; one that was interrupted or
    killed resumes from its last checkpoint.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from dnnexp.config.ranks import secondary_rank
    from dnnexp.utils.claims import Claim

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN and os.environ.get("HYDRA_FULL_ERROR") != "1"
    run_dir = Path(hydra_cfg.runtime.output_dir)
    label = f"job {hydra_cfg.job.num}" if multirun else "run"
    trial = OmegaConf.select(cfg, "search.trial", default=None)
    if trial is not None:
        label = f"trial {trial}"
    claim = None if secondary_rank() is not None else Claim(run_dir)  # ranks > 0: rank 0's dir
    holder = None if claim is None else claim.acquire()
    if holder is not None:
        return _claimed_elsewhere(cfg, run_dir, label, holder, multirun)
    try:
        if claim is not None and claim.took_over is not None:
            print(
                f"{label}: {claim.took_over.describe()} had claimed {run_dir} and is gone:"
                " taken over"
            )
        return _train_job(cfg, hydra_cfg, run_dir, label, multirun, claim)
    finally:
        if claim is not None:
            claim.release()


def _claimed_elsewhere(
    cfg: DictConfig, run_dir: Path, label: str, holder: Any, multirun: bool
) -> None:
    """Another process holds run_dir: a sweep job is skipped, a run or resume refused."""
    from dnnexp.utils.claims import CLAIM

    clear = (
        ""
        if holder.local
        else (f"; if that process is gone, remove {run_dir / CLAIM} and run again")
    )
    if multirun:
        print(f"{label}: running in {holder.describe()}, skipped{clear}")
        return None
    if cfg.get("resume"):
        line = _resume_refused(cfg.resume, holder)
    else:
        line = f"hydra.run.dir={run_dir}: {holder.describe()} is training in it; pick a new one"
    print(f"error: {line}{clear}", file=sys.stderr)
    sys.exit(2)


def _resume_refused(value: str, holder: Any) -> str:
    """The line for a resume of a run that another live process is training."""
    return (
        f"resume={value}: {holder.describe()} is training in it; wait for it to end (or stop"
        " it), then resume"
    )


def _train_job(
    cfg: DictConfig, hydra_cfg: Any, run_dir: Path, label: str, multirun: bool, claim: Any
) -> float | None:
    from dnnexp.config.errors import ConfigError, RunError, RunStopped
    from dnnexp.config.hardware import check_devices
    from dnnexp.config.validate import validate
    from dnnexp.sweep import job
    from dnnexp.utils.run_files import SUMMARY, SWEEP_ID, write_json

    overrides = list(hydra_cfg.overrides.task)
    composed = cfg  # as Hydra composed it: what .hydra/config.yaml holds
    shown = overrides
    if OmegaConf.select(cfg, "search.trial", default=None) is not None:
        shown = [o for o in overrides if not o.startswith("search.")]  # its params alone
    try:
        cfg = validate(cfg)
        check_devices(cfg.trainer)
        cfg_hash = job.config_hash(cfg)
        if multirun:
            kind, earlier = job.earlier_run(run_dir, cfg_hash)
            if kind == "completed":
                other = job.ran_by_other(earlier, os.environ.get(SWEEP_ID))
                by = (
                    f"completed by {other.describe()}"
                    if other
                    else f"already completed in {run_dir}"
                )
                print(f"{label}: {by}, skipped")
                return job.objective_value(earlier)
            if kind == "resumable":
                ended = "killed" if earlier["status"] == "running" else earlier["status"]
                print(f"{label}: {ended} earlier, resumes from its last checkpoint")
                with open_dict(cfg):
                    cfg.resume = str(run_dir)
            job.start_clean(cfg.trainer.num_threads or job.threads_per_job(hydra_cfg.launcher))
        elif cfg.trainer.num_threads:
            job.start_clean(cfg.trainer.num_threads)
        if cfg.lr_find.mode == "only":  # dnnexp lr-find: the range test alone, no run
            from dnnexp.training.lr_find import run_only

            run_only(cfg, run_dir)
            return None
        from dnnexp.training.run import train  # heavy: torch + lightning

        record = None
        if cfg.resume and not multirun and claim is not None:  # rank 0 (see _resume_args)

            def record() -> None:
                _save_hydra_files(run_dir, composed, hydra_cfg, overrides)

        summary = train(
            cfg,
            run_dir=run_dir,
            overrides=overrides,
            config_hash=cfg_hash,
            label=f"{label} ({' '.join(shown)})" if multirun else None,
            before_writing=record,
            callbacks=_trial_callbacks(cfg),
        )
        return job.objective_value(summary)
    except RunStopped as err:  # a write failed: this job stops, and so does the sweep
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except (ConfigError, RunError) as err:
        if multirun:
            if not (run_dir / SUMMARY).exists():  # refused before training started
                error = f"{type(err).__name__}: {err}"
                write_json(
                    run_dir / SUMMARY,
                    {"status": "failed", "error": error, "overrides": overrides, "metrics": {}},
                )
            print(f"{label} failed: {err}", file=sys.stderr)
            return None
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if claim is not None:
            claim.release()
        _discard_unstarted_run_dir(run_dir)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        if not multirun:
            raise
        # train() has written status "failed" and the error into the job's summary.json
        print(f"{label} failed: {type(err).__name__}: {err}".splitlines()[0], file=sys.stderr)
        return None


def _trial_callbacks(cfg: DictConfig) -> list[Any]:
    """A search trial reports its validations to Optuna and stops when pruned (TrialPruning,
    given to the trainer: training knows nothing of searches)."""
    search = cfg.get("search")
    if search is None or search.trial is None or int(cfg.trainer.fast_dev_run):
        return []
    from dnnexp.config.metrics import task_score
    from dnnexp.search.trial_pruning import TrialPruning  # optuna: only in search trials

    return [TrialPruning(search, search.metric or task_score(cfg.task))]


def _save_hydra_files(run_dir: Path, cfg: DictConfig, hydra_cfg: Any, overrides: list) -> None:
    """.hydra/{config,hydra,overrides}.yaml as Hydra writes them, atomically."""
    from dnnexp.utils.run_files import write_text

    hydra_node = OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg)})
    hydra_node.hydra.output_subdir = ".hydra"  # where they are, as in the run's first start
    files = {
        "config.yaml": cfg,
        "hydra.yaml": hydra_node,
        "overrides.yaml": OmegaConf.create(overrides),
    }
    (run_dir / ".hydra").mkdir(exist_ok=True)
    for name, node in files.items():
        write_text(run_dir / ".hydra" / name, OmegaConf.to_yaml(node))


def _discard_unstarted_run_dir(run_dir: Path) -> None:
    """A run refused before training leaves no run dir that looks like a run: remove what Hydra
    wrote (.hydra/, the log) and the dir itself if nothing else is in it."""
    from dnnexp.utils.run_files import SUMMARY

    if (run_dir / SUMMARY).exists():
        return  # the run started: its summary says how it ended
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (run_dir / ".hydra" / name).unlink(missing_ok=True)
    for log in run_dir.glob("*.log"):
        log.unlink()
    for path in (run_dir / ".hydra", run_dir):
        try:
            path.rmdir()
        except OSError:
            pass  # not empty: something else lives there, leave it
