"""Stop signals, the collective timeout and write failures, in-process: what the fault tests
(tests/faults/test_faults_signals.py, ``make faults``) show with real processes, piece by piece."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from datetime import timedelta

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import OmegaConf

from lt_bench.distributed import TIMEOUT_ENV, collective_timeout, lost_rank, seconds_from_env, strategy_of
from lt_bench.errors import (
    ConfigError,
    RunInterrupted,
    explained_write_errors,
    one_line_errors,
    write_failure,
)
from lt_bench.signals import DEADLINE_ENV, StopOnSigterm, exit_code_of


# -- settings ------------------------------------------------------------------------------------------
def test_seconds_come_from_the_environment_or_the_default():
    assert seconds_from_env({}, "X", 5.0) == 5.0
    assert seconds_from_env({"X": ""}, "X", 5.0) == 5.0
    assert seconds_from_env({"X": "0.5"}, "X", 5.0) == 0.5
    for bad in ("0", "-1", "inf", "nan", "soon"):
        with pytest.raises(ConfigError, match=f"X='{bad}' must be a positive number of seconds"):
            seconds_from_env({"X": bad}, "X", 5.0)


def test_exit_codes_are_what_a_shell_reports_for_the_signal():
    assert exit_code_of(signal.SIGTERM) == 143 and exit_code_of(signal.SIGINT) == 130
    assert RunInterrupted("x").exit_code == 143 and RunInterrupted("x", exit_code=130).exit_code == 130


# -- DDP -----------------------------------------------------------------------------------------------
def test_every_ddp_strategy_gets_the_collective_timeout_and_others_pass_through():
    env = {TIMEOUT_ENV: "7"}
    ddp = strategy_of(OmegaConf.create({"strategy": "ddp"}), env)
    assert isinstance(ddp, DDPStrategy) and ddp._timeout == timedelta(seconds=7)
    spawn = strategy_of(OmegaConf.create({"strategy": "ddp_spawn_find_unused_parameters_true"}), env)
    assert spawn._start_method == "spawn" and spawn._ddp_kwargs == {"find_unused_parameters": True}
    assert spawn._timeout == timedelta(seconds=7)
    for name in ("auto", "fsdp", "single_device", "bogus"):
        assert strategy_of(OmegaConf.create({"strategy": name}), env) == name
    assert collective_timeout({}) == 600.0  # a stuck rank costs minutes, not Lightning's default 30


def test_a_lost_rank_is_recognised_by_what_gloo_raises():
    timeout = RuntimeError(
        "[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 3000ms for recv "
        "operation to complete\nmore"
    )
    assert lost_rank(timeout, world_size=2).endswith(
        "Timed out waiting 3000ms for recv operation to complete"
    )
    assert lost_rank(RuntimeError("[pair.cc:598] Connection closed by peer [127.0.0.1]:1"), 2)
    assert lost_rank(timeout, world_size=1) is None
    assert lost_rank(RuntimeError("CUDA out of memory"), 2) is None


# -- the signal watch ----------------------------------------------------------------------------------
def _wait_until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def saver(tmp_path, monkeypatch):
    """A StopOnSigterm whose forced exit records its reason instead of ending the test process."""
    stop = StopOnSigterm(tmp_path / "last.ckpt")
    stop.forced: list[str] = []
    stop.forced_event = threading.Event()

    def record(why: str, resume: str) -> None:
        stop.forced.append(why)
        stop.forced_event.set()

    monkeypatch.setattr(stop, "_force_exit", record)
    return stop


def test_a_second_stop_signal_forces_the_exit(saver, monkeypatch):
    monkeypatch.delenv(DEADLINE_ENV, raising=False)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with saver.watching("python -m lt_bench ckpt_path=last"):
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_until(lambda: saver._deadline is not None)  # the watcher thread saw it
        assert saver.requested and saver.signum == signal.SIGTERM and not saver.forced
        os.kill(os.getpid(), signal.SIGINT)  # a Ctrl+C counts as the second: no KeyboardInterrupt
        assert saver.forced_event.wait(5)
    assert saver.forced == ["a second SIGINT ended the run before it could stop at a step"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert signal.set_wakeup_fd(-1) == -1  # restored: nothing left pointing at the closed pipe


def test_one_stop_signal_forces_the_exit_at_the_deadline(saver, monkeypatch):
    monkeypatch.setenv(DEADLINE_ENV, "0.3")
    with saver.watching("cmd"):
        start = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)
        assert saver.forced_event.wait(5)
        assert time.monotonic() - start >= 0.25
    assert saver.signum == signal.SIGINT
    assert saver.forced == [f"the run had not stopped 0.3 s after SIGINT (a step that does not end; "
                            f"{DEADLINE_ENV} sets this wait)"]  # fmt: skip


def test_a_stop_that_happens_in_time_cancels_the_deadline(saver, monkeypatch):
    monkeypatch.setenv(DEADLINE_ENV, "0.3")
    with saver.watching("cmd"):
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_until(lambda: saver._deadline is not None)
    time.sleep(0.5)
    assert not saver.forced


def test_the_forced_exit_says_what_is_kept_and_how_to_continue(tmp_path, monkeypatch, capfd):
    stop = StopOnSigterm(tmp_path / "last.ckpt")
    stop.path.write_bytes(b"an earlier checkpoint")
    stop.signum = signal.SIGINT

    def exit_(code: int):
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", exit_)
    with pytest.raises(SystemExit) as exited:
        stop._force_exit("WHY", "python -m lt_bench ckpt_path=last")
    assert exited.value.code == 130
    assert capfd.readouterr().err == (
        f"lt_bench: error: WHY; nothing was saved past {stop.path}. "
        "Continue with: python -m lt_bench ckpt_path=last\n"
    )


# -- write failures ------------------------------------------------------------------------------------
def torch_save_to_a_full_device() -> BaseException:
    """The real error of ``torch.save`` on a full device (/dev/full fails every write with ENOSPC)."""
    try:
        with open("/dev/full", "wb", buffering=0) as f:
            torch.save({"w": torch.zeros(1000)}, f)
    except (OSError, RuntimeError) as err:
        return err
    raise AssertionError("/dev/full accepted the write")


FULL_DISK_TEXT = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_device_is_named_whatever_torch_raises(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    for err in (torch_save_to_a_full_device(), RuntimeError(FULL_DISK_TEXT), OSError(errno.EDQUOT, "quota")):
        failure = write_failure(err, path)
        assert failure is not None and str(failure).startswith(f"no space left on device: {path} ")
    with pytest.raises(type(failure), match=f"no space left on device: {path}"):
        with explained_write_errors(path):
            raise RuntimeError(FULL_DISK_TEXT)
    assert write_failure(RuntimeError("CUDA out of memory"), path) is None
    assert write_failure(OSError(errno.ENOENT, "missing"), path) is None


def test_one_line_errors_turn_write_failures_and_ctrl_c_into_one_line(capsys):
    cases = [
        (OSError(errno.ENOSPC, "No space left on device", "/runs/a/summary.json"), 1,
         "lt_bench: error: no space left on device: /runs/a/summary.json "),
        (OSError(errno.EROFS, "Read-only file system", "/runs/a"), 1,
         "lt_bench: error: cannot write: /runs/a (Read-only file system); choose a writable hydra.run.dir"),
        (RuntimeError(FULL_DISK_TEXT), 1, "lt_bench: error: no space left on device "),
        (KeyboardInterrupt(), 130, "lt_bench: error: interrupted by SIGINT (Ctrl+C) outside training"),
    ]  # fmt: skip
    for err, code, start in cases:
        with pytest.raises(SystemExit) as exited, one_line_errors():
            raise err
        assert exited.value.code == code
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(start), line
    with pytest.raises(RuntimeError, match="CUDA"), one_line_errors():
        raise RuntimeError("CUDA out of memory")


def test_an_output_dir_that_cannot_be_written_is_refused_in_one_line(tmp_path, capsys):
    from lt_bench.errors import WritableOutputDir

    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a folder under a file cannot be made, whoever runs the test (root included)
    config = OmegaConf.create(
        {"hydra": {"run": {"dir": str(blocker / "run")}, "sweep": {"dir": str(blocker)}}}
    )
    for start, key in (
        (WritableOutputDir().on_run_start, "run"),
        (WritableOutputDir().on_multirun_start, "sweep"),
    ):
        with pytest.raises(SystemExit) as exited:
            start(config)
        assert exited.value.code == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"lt_bench: error: cannot write hydra.{key}.dir={blocker}")
        assert line.endswith(f"choose a writable hydra.{key}.dir")
    WritableOutputDir().on_run_start(OmegaConf.create({"hydra": {"run": {"dir": str(tmp_path / "ok")}}}))
    assert (tmp_path / "ok").is_dir()
