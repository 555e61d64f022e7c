"""Real processes, real signals: a hung step ends on a second SIGTERM or at the deadline after the first, a
Ctrl+C saves and names the way back, and a stuck DDP rank neither holds the other forever nor outlives it.

A step is hung on purpose by this module itself, imported as a ``plugins`` module: with
``LT_BENCH_TEST_HANG=RANK:EPOCH`` set, rank RANK's training loader never hands out the first batch of
epoch EPOCH (a read that never returns), after ``last.ckpt`` of the epoch before it was written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, cli_command, cli_env

HANG_ENV = "LT_BENCH_TEST_HANG"


def _install_hang(spec: str) -> None:
    from lt_bench.data.memory import TrainLoader

    rank, epoch = (int(v) for v in spec.split(":"))
    if int(os.environ.get("LOCAL_RANK", "0")) != rank:
        return
    batches = TrainLoader.__iter__

    def hanging(self):
        if self.batches.state_dict()["epoch"] >= epoch:
            while True:  # Python signal handlers still run here; the step never ends
                time.sleep(0.05)
        yield from batches(self)

    TrainLoader.__iter__ = hanging


if os.environ.get(HANG_ENV):
    _install_hang(os.environ[HANG_ENV])


pytestmark = pytest.mark.faults

ARGS = [
    "trainer.max_epochs=12",
    "trainer.limit_train_batches=2",
    "dataset.test_per_class=10",
]
HUNG = [*ARGS, "plugins=[tests.faults.test_faults_signals]"]


def start(args: list[str], run_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        cli_command(*args, run_dir=run_dir),
        cwd=ROOT,
        env=cli_env(**(env or {})),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_for_checkpoint(process: subprocess.Popen, run_dir: Path, timeout: float = 200) -> None:
    deadline = time.monotonic() + timeout
    while not (run_dir / "checkpoints" / "last.ckpt").exists():  # renamed into place: complete once seen
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def finish(process: subprocess.Popen, timeout: float) -> tuple[int, str, float]:
    """Exit status, stderr and seconds taken; a process still running after ``timeout`` fails the test."""
    start_time = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"still running {timeout} s later")
    return process.returncode, stderr, time.monotonic() - start_time


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def cleanup():
    started: list[subprocess.Popen] = []
    yield started.append
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def _epoch_of_last(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]


def assert_forced_exit(returncode: int, stderr: str, run_dir: Path, why: str) -> None:
    assert returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    (line,) = [x for x in stderr.splitlines() if x.startswith("lt_bench: error:")]
    assert why in line
    assert f"nothing was saved past {run_dir / 'checkpoints' / 'last.ckpt'}" in line
    assert "Continue with: python -m lt_bench" in line and "ckpt_path=last" in line
    assert _epoch_of_last(run_dir) == 0  # the checkpoint before the hang, intact


def test_a_second_sigterm_ends_a_hung_step(run_dir, cleanup):
    process = start(HUNG, run_dir, {HANG_ENV: "0:1"})
    cleanup(process)
    wait_for_checkpoint(process, run_dir)
    time.sleep(1.0)  # inside the hung read now
    process.send_signal(signal.SIGTERM)
    time.sleep(2.0)
    assert process.poll() is None, "the first SIGTERM waits for the step to end"
    process.send_signal(signal.SIGTERM)
    returncode, stderr, seconds = finish(process, timeout=30)
    print(f"\nsecond SIGTERM to exit: {seconds:.2f} s")
    assert_forced_exit(returncode, stderr, run_dir, "a second SIGTERM ended the run")
    assert seconds < 10


def test_one_sigterm_ends_a_hung_step_at_the_deadline(run_dir, cleanup):
    process = start(HUNG, run_dir, {HANG_ENV: "0:1", "LT_BENCH_STOP_DEADLINE": "3"})
    cleanup(process)
    wait_for_checkpoint(process, run_dir)
    time.sleep(1.0)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    returncode, stderr, _ = finish(process, timeout=60)
    seconds = time.monotonic() - sent
    print(f"\nSIGTERM to exit with a 3 s deadline: {seconds:.2f} s")
    assert_forced_exit(returncode, stderr, run_dir, "had not stopped 3 s after SIGTERM")
    assert 3 <= seconds < 13


def test_sigint_saves_and_says_how_to_continue(run_dir, cleanup):
    process = start(ARGS, run_dir)
    cleanup(process)
    wait_for_checkpoint(process, run_dir)
    process.send_signal(signal.SIGINT)
    returncode, stderr, seconds = finish(process, timeout=60)
    print(f"\nSIGINT to exit: {seconds:.2f} s")
    assert returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    (line,) = [x for x in stderr.splitlines() if x.startswith("lt_bench: error:")]
    assert "stopped by SIGINT at epoch" in line and f"saved {run_dir / 'checkpoints' / 'last.ckpt'}" in line
    assert "Continue with: python -m lt_bench" in line and f"hydra.run.dir={run_dir}" in line


DDP = ["trainer=ddp_cpu", *HUNG]


def _stuck_rank_1(run_dir: Path, env: dict[str, str], cleanup) -> tuple[subprocess.Popen, int]:
    """Two gloo ranks; rank 1 hangs in epoch 1, so rank 0 waits inside a collective (in C, where no
    Python signal handler runs). Returns rank 0 and rank 1's pid."""
    process = start(DDP, run_dir, {HANG_ENV: "1:1", **env})
    cleanup(process)
    wait_for_checkpoint(process, run_dir, timeout=400)
    (rank1,) = children(process.pid)
    time.sleep(1.0)  # rank 0 is in the collective rank 1 never joins
    return process, rank1


def test_a_stuck_ddp_rank_does_not_hold_sigterm(run_dir, cleanup):
    process, rank1 = _stuck_rank_1(run_dir, {"LT_BENCH_STOP_DEADLINE": "3"}, cleanup)
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)  # rank 0 only, as `kill PID` does
    returncode, stderr, _ = finish(process, timeout=60)
    seconds = time.monotonic() - sent
    print(f"\nstuck rank, SIGTERM to rank 0, 3 s deadline: exit after {seconds:.2f} s")
    assert_forced_exit(returncode, stderr, run_dir, "had not stopped 3 s after SIGTERM")
    assert seconds < 13
    time.sleep(0.5)
    assert not alive(rank1), "rank 0 ends the rank it started"


def test_a_stuck_ddp_rank_ends_the_run_at_the_collective_timeout(run_dir, cleanup):
    # 60 s: the rendezvous waits as long, and a rank's start-up on two busy cores takes over 20 s
    process, rank1 = _stuck_rank_1(run_dir, {"LT_BENCH_COLLECTIVE_TIMEOUT": "60"}, cleanup)
    returncode, stderr, seconds = finish(process, timeout=120)
    print(f"\nstuck rank, no signal, 60 s collective timeout: exit after {seconds:.2f} s")
    assert returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr
    (line,) = [x for x in stderr.splitlines() if x.startswith("lt_bench: error:")]
    assert "a DDP rank stopped answering" in line and "LT_BENCH_COLLECTIVE_TIMEOUT" in line
    assert "Continue with: python -m lt_bench" in line
    assert _epoch_of_last(run_dir) == 0
    time.sleep(0.5)
    assert not alive(rank1)
