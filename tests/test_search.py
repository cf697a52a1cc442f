"""Hyperparameter and architecture search (dnnexp.search): the space, the study, pruning, the
end of a search, and the CLI with a kill and a resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from dnnexp.config.errors import ConfigError
from dnnexp.search.space import Param, check_keys, parse_space, suggest
from dnnexp.search.sweeper import options_have
from tests.conftest import compose, dnnexp_command, run_cli, summary, user_env

optuna = pytest.importorskip("optuna")


def test_the_space_reads_hydras_override_grammar() -> None:
    space, fixed = parse_space(
        {
            "optimizer.lr": "tag(log, interval(1e-4, 1e-1))",
            "model.blocks_per_stage": "range(1, 4)",
            "model.fc_hidden": "tag(int, interval(16, 256))",
            "model": "choice(mlp, cnn)",
            "reg.dropout": "0.0,0.1,0.3",
        },
        ["trainer.max_epochs=3", "reg.dropout=0.2"],  # a plain value fixes a searched key
    )
    by_key = {p.key: p for p in space}
    assert by_key["optimizer.lr"] == Param("optimizer.lr", low=1e-4, high=0.1, log=True)
    assert by_key["model.blocks_per_stage"].grid() == [1, 2, 3]
    assert by_key["model.fc_hidden"].integer and by_key["model.fc_hidden"].high == 256
    assert by_key["model"].choices == ("mlp", "cnn")
    assert "reg.dropout" not in by_key and fixed == ["trainer.max_epochs=3", "reg.dropout=0.2"]
    space, _ = parse_space({"model.hidden": "choice([64],[128,128])"}, [])
    assert space[0].choices == ("[64]", "[128,128]")  # lists stay override strings


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("optimizer.lr=choice()", "empty choice is not legal"),
        ("optimizer.lr=interval(0.1, 0.01)", "low 0.1 > high 0.01"),
        ("optimizer.lr=tag(log, interval(0, 0.1))", "tag(log, ...) needs positive bounds"),
        ("optimizer.lr=range(5, 2)", "needs start < stop"),
        ("optimizer.lr=tag(cube, interval(1, 2))", "unknown tag 'cube'"),
        ("model.hidden=tag(int, interval(1.5, 3))", "whole-number bounds"),
        ("optimizer.lr=choice(1,1)", "a value is listed twice"),
    ],
)
def test_a_bad_space_is_one_line(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match="search space") as err:
        parse_space({}, [line])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_searched_keys_must_exist_in_the_config_or_in_an_option_of_a_swept_group() -> None:
    cfg = compose()
    ok, _ = parse_space({"model": "choice(mlp,cnn)", "model.kernel_size": "choice(3,5)"}, [])
    check_keys(ok, cfg, options_have)  # kernel_size: cnn has it
    for params, message in [
        ({"optimizer.lrr": "interval(0.1, 0.2)"}, "optimizer.lrr: not a key of the config"),
        ({"seeds": "range(3)"}, "seeds: not a key of the config"),
        ({"model": "choice(mlp,cnn)", "model.growth_rate": "choice(8,12)"}, "no option of model"),
    ]:
        space, _ = parse_space(params, [])
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            check_keys(space, cfg, options_have)
    with pytest.raises(ConfigError, match="grid search needs choice"):
        parse_space({"optimizer.lr": "interval(0.1, 0.2)"}, [])[0][0].grid()


def test_a_search_over_families_that_cannot_read_the_data_fails_before_any_trial(
    tmp_path: Path,
) -> None:
    from dnnexp.search.space import check_families

    (tmp_path / "t.csv").write_text("text,label\ngood film,pos\nbad film,neg\n")
    cfg = compose("data=text", f"data.path={tmp_path / 't.csv'}", "model=gru", "sweep=nas_text")
    from omegaconf import OmegaConf

    from dnnexp.config import conf_dir

    params = OmegaConf.load(conf_dir() / "sweep" / "nas_text.yaml").hydra.sweeper.params
    text_space, _ = parse_space({k: str(v) for k, v in params.items()}, [])
    check_keys(text_space, cfg, options_have)  # every key of sweep=nas_text is some family's
    check_families(text_space, cfg)
    space, _ = parse_space({"model": "choice(gru,cnn)"}, [])
    with pytest.raises(ConfigError) as err:
        check_families(space, cfg)
    assert str(err.value).startswith("search space: model=choice(gru, cnn): model=cnn does not")
    assert "sweep=nas_text" in str(err.value)
    check_families(parse_space({"model": "choice(mlp,cnn)"}, [])[0], compose())


def test_a_family_key_is_suggested_only_in_that_familys_trials() -> None:
    space, _ = parse_space({"model": "choice(mlp,cnn)", "model.kernel_size": "choice(3,5)"}, [])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {}
    for _ in range(12):
        overrides = suggest(study.ask(), space, options_have)
        seen[overrides[0]] = overrides
    assert seen["model=mlp"] == ["model=mlp"]
    assert seen["model=cnn"][1].startswith("model.kernel_size=")


def test_pruning_stops_a_trial_below_the_median_of_earlier_ones(tmp_path: Path) -> None:
    from dnnexp.search.study import open_storage
    from dnnexp.search.trial_pruning import TrialPruning

    url = f"journal:{tmp_path / 'search.journal'}"
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    for value in (0.9, 0.95):
        trial = study.ask()
        trial.report(value, 0)
        study.tell(trial, value)

    def job_of(trial: object) -> SimpleNamespace:  # what a trial's job gets in `search`
        return SimpleNamespace(
            storage=url,
            study_name="s",
            trial=trial.number,
            pruner="median",
            prune_startup_trials=1,
            prune_warmup_epochs=0,
        )

    def validate(callback: TrialPruning, acc: float) -> SimpleNamespace:
        trainer = SimpleNamespace(
            sanity_checking=False,
            global_rank=0,
            world_size=1,
            current_epoch=0,
            callback_metrics={"val/acc": acc},
            should_stop=False,
        )
        callback.on_validation_end(trainer, None)
        return trainer

    assert not validate(TrialPruning(job_of(study.ask()), "val/acc"), 0.97).should_stop
    bad = TrialPruning(job_of(study.ask()), "val/acc")
    assert validate(bad, 0.5).should_stop and bad.pruned_at == 0


SEARCH = ["train", "-m", "sweep=random", "trainer=smoke", "hydra.sweep.dir=search"]


def _trials(sweep_dir: Path) -> list:
    from dnnexp.search.study import open_storage

    storage = open_storage(f"journal:{sweep_dir / 'search.journal'}")
    return optuna.load_study(study_name="dnnexp", storage=storage).get_trials()


@pytest.mark.slow
def test_a_search_runs_trials_records_failures_and_writes_a_best_yaml(tmp_path: Path) -> None:
    proc = run_cli(
        *SEARCH,
        "search.n_trials=4",
        "model.hidden=choice([32],[])",  # [] is refused by the job: a failed trial
        "search.pruner=none",
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    trials = _trials(tmp_path / "search")
    states = [t.state.name for t in trials]
    assert len(trials) == 4 and "FAIL" in states and "COMPLETE" in states
    failed = next(t for t in trials if t.state.name == "FAIL")
    assert "at least one width" in summary(tmp_path / "search" / str(failed.number))["error"]
    assert f"search: 4 of 4 trials: {states.count('COMPLETE')} complete" in out
    assert "top trials by val/acc (maximize)" in out
    best = (tmp_path / "search" / "best.yaml").read_text()
    assert "model:\n  hidden:\n  - 32\n" in best and "--config-name best" in best
    rerun = run_cli(
        "train",
        "--config-dir",
        "search",
        "--config-name",
        "best",
        "hydra.run.dir=best_run",
        cwd=tmp_path,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    config = (tmp_path / "best_run" / ".hydra" / "config.yaml").read_text()
    assert "hidden:\n  - 32\n" in config and "max_epochs: 1\n" in config


@pytest.mark.slow
def test_a_killed_search_resumes_and_ends_with_exactly_n_trials(tmp_path: Path) -> None:
    """SIGKILL half way: the trial that was running is marked failed on the re-run, the
    trial numbers continue, and the study ends with exactly search.n_trials."""
    args = [*SEARCH, "search.n_trials=4", "trainer.max_epochs=40", "search.pruner=none"]
    first = subprocess.Popen(
        [sys.executable, "-m", "dnnexp", *args],
        cwd=tmp_path,
        env=user_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "search" / "1" / "summary.json").exists():
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = _trials(tmp_path / "search")
    assert [t.state.name for t in before][-1] == "RUNNING" and len(before) == 2
    again = run_cli(*args, cwd=tmp_path)  # the same command finishes the study
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trials [1] were left running by a killed worker: marked failed" in again.stdout
    trials = _trials(tmp_path / "search")
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]


def test_confirmation_jobs_use_fresh_seeds_and_the_fixed_overrides() -> None:
    from dnnexp.search.confirm import FRESH_SEED, jobs

    lines = jobs(["sweep=random", "seed=3", "trainer=smoke"], {"optimizer.lr": 0.01}, 2)
    assert len(lines) == 4 and all("seed=3" not in job for job in lines)
    start, best = lines[0], lines[2]
    assert start == [
        "sweep=random",
        "trainer=smoke",
        f"seed={FRESH_SEED}",
        f"hydra.sweep.subdir=confirm/start-{FRESH_SEED}",
    ]
    assert best[:3] == ["sweep=random", "trainer=smoke", "optimizer.lr=0.01"]


def test_the_confirmation_is_a_paired_t_test_over_the_fresh_seeds(tmp_path: Path) -> None:
    """confirmation.json: best - start on the test split, paired by seed, as scipy computes it;
    with a seed missing on one side the samples are no longer paired (Welch's test then)."""
    import json

    from scipy import stats

    from dnnexp.search.confirm import FRESH_SEED, compare_runs

    start, best = [0.90, 0.92, 0.91, 0.93], [0.95, 0.96, 0.94, 0.97]
    for variant, values in (("start", start), ("best", best)):
        for i, value in enumerate(values):
            run = tmp_path / "confirm" / f"{variant}-{FRESH_SEED + i}"
            run.mkdir(parents=True)
            metrics = {"test/acc": value, "val/acc": 0.5}
            (run / "summary.json").write_text(
                json.dumps({"status": "completed", "task": "classification", "metrics": metrics})
            )
    winner = SimpleNamespace(number=7, values=[0.99])
    got = compare_runs(tmp_path, 4, winner, "val/acc")
    diffs = [b - a for a, b in zip(start, best, strict=True)]
    expected = stats.ttest_rel(best, start)
    half = stats.t.ppf(0.975, 3) * stats.tstd(diffs) / 2
    assert got["test"] == "paired t" and got["metric"] == "test/acc"
    assert got["delta"] == pytest.approx(sum(diffs) / 4)
    assert got["p_value"] == pytest.approx(expected.pvalue)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(
        (got["delta"] - half, got["delta"] + half)
    )
    assert got["best_validation"] == {"metric": "val/acc", "value": 0.99}
    assert json.loads((tmp_path / "confirmation.json").read_text())["best"]["n"] == 4
    (tmp_path / "confirm" / f"best-{FRESH_SEED}" / "summary.json").write_text(
        '{"status": "failed"}'
    )
    assert compare_runs(tmp_path, 4, winner, "val/acc")["test"] == "Welch t"


def _run_workers(args: list[str], dirs: list[Path]) -> list[str]:
    """`dnnexp *args` in each dir at once; their outputs, once all have exited 0."""
    workers = [
        subprocess.Popen(
            [*dnnexp_command(), *args],
            cwd=cwd,
            env=user_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for cwd in dirs
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * len(dirs), "\n".join(o[-2000:] for o in outputs)
    return outputs


@pytest.mark.slow
def test_two_workers_share_one_study_and_end_with_exactly_n_trials(tmp_path: Path) -> None:
    """Two processes on the same command and sweep dir: the trial numbers never collide, and
    together they run exactly search.n_trials; then a confirmation on fresh seeds."""
    args = [*SEARCH, "search.n_trials=5", "search.pruner=none"]
    _run_workers(args, [tmp_path, tmp_path])
    trials = _trials(tmp_path / "search")
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state.name == "COMPLETE" for t in trials)
    workers_seen = {t.user_attrs["dnnexp_worker"] for t in trials}
    assert len(workers_seen) == 2  # both did some of the work
    confirmed = run_cli(
        *SEARCH, "search.n_trials=5", "search.pruner=none", "search.confirm_seeds=2", cwd=tmp_path
    )
    assert confirmed.returncode == 0, confirmed.stderr[-2000:]
    import json

    confirmation = json.loads((tmp_path / "search" / "confirmation.json").read_text())
    assert confirmation["start"]["n"] == 2 and confirmation["best"]["n"] == 2
    assert confirmation["test"] == "paired t"  # the same seeds on both sides
    assert "confirmed Δ test/acc best - start" in confirmed.stdout
    report = run_cli("report", "search", cwd=tmp_path)  # the trials and the confirmation
    assert report.returncode == 0, report.stderr[-2000:]
    assert "5 of 5 trials (5 complete)" in report.stdout
    assert "confirmation on 2 fresh seeds (test/acc, test split)" in report.stdout
    assert "## Confirmation on 2 fresh seeds" in (tmp_path / "search" / "report.md").read_text()


@pytest.mark.slow
def test_two_machines_share_one_postgresql_study(tmp_path: Path, postgres_url: str) -> None:
    """Two workers with their own sweep dirs (as on two machines) share a study only through a
    PostgreSQL server: distinct trial numbers, exactly search.n_trials, each trial's files in
    the sweep dir of the worker that ran it."""
    machines = [tmp_path / "a", tmp_path / "b"]
    for machine in machines:
        machine.mkdir()
    args = [
        *SEARCH,
        "search.n_trials=6",
        f"search.storage={postgres_url}",
        "search.study_name=team",
    ]
    outputs = _run_workers(args, machines)
    study = optuna.load_study(study_name="team", storage=postgres_url)
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4, 5]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    ran = {m.name: {int(p.name) for p in (m / "search").iterdir() if p.name.isdigit()}
           for m in machines}  # fmt: skip
    assert ran["a"] and ran["b"] and ran["a"].isdisjoint(ran["b"])
    assert ran["a"] | ran["b"] == set(range(6))
    assert all("search: 6 of 6 trials" in out for out in outputs)


def _synthetic_search(root: Path, objectives: int) -> None:
    """A search dir with a study of made-up trials: the report without training anything."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from dnnexp.search.study import open_storage

    root.mkdir()
    (root / "multirun.yaml").write_text(
        "task:\n  name: classification\nsearch:\n  n_trials: 12\n  metric: null\n"
        "  storage: null\n  study_name: dnnexp\n"
    )
    directions = ["maximize", "minimize"][:objectives]
    study = optuna.create_study(
        study_name="dnnexp", storage=open_storage(f"journal:{root / 'search.journal'}"),
        directions=directions,
    )  # fmt: skip
    lr = FloatDistribution(1e-4, 1e-1, log=True)
    family = CategoricalDistribution(["mlp", "cnn"])
    for i in range(10):  # the accuracy follows the learning rate; the family does not matter
        params = {"optimizer.lr": 10 ** (-4 + 0.3 * i), "model": ["mlp", "cnn"][i % 2]}
        accuracy = 0.5 + 0.04 * i
        values = [accuracy, 1000.0 * (10 - i) if i % 3 else 50_000.0][:objectives]
        study.add_trial(
            create_trial(
                params=params,
                distributions={"optimizer.lr": lr, "model": family},
                values=values,
                user_attrs={"epochs": 3},
            )  # fmt: skip
        )
    study.add_trial(
        create_trial(
            state=TrialState.FAIL,
            params={"model": "cnn"},
            distributions={"model": family},
            user_attrs={"error": "NaN loss"},
        )  # fmt: skip
    )


@pytest.mark.slow
def test_report_on_a_search_ranks_trials_and_assesses_importance(tmp_path: Path) -> None:
    _synthetic_search(tmp_path / "search", objectives=1)
    proc = run_cli("report", "search", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "11 of 12 trials (10 complete, 1 failed)" in out
    assert "NaN loss" in out and "9 *" in out  # the failed trial's error; the best marked
    import json

    written = json.loads((tmp_path / "search" / "report.json").read_text())
    assert written["best"] == [9] and written["counts"]["fail"] == 1
    importance = written["importance"]
    assert set(importance) == {"optimizer.lr", "model"}
    for evaluator in ("PED-ANOVA", "fANOVA"):  # the learning rate decides, the family does not
        assert importance["optimizer.lr"][evaluator] > importance["model"][evaluator]
    assert (tmp_path / "search" / "search_history.png").stat().st_size > 10_000
    assert "| **9** | complete |" in (tmp_path / "search" / "report.md").read_text()
    assert "error" in (tmp_path / "search" / "report.csv").read_text().splitlines()[0]
    refused = run_cli("report", "search", "--baseline", "x", cwd=tmp_path)
    assert refused.returncode == 2 and "is a search" in refused.stderr


def test_report_on_a_two_objective_search_shows_the_pareto_front(tmp_path: Path) -> None:
    from dnnexp.report import search, search_render

    _synthetic_search(tmp_path / "nas", objectives=2)
    report = search.build(tmp_path / "nas")
    # higher accuracy and fewer parameters: the trials no other beats on both (brute force)
    values = {t.number: t.values for t in report.trials if t.values}
    front = [n for n, (acc, size) in values.items()
             if not any(a >= acc and s <= size and (a, s) != (acc, size)
                        for a, s in values.values())]  # fmt: skip
    assert report.best == sorted(front) == [8, 9]
    written = search_render.write(report, tmp_path / "out")
    assert {p.name for p in written} >= {"pareto_front.png", "search_history.png", "report.md"}
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<table>" in page


@pytest.mark.slow
def test_a_ddp_trial_is_pruned_on_every_rank_at_the_same_epoch(tmp_path: Path) -> None:
    """Rank 0 reports to the pruner and broadcasts its decision: a pruned DDP trial stops on
    both ranks (no hang), the job completes and the trial counts as pruned."""
    proc = run_cli(
        "train",
        "-m",
        "sweep=grid",
        "optimizer.lr=choice(0.01,1e-7)",  # in this order: a good trial, then a hopeless one
        "reg.dropout=choice(0.0)",
        "search.pruner=median",
        "search.prune_startup_trials=1",
        "search.prune_warmup_epochs=0",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=4",
        "trainer.limit_train_batches=4",
        "hydra.sweep.dir=search",
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = _trials(tmp_path / "search")
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED"]
    pruned = summary(tmp_path / "search" / "1")
    assert pruned["search"]["pruned_at_epoch"] == 0 and pruned["epochs"] == 1
    assert (tmp_path / "search" / "1" / "train_ddp_rank_1.log").is_file()
