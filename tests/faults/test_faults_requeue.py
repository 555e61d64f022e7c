"""``kill -9`` at random moments, then the same command again, as a scheduler requeues a job.

Every run must end with the uninterrupted run's figures (test, val, best epoch), leave no debris in its
checkpoint folder (temporary files, best files that are not the selected one), and a finished run
requeued once more must be left as it is. ``make faults`` runs it (``pytest -m faults -s``) and prints a
summary line; each run is tiny (embedded data, 4 epochs of 3 batches, a validation split so that a best
epoch exists).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, cli_command, cli_env, read_summary

pytestmark = pytest.mark.faults

RUNS = 32
PARALLEL = 3  # jobs at a time
JOB = [
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=3",
    "dataset.test_per_class=10",
    "dataset.val_fraction=0.2",
    "optimizer.lr=0.8",  # the best epoch (1) replaces epoch 0's and is not the last: a lost selection shows
    "lr_schedule.warmup_epochs=1",
    "lr_schedule.milestones=[3]",
    "lr_schedule.factors=[0.1]",
    "ckpt_path=auto",
]
ENV = cli_env(OMP_NUM_THREADS="1")


def _start(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cli_command(*JOB, run_dir=run_dir),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(process: subprocess.Popen, timeout: float = 300) -> None:
    _, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]


def _kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def _in_a_checkpoint_write(process: subprocess.Popen, folder: Path, deadline: float) -> bool:
    """Wait until a checkpoint's temporary file exists (a write is under way); False if none appears."""
    while time.monotonic() < deadline and process.poll() is None:
        if any(folder.glob(".*.ckpt.*.tmp")):
            return True
        time.sleep(0.001)
    return False


def _figures(run_dir: Path) -> dict[str, Any]:
    summary = read_summary(run_dir)
    return {k: summary.get(k) for k in ("test", "val", "best_epoch", "best_val")}


def _debris(run_dir: Path, best_epoch: int) -> list[str]:
    folder = run_dir / "checkpoints"
    expected = {"last.ckpt", f"best-epoch={best_epoch:03d}.ckpt"}
    left = [p.name for p in folder.iterdir() if p.name not in expected]
    return left + [str(p.relative_to(run_dir)) for p in run_dir.rglob("*.tmp")]


def _requeued_until_finished(run_dir: Path, run: int, duration: float) -> tuple[int, int]:
    """Start the job, ``kill -9`` it (once or twice: at a random moment, or, every third run, while a
    checkpoint is being written), then requeue it until it finishes; returns (kills, kills in a write)."""
    rng = random.Random(run)
    kills = in_writes = 0
    for _ in range(rng.choice([1, 1, 2])):
        if (run_dir / "summary.json").exists():
            break
        process = _start(run_dir)
        writing = run % 3 == 2 and _in_a_checkpoint_write(
            process, run_dir / "checkpoints", time.monotonic() + 2 * duration
        )
        if not writing:
            time.sleep(rng.uniform(0.2, duration))
        if process.poll() is None:
            _kill(process)
            kills, in_writes = kills + 1, in_writes + writing
        else:
            process.communicate()
    while not (run_dir / "summary.json").exists():  # the requeue that is not killed
        _finish(_start(run_dir))
    return kills, in_writes


def test_kill_9_at_random_moments_then_requeue_ends_with_the_uninterrupted_figures(tmp_path):
    started = time.monotonic()
    reference_dir = tmp_path / "reference"
    _finish(_start(reference_dir))
    reference, duration = _figures(reference_dir), time.monotonic() - started

    run_dirs = [tmp_path / f"run{run:02d}" for run in range(RUNS)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        counts = list(pool.map(_requeued_until_finished, run_dirs, range(RUNS), [duration] * RUNS))
    kills, in_writes = (sum(c[i] for c in counts) for i in (0, 1))
    mismatches = [d.name for d in run_dirs if _figures(d) != reference]
    debris = [f"{d.name}/{name}" for d in run_dirs for name in _debris(d, reference["best_epoch"])]

    # a finished run requeued once more: left as it is
    finished = run_dirs[0] / "summary.json"
    before = finished.read_bytes()
    requeued = _start(run_dirs[0])
    stderr = requeued.communicate(timeout=300)[1]
    rewritten = requeued.returncode != 0 or finished.read_bytes() != before

    print(
        f"\nrequeue faults: runs={RUNS} kills={kills} (in a checkpoint write: {in_writes}) "
        f"mismatches={len(mismatches)} debris={len(debris)} rewritten={int(rewritten)} "
        f"reference best_epoch={reference['best_epoch']} ({time.monotonic() - started:.0f} s)"
    )
    assert kills >= 30
    assert mismatches == [] and debris == [], (mismatches, debris)
    assert not rewritten, stderr[-2000:]


def test_a_bad_checkpoint_on_the_command_line_is_one_line_naming_the_file_and_the_fix(tmp_path):
    trained = tmp_path / "trained"
    _finish(_start(trained))
    last = trained / "checkpoints" / "last.ckpt"
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "summary.ckpt").write_text('{"test": {}}')
    cases = {
        "empty": ([f"ckpt_path={tmp_path / 'empty.ckpt'}"], "empty.ckpt is an empty file"),
        "json": ([f"ckpt_path={tmp_path / 'summary.ckpt'}"], "summary.ckpt is JSON text"),
        "directory": ([f"ckpt_path={trained}"], "is a directory; pass the checkpoint file"),
        "head": ([f"ckpt_path={last}", "loss.head=cosine"], "was trained with loss.head=linear (this run"),
        "epochs": (
            [f"ckpt_path={last}", "trainer.max_epochs=2", "lr_schedule.milestones=[1]"],
            "max_epochs=4 or",
        ),
    }
    for name, (args, expected) in cases.items():
        command = cli_command(*JOB, *args, run_dir=tmp_path / name)
        done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        errors = [line for line in done.stderr.splitlines() if line.startswith("lt_bench: error:")]
        print(f"\n{name}: exit {done.returncode}: {errors}")
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert len(errors) == 1 and expected in errors[0]
