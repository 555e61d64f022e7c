"""Real processes, real signals, around testing: ``python -m lt_bench.eval`` stops on SIGTERM / SIGINT with
one line and 143 / 130, writing no summary; GNU ``timeout``'s one SIGTERM, delivered to the process and
again to its group, counts once; a training run sent SIGTERM in its final test exits 143, writes no
summary.json and names the way back.

A test step is held on purpose by this module itself, imported as a ``plugins`` module: with
``LT_BENCH_TEST_HOLD=MARKER`` set, the first ``test_step`` touches MARKER and waits until a stop signal
has been received (lt_bench.eval's handler raises inside the wait; training's stop flag ends it), so the
signal always lands inside a test, on its only batch, and the test file needs no sleep of a guessed
length. All run with ``make faults``; the suite's quick case (SIGTERM to the process and its group, as
``timeout`` does) is in tests/e2e/test_eval_guarantees.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import FAST, ROOT

HOLD_ENV = "LT_BENCH_TEST_HOLD"
PLUGIN = "plugins=[tests.faults.test_eval_signals]"


def _install_hold(marker: str) -> None:
    from lt_bench.methods.base import LongTailModule

    test_step = LongTailModule.test_step

    def held(self, batch, batch_idx):
        Path(marker).touch()
        while not any(getattr(c, "requested", False) for c in self.trainer.callbacks):
            time.sleep(0.02)  # Python signal handlers run here
        return test_step(self, batch, batch_idx)

    LongTailModule.test_step = held


if os.environ.get(HOLD_ENV):
    _install_hold(os.environ[HOLD_ENV])


ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny training run, shared by the evaluations of this module."""
    run_dir = tmp_path_factory.mktemp("signals") / "run"
    command = [sys.executable, "-m", "lt_bench", "debug=tiny", "dataset.test_per_class=20",
               f"hydra.run.dir={run_dir}"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def start(command: list[str], marker: Path, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", *command, PLUGIN],
        cwd=ROOT,
        env={**ENV, HOLD_ENV: str(marker)},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a process group of its own, as a job under `timeout` or a scheduler
    )


def wait_for(marker: Path, process: subprocess.Popen, timeout: float = 200) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the test step was never reached"
        time.sleep(0.05)


def finish(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"still running {timeout} s after the signal")
    return process.returncode, stderr


def signal_when_held(
    process: subprocess.Popen, marker: Path, signum: int = signal.SIGTERM, group_too: bool = False
) -> tuple[int, str]:
    """Wait until ``process`` holds at the marked step, send it ``signum`` (and, with ``group_too``, its
    process group the same signal microseconds later, as GNU ``timeout`` does); its status and stderr. A
    process that does not end is killed with its group."""
    try:
        wait_for(marker, process)
        process.send_signal(signum)
        if group_too:
            os.killpg(process.pid, signum)
        return finish(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [x for x in stderr.splitlines() if x.startswith("lt_bench: error:")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def eval_command(trained: Path, out: Path) -> list[str]:
    return ["lt_bench.eval", f"ckpt={trained}", f"hydra.run.dir={out}"]


def assert_stopped_evaluation(code: int, stderr: str, out: Path, name: str, status: int) -> str:
    assert code == status, stderr[-3000:]
    line = one_error_line(stderr)
    assert line.startswith(f"lt_bench: error: stopped by {name} during the evaluation; "), line
    assert f"no summary.json was written in {out}" in line
    assert not (out / "summary.json").exists()
    assert not list(out.glob(".*.tmp")) and not (out / ".hydra").exists()  # nothing half-written
    return line


@pytest.mark.faults  # the suite's quick case is tests/e2e/test_eval_guarantees.py's, on its shared run
def test_eval_sigterm_to_the_process_and_its_group_stops_it_once_with_143(trained, tmp_path):
    """What `timeout -s TERM` does: the signal to the command, then to its process group."""
    out, marker = tmp_path / "eval", tmp_path / "held"
    process = start(eval_command(trained, out), marker)
    code, stderr = signal_when_held(process, marker, group_too=True)  # the same signal twice
    line = assert_stopped_evaluation(code, stderr, out, "SIGTERM", 143)
    print(f"\n{line}")
    assert "a second SIGTERM" not in stderr


@pytest.mark.faults
@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs GNU timeout")
def test_eval_under_gnu_timeout_stops_with_one_line_and_143(trained, tmp_path):
    out, marker = tmp_path / "eval", tmp_path / "held"
    # a limit past the start-up (imports, data, model; slow on 2 busy cores): the test step is held
    # until the signal comes, so the limit only has to be later than that
    limit = 40
    prefix = ("timeout", "--preserve-status", "-s", "TERM", str(limit))
    started = time.monotonic()
    process = start(eval_command(trained, out), marker, prefix)
    try:
        wait_for(marker, process, timeout=limit)
        code, stderr = finish(process, timeout=limit + 30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    line = assert_stopped_evaluation(code, stderr, out, "SIGTERM", 143)
    print(f"\nafter {time.monotonic() - started:.1f} s under timeout {limit}: {line}")
    assert "a second SIGTERM" not in stderr


@pytest.mark.faults
def test_eval_sigint_stops_it_with_one_line_and_130(trained, tmp_path):
    out, marker = tmp_path / "eval", tmp_path / "held"
    process = start(eval_command(trained, out), marker)
    code, stderr = signal_when_held(process, marker, signal.SIGINT)
    line = assert_stopped_evaluation(code, stderr, out, "SIGINT", 130)
    print(f"\n{line}")


@pytest.mark.faults
def test_training_sigterm_in_the_final_test_exits_143_without_a_summary(tmp_path):
    """The test set is one batch: Lightning's own check (before a batch that is not the last) never fires,
    and a second trainer.test() would clear its flag. Sent twice, as `timeout` sends it: counted once."""
    run_dir, marker = tmp_path / "run", tmp_path / "held"
    command = ["lt_bench", *FAST, "dataset.test_per_class=20", f"hydra.run.dir={run_dir}"]
    process = start(command, marker)
    code, stderr = signal_when_held(process, marker, group_too=True)
    assert code == 143, stderr[-3000:]
    line = one_error_line(stderr)
    print(f"\n{line}")
    assert line.startswith("lt_bench: error: stopped by SIGTERM in the test stage, after 2 epochs"), line
    last = run_dir / "checkpoints" / "last.ckpt"
    assert f"nothing saved while in the test stage; {last} holds the last completed epoch" in line
    assert f"ckpt_path=last hydra.run.dir={run_dir}" in line
    assert not (run_dir / "summary.json").exists() and last.is_file()
    # the printed command finishes the run: nothing left to train, the tests run, the summary is written
    resumed = subprocess.run(
        [sys.executable, "-m", "lt_bench", *FAST, "dataset.test_per_class=20", "ckpt_path=last",
         f"hydra.run.dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
