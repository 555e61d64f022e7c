"""The run directory: a lock per run, no fresh run over an earlier one, finished runs left as they are, a
diverged run recorded, and ``.hydra/`` written only once a command is accepted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lt_bench import rundir
from lt_bench.config import register
from lt_bench.errors import ConfigError, TrainingDiverged
from lt_bench.train import train
from tests.helpers import CONF, ROOT, cli_command, cli_env, make_config, read_summary

# the tiniest real run: one epoch of two batches, 10 test images per class, a validation split
TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "dataset.test_per_class=10"]


def _config(*overrides: str):
    return make_config(*TINY, *overrides)


def _files(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the run but the log and the lock, with its bytes and modification time."""
    return {
        str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.suffix != ".log" and p.name != rundir.LOCK
    }


def _plant(run_dir: Path, *names: str) -> None:
    for name in names:
        path = run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("earlier")


# -- the lock -----------------------------------------------------------------------------------------
def _holder(run_dir: Path) -> subprocess.Popen:
    """Another process that takes the run directory's lock (as lt_bench.rundir does) and keeps it."""
    program = (
        "import fcntl, os, time\n"
        f"fd = os.open({str(run_dir / rundir.LOCK)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode())\n"
        "print('locked', flush=True); time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def _lock_is_free(run_dir: Path) -> bool:
    program = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(run_dir / rundir.LOCK)!r}, os.O_RDWR)\n"
        "try: fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except OSError: sys.exit(1)\n"
    )
    return subprocess.run([sys.executable, "-c", program]).returncode == 0


def test_a_run_in_a_locked_directory_is_refused_naming_the_holder_until_it_is_killed(run_dir):
    run_dir.mkdir()
    holder = _holder(run_dir)
    try:
        with pytest.raises(rundir.RunDirInUse, match=rf"in use by another lt_bench run \(PID {holder.pid}\)"):
            with rundir.locked(run_dir):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with rundir.locked(run_dir):  # the kernel released the dead holder's lock; the file stays
        assert not _lock_is_free(run_dir)
    assert _lock_is_free(run_dir)
    assert (run_dir / rundir.LOCK).read_text().strip() == str(os.getpid())


def test_a_process_forked_by_the_holder_does_not_keep_the_lock(run_dir):
    with rundir.locked(run_dir):
        child = os.fork()  # as a DataLoader worker is: it outlives a killed parent by seconds
        if child == 0:  # holds what the parent held: the open file, and with flock the lock too
            time.sleep(60)
            os._exit(0)
    try:
        assert _lock_is_free(run_dir)
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


# -- never over an earlier run ------------------------------------------------------------------------
EARLIER = ("summary.json", "metrics.csv", "checkpoints/last.ckpt", "checkpoints/best-epoch=099.ckpt",
           "confusion_test.npy", ".hydra/config.yaml", ".summary.json.x1.tmp")  # fmt: skip
NOT_OUTPUTS = ("lt_bench.log", "runner.log", "notes.txt")


def test_a_fresh_run_over_an_earlier_runs_outputs_is_refused_naming_both_ways_out(run_dir):
    _plant(run_dir, *EARLIER)
    for resume_from in (None, "/elsewhere/checkpoints/last.ckpt"):  # starting over, here or from elsewhere
        with pytest.raises(
            ConfigError, match=r"earlier run \(summary.json, checkpoints.*ckpt_path=auto.*overwrite=true"
        ):
            rundir.files_to_replace(run_dir, resume_from, resume_from, overwrite=False)
    assert rundir.files_to_replace(run_dir / "new", None, None, overwrite=False) == []


def test_overwrite_removes_every_output_of_the_earlier_run_and_nothing_else(run_dir):
    _plant(run_dir, *EARLIER, *NOT_OUTPUTS)
    rundir.remove(rundir.files_to_replace(run_dir, None, None, overwrite=True))
    assert sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")) == sorted(NOT_OUTPUTS)


def test_overwrite_is_refused_while_an_evaluation_writes_into_the_runs_eval_folder(run_dir):
    _plant(run_dir, "summary.json")
    evaluation = run_dir / rundir.EVAL_DIR / "test-2026-12-05_18-00-00"
    evaluation.mkdir(parents=True)
    holder = _holder(evaluation)  # another process: a running `python -m lt_bench.eval`
    try:
        earlier = rundir.files_to_replace(run_dir, None, None, overwrite=True)
        with pytest.raises(ConfigError, match="in use by a running evaluation .* would remove"):
            rundir.refuse_removing_a_running_evaluation(run_dir, earlier)
    finally:
        holder.kill()
        holder.wait()
    rundir.refuse_removing_a_running_evaluation(run_dir, earlier)  # ended: nothing holds it any more
    assert evaluation.is_dir()  # refusing removed nothing


def test_continuing_keeps_everything_and_auto_without_a_checkpoint_starts_over(run_dir):
    _plant(run_dir, *EARLIER)
    last = str(run_dir / "checkpoints" / "last.ckpt")
    assert rundir.files_to_replace(run_dir, last, "auto", overwrite=False) == []
    assert rundir.files_to_replace(run_dir, last, "last", overwrite=False) == []
    (run_dir / "checkpoints" / "last.ckpt").unlink()  # a requeued job killed before its first checkpoint
    stale = rundir.files_to_replace(run_dir, None, "auto", overwrite=False)
    assert {run_dir / "summary.json", run_dir / "checkpoints"} <= set(stale)  # best-epoch=099.ckpt with it


@pytest.mark.parametrize("ckpt_path", ["auto", "last", "RUN/checkpoints/best-epoch=003.ckpt"])
def test_overwrite_with_a_ckpt_path_that_continues_the_run_is_refused(ckpt_path, run_dir):
    ckpt_path = ckpt_path.replace("RUN", str(run_dir))
    with pytest.raises(
        ConfigError, match="overwrite=true starts the run .* over, but ckpt_path=.* continues it"
    ):
        rundir.refuse_overwrite_of_a_continued_run(ckpt_path, True, run_dir)
    rundir.refuse_overwrite_of_a_continued_run("/elsewhere/last.ckpt", True, run_dir)


# -- finished runs ------------------------------------------------------------------------------------
def test_a_finished_run_is_recognised_only_by_a_command_that_continues_it(run_dir):
    cfg = _config("ckpt_path=auto")
    summary = {"status": "finished", "best_val": 0.5, "config": OmegaConf.to_container(cfg, resolve=True)}
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps(summary))
    assert rundir.finished_summary(cfg, run_dir) == summary
    assert rundir.finished_summary(_config(), run_dir) is None  # a fresh run: the guard's to refuse
    with pytest.raises(
        ConfigError, match=r"finished run with other settings \(seed: 0 -> 1\).*ckpt_path=.*last"
    ):
        rundir.finished_summary(_config("ckpt_path=auto", "seed=1"), run_dir)


def test_a_finished_runs_outcome_is_its_objective_or_its_divergence(run_dir, capsys):
    assert rundir.finished_outcome({"best_val": 0.25}, run_dir) == 0.25
    assert capsys.readouterr().err.count("\n") == 1  # one line: finished, where its summary is
    with pytest.raises(
        TrainingDiverged, match="loss became nan.*recorded in .*summary.json; nothing was run"
    ):
        rundir.finished_outcome({"status": "diverged", "reason": "the ce loss became nan"}, run_dir)


def test_a_finished_run_is_left_as_it_is_by_a_requeue_and_replaced_only_with_overwrite(
    run_dir, capsys, fast_plots
):
    first = train(_config("dataset.val_fraction=0.2"), run_dir)
    _plant(run_dir, "checkpoints/best-epoch=099.ckpt")  # as if from an earlier run: overwrite must remove it
    before = _files(run_dir)
    capsys.readouterr()
    assert train(_config("dataset.val_fraction=0.2", "ckpt_path=auto"), run_dir) == first
    assert train(_config("dataset.val_fraction=0.2", "ckpt_path=last"), run_dir) == first
    err = capsys.readouterr().err
    assert err.count("holds a finished run, left as it is") == 2 and str(run_dir / "summary.json") in err
    with pytest.raises(ConfigError, match="ckpt_path=auto.*overwrite=true"):
        train(_config("dataset.val_fraction=0.2", "seed=1"), run_dir)
    assert _files(run_dir) == before  # summary.json, metrics.csv, checkpoints: same bytes, same times
    train(_config("seed=1", "overwrite=true"), run_dir)
    assert read_summary(run_dir)["seed"] == 1
    assert not (run_dir / "checkpoints" / "best-epoch=099.ckpt").exists()


def test_a_diverged_run_is_recorded_and_its_requeue_runs_nothing(run_dir, fast_plots):
    diverging = ["optimizer.lr=1e30", "lr_schedule.warmup_epochs=0", "ckpt_path=auto"]
    with pytest.raises(TrainingDiverged) as first:
        train(_config(*diverging), run_dir)
    summary = read_summary(run_dir)
    assert summary["status"] == "diverged" and summary["reason"] == str(first.value)
    assert "test" not in summary and summary["config"]["optimizer"]["lr"] == 1e30
    before = _files(run_dir)
    with pytest.raises(TrainingDiverged, match="nothing was run"):
        train(_config(*diverging), run_dir)
    assert _files(run_dir) == before


# -- .hydra/ ------------------------------------------------------------------------------------------
def test_hydra_writes_no_output_files_before_lt_bench_has_checked_the_command():
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    assert cfg.hydra.output_subdir is None


@pytest.mark.faults
def test_a_rejected_command_leaves_the_runs_hydra_files_as_they_are(run_dir):
    from tests.helpers import run_cli

    assert run_cli("trainer.max_epochs=1", "trainer.limit_train_batches=2", run_dir=run_dir).returncode == 0
    written = {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()}
    assert set(written) == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    assert "trainer.max_epochs=1" in written["overrides.yaml"]
    for rejected in (["dataset.imbalance_factor=-5"], ["seed=3"], ["ckpt_path=auto", "seed=3"]):
        result = run_cli("trainer.max_epochs=1", "trainer.limit_train_batches=2", *rejected, run_dir=run_dir)
        assert result.returncode == 2 and result.stderr.count("lt_bench: error:") == 1, result.stderr
        assert {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()} == written


@pytest.mark.faults
def test_a_second_run_started_in_a_busy_directory_is_refused_and_the_first_goes_on(run_dir):
    args = ["trainer.max_epochs=10000", "trainer.limit_train_batches=2", "dataset.test_per_class=10"]
    command, env = cli_command(*args, run_dir=run_dir), cli_env()
    first = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        while not (run_dir / "checkpoints" / "last.ckpt").exists():
            assert first.poll() is None, first.communicate()[1][-2000:]
        for again in ([], ["ckpt_path=auto"]):
            second = subprocess.run([*command, *again], cwd=ROOT, env=env, capture_output=True, text=True)
            assert second.returncode == 2
            assert second.stderr.strip().splitlines() == [
                f"lt_bench: error: {run_dir} is in use by another lt_bench run (PID {first.pid}); wait for "
                "it to end, or give this run a directory of its own (hydra.run.dir=NEW_DIR)"
            ]
        assert first.poll() is None  # untouched: still training
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 143, first.communicate()[1][-2000:]
    finally:
        if first.poll() is None:
            first.kill()
