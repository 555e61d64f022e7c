"""docs/sweeps.md's Optuna commands, run as written (shortened: few epochs, two trials), and a search whose
first trial lt_bench refuses: the trial is recorded as failed and the search goes on to its end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

SHORT = ["trainer.enable_progress_bar=false", "print_table=false", "trainer.accelerator=cpu",
         "hydra.sweeper.n_trials=2"]  # fmt: skip


def lt_bench(
    *args: str, cwd: Path, timeout: float = 600, module: str = "lt_bench"
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def jobs(sweep: Path) -> list[tuple[list[str], dict | None]]:
    """Each trial's overrides and summary (None: refused before it wrote one), in job order."""
    out = []
    for job in sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        summary = job / "summary.json"
        overrides = job / ".hydra" / "overrides.yaml"
        out.append((yaml.safe_load(overrides.read_text()) if overrides.is_file() else [],
                    json.loads(summary.read_text()) if summary.is_file() else None))  # fmt: skip
    return out


def test_the_documented_phase_alpha_search_and_its_report(tmp_path):
    # docs: python -m lt_bench --multirun +hparams_search=phase_alpha hydra.sweep.dir=multirun/phase_alpha
    result = lt_bench("--multirun", "+hparams_search=phase_alpha", "hydra.sweep.dir=multirun/phase_alpha",
                      *SHORT, "trainer.max_epochs=2", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "multirun" / "phase_alpha"
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"method.alpha"}
    assert [s["status"] for _, s in jobs(sweep)] == ["finished", "finished"]
    # docs: python -m lt_bench.report multirun/phase_alpha --split val
    report = lt_bench("multirun/phase_alpha", "--split", "val", cwd=tmp_path, module="lt_bench.report")
    assert report.returncode == 0, report.stderr[-3000:]
    assert "method.alpha" in report.stdout


def test_the_documented_ppw_search_on_two_workers_with_ranges_given_on_the_command_line(tmp_path):
    # docs: python -m lt_bench --multirun +hparams_search=ppw_e0_e1_rho hydra/launcher=joblib_cpu
    #       ... 'schedule.e0=int(interval(60,120))' 'schedule.e1=int(interval(120,180))' (another run length)
    result = lt_bench(
        "--multirun", "+hparams_search=ppw_e0_e1_rho", "hydra/launcher=joblib_cpu",
        "schedule.e0=int(interval(1,1))", "schedule.e1=int(interval(4,4))", "trainer.max_epochs=6",
        "trainer.limit_train_batches=2", "hydra.sweep.dir=sweep", *SHORT, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    trials = jobs(tmp_path / "sweep")
    assert len(trials) == 2 and all(s is not None and s["status"] == "finished" for _, s in trials)
    for overrides, summary in trials:  # the command line's ranges replaced the search file's
        assert {"schedule.e0=1", "schedule.e1=4"} <= set(overrides)
        assert (summary["config"]["schedule"]["e0"], summary["config"]["schedule"]["e1"]) == (1, 4)
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert (best["best_params"]["schedule.e0"], best["best_params"]["schedule.e1"]) == (1, 4)


def test_sweeping_over_hydras_own_params_is_one_line_naming_the_form_that_works(tmp_path):
    result = lt_bench("--multirun", "+hparams_search=ppw_e0_e1_rho",
                      "hydra.sweeper.params.schedule.e0=int(interval(60,120))", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "give the search range as the parameter itself: 'schedule.e0=int(interval(60,120))'" in line


SEARCH = """# @package _global_
defaults:
  - override /schedule: ppw
  - override /hydra/sweeper: optuna
  - override /hydra/sweeper/sampler: tpe
hydra:
  sweeper:
    direction: maximize
    n_trials: 2
    n_jobs: 1
    sampler:
      seed: 10   # TPE's first two draws from choice(5, 0) with this seed: 5, then 0
    params:
      schedule.e0: choice(5, 0)
"""


def test_a_search_whose_first_trial_is_refused_records_it_as_failed_and_finishes(tmp_path):
    search = tmp_path / "conf" / "hparams_search" / "first_refused.yaml"
    search.parent.mkdir(parents=True)
    search.write_text(SEARCH)
    # 2 epochs: e1 = 80% of the run = 1, so schedule.e0=5 is refused ("schedule.e1 (1) must be >= ...")
    result = lt_bench(
        "--multirun", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "+hparams_search=first_refused",
        "trainer.max_epochs=2", "trainer.limit_train_batches=2", "hydra.sweep.dir=sweep", *SHORT,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    refusals = [x for x in result.stderr.splitlines() if x.startswith("lt_bench: error:")]
    assert len(refusals) == 1 and "schedule.e0" in refusals[0]
    assert refusals[0].endswith("The trial is recorded as failed; the search goes on.")
    (first, first_summary), (second, second_summary) = jobs(tmp_path / "sweep")
    assert first_summary is None  # the first trial: refused before it wrote anything of a run
    assert second_summary["status"] == "finished" and second_summary["config"]["schedule"]["e0"] == 0
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_params"] == {"schedule.e0": 0}
    assert best["best_value"] == pytest.approx(second_summary["test"]["balanced_acc"])
