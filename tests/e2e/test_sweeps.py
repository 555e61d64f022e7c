"""Sweeps: the Optuna search configs and launcher presets compose; a real multirun feeds the report; the
joblib preset runs two jobs at the same time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from lt_bench.config import register, validate
from tests.helpers import CONF, ROOT, cli_command, cli_env, make_config

SEARCHES = {
    "ppw_e0_e1_rho": {"schedule.e0", "schedule.e1", "schedule.rho"},
    "phase_alpha": {"method.alpha"},
    "vs_gamma_tau_nu": {"loss.gamma", "loss.tau", "schedule.delta"},
}


def hydra_config(*overrides: str):
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def search_space(name: str) -> dict:
    """The sweeper's params parsed as Hydra parses them: key -> interval/choice object."""
    params = hydra_config(f"+hparams_search={name}").hydra.sweeper.params
    parser = OverridesParser.create()
    return {key: parser.parse_override(f"{key}={value}").value() for key, value in params.items()}


@pytest.mark.parametrize("name", sorted(SEARCHES))
def test_search_configs_compose_as_maximising_optuna_sweeps(name):
    cfg = hydra_config(f"+hparams_search={name}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == "maximize"
    assert set(sweeper.params) == SEARCHES[name]
    assert sweeper.n_trials >= 10
    # the objective must be a validation figure, never the test set
    assert cfg.dataset.val_fraction > 0
    task = make_config(f"+hparams_search={name}")
    validate(task)


def test_search_configs_select_the_method_they_tune():
    assert make_config("+hparams_search=ppw_e0_e1_rho").schedule.name == "ppw"
    assert make_config("+hparams_search=phase_alpha").method.name == "phase"
    vs = make_config("+hparams_search=vs_gamma_tau_nu")
    assert (vs.method.name, vs.schedule.name, vs.loss.name) == ("vs_tla_adrw", "adrw", "vs")


def test_ppw_ranges_keep_e1_at_or_after_e0_on_every_trial():
    space = search_space("ppw_e0_e1_rho")
    e0, e1 = space["schedule.e0"], space["schedule.e1"]
    assert e0.end <= e1.start
    # the corners of the space are valid runs of the default 30 epochs the ranges are for (a trial that
    # fails validation would stop the study)
    for a, b in ((e0.start, e1.start), (e0.end, e1.end), (e0.end, e1.start)):
        overrides = ("+hparams_search=ppw_e0_e1_rho", f"schedule.e0={int(a)}", f"schedule.e1={int(b)}")
        validate(make_config(*overrides, fast=False))
    assert space["schedule.rho"].start > 0


def test_phase_and_vs_ranges_stay_in_their_valid_domains():
    alpha = search_space("phase_alpha")["method.alpha"]
    assert (alpha.start, alpha.end) == (0.0, 1.0)
    vs = search_space("vs_gamma_tau_nu")
    assert all(vs[k].start >= 0 for k in vs)
    assert vs["loss.tau"].start <= 1.0 <= vs["loss.tau"].end  # the published tau = 1 is inside


def test_joblib_preset_runs_two_jobs_with_the_plugin_schema():
    launcher = hydra_config("hydra/launcher=joblib_cpu").hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert launcher.n_jobs == 2 and launcher.prefer == "processes"


SLURM_KEYS = set(
    """_target_ submitit_folder timeout_min cpus_per_task gpus_per_node tasks_per_node mem_gb nodes name
    stderr_to_stdout partition qos comment constraint exclude gres cpus_per_gpu gpus_per_task mem_per_gpu
    mem_per_cpu account signal_delay_s max_num_timeout additional_parameters array_parallelism
    setup""".split()
)


def test_slurm_preset_has_the_submitit_plugin_keys():
    # hydra-submitit-launcher is not a dependency, so the file is checked as YAML, not composed
    path = CONF / "hydra" / "launcher" / "slurm.yaml"
    text = path.read_text()
    assert "pip install hydra-submitit-launcher" in text
    data = yaml.safe_load(text)
    assert data["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert set(data) == SLURM_KEYS  # unknown keys would reach sbatch as slurm_<key> and fail there
    assert data["submitit_folder"].startswith("${hydra.sweep.dir}")
    assert data["gpus_per_node"] == data["tasks_per_node"] == 1
    assert OmegaConf.create(data).timeout_min > 0


# -- end to end ----------------------------------------------------------------------------------------
def run_multirun(*args: str, sweep_dir: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    command = cli_command(f"hydra.sweep.dir={sweep_dir}", *args, multirun=True)
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=cli_env())


def summaries(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]


@pytest.mark.slow
def test_multirun_then_report_gives_a_row_per_loss(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_multirun("loss=ce,la", "seed=0,1", "trainer.max_epochs=1", sweep_dir=sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(summaries(sweep)) == 4
    report = subprocess.run(
        [sys.executable, "-m", "lt_bench.report", str(sweep), "--metric", "top1,balanced_acc"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    lines = report.stdout.splitlines()
    assert lines[0] == "| loss | n | top1 | balanced_acc |"
    rows = lines[2:4]
    assert rows[0].startswith("| ce | 2 | ") and rows[1].startswith("| la | 2 | ")
    assert all(row.count("±") == 2 for row in rows)
    assert "Wilcoxon" in report.stdout
    assert (sweep / "per_class_vs_count.png").exists()


@pytest.mark.slow
@pytest.mark.heavy  # a multirun of its own, beyond the suite's 10-minute budget (make test-heavy)
def test_joblib_preset_runs_two_jobs_at_the_same_time(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_multirun("hydra/launcher=joblib_cpu", "seed=0,1", "trainer.max_epochs=2", sweep_dir=sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = summaries(sweep)
    assert len(runs) == 2
    (a_start, a_end), (b_start, b_end) = ((r["started_at"], r["finished_at"]) for r in runs)
    # the two training intervals overlap: each started before the other finished
    assert a_start < b_end and b_start < a_end


@pytest.mark.slow
def test_optuna_search_runs_and_records_the_best_trial(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_multirun(
        "+hparams_search=phase_alpha", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1", sweep_dir=sweep
    )
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"method.alpha"}
    runs = summaries(sweep)
    assert len(runs) == 2
    # the value maximised is the one the task returned: the best validation balanced accuracy
    assert best["best_value"] == pytest.approx(max(r["best_val"] for r in runs))


# -- one job's outcome, a re-launched sweep ------------------------------------------------------------
# one epoch of two batches; optimizer.lr=1e30 makes the loss overflow at once
TINY_JOB = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "dataset.test_per_class=10",
            "lr_schedule.warmup_epochs=0"]  # fmt: skip


def _job_files(sweep_dir: Path) -> dict[str, bytes]:
    """The jobs' files, but their logs and locks (which hold the PID of the last process to take them)."""
    jobs = (p for p in sorted(sweep_dir.glob("*/**/*")) if p.is_file())
    return {str(p): p.read_bytes() for p in jobs if p.suffix not in (".log", ".lock")}


@pytest.mark.heavy
def test_a_diverging_job_is_recorded_the_sweep_goes_on_and_a_relaunch_needs_auto_or_overwrite(tmp_path):
    sweep = tmp_path / "sweep"
    jobs = ["optimizer.lr=1e30,0.1", *TINY_JOB]
    result = run_multirun(*jobs, sweep_dir=sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("The sweep goes on.") == 1
    diverged, finished = summaries(sweep)
    assert diverged["status"] == "diverged" and "became" in diverged["reason"] and "test" not in diverged
    assert finished["status"] == "finished" and finished["test"]["balanced_acc"] is not None
    written = _job_files(sweep)

    again = run_multirun(*jobs, sweep_dir=sweep)  # the same sweep launched again into its directory
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "holds the outputs of an earlier run" in again.stderr and "ckpt_path=auto" in again.stderr
    requeued = run_multirun(*jobs, "ckpt_path=auto", sweep_dir=sweep)
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "nothing was run" in requeued.stderr and "holds a finished run, left as it is" in requeued.stderr
    assert _job_files(sweep) == written

    replaced = run_multirun(*jobs, "overwrite=true", "seed=1", sweep_dir=sweep)
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert [(s["status"], s["seed"]) for s in summaries(sweep)] == [("diverged", 1), ("finished", 1)]


@pytest.mark.heavy
def test_an_optuna_search_records_a_diverged_trial_as_failed_and_goes_on(tmp_path):
    search = tmp_path / "conf" / "hparams_search" / "lr_diverges.yaml"
    search.parent.mkdir(parents=True)
    search.write_text(
        "# @package _global_\n"
        "defaults:\n  - override /hydra/sweeper: optuna\n  - override /hydra/sweeper/sampler: grid\n"
        "hydra:\n  sweeper:\n    direction: maximize\n    n_trials: 2\n    n_jobs: 1\n"
        "    params:\n      optimizer.lr: choice(1e30, 0.1)\n"
    )
    sweep = tmp_path / "sweep"
    searchpath = f"hydra.searchpath=[file://{search.parent.parent}]"
    result = run_multirun(searchpath, "+hparams_search=lr_diverges", *TINY_JOB, sweep_dir=sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = summaries(sweep)
    assert sorted(r["status"] for r in runs) == ["diverged", "finished"]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    (finished,) = (r for r in runs if r["status"] == "finished")
    assert best["best_params"] == {"optimizer.lr": 0.1}
    assert best["best_value"] == pytest.approx(finished["test"]["balanced_acc"])
