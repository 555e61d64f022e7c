"""Signals: a SIGTERM or SIGINT (Ctrl+C) pauses a run at a step every rank agrees on and names the command
that continues it; a second one, or a stop that has not happened within a deadline, ends the process.
An evaluation (:class:`StopAtOnce`), which has nothing to save, stops at once with one line.

One signal delivered twice counts once: GNU ``timeout`` sends its signal to the command and then to the
command's whole process group, and a shell's or scheduler's group kill does the same, so a single
``kill -TERM`` can reach lt_bench twice within microseconds. The same signal again within
:data:`DUPLICATE_WINDOW_S` of the one before is that same request."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lt_bench.distributed import TIMEOUT_ENV, lost_rank, seconds_from_env
from lt_bench.errors import RankLost, RunInterrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEADLINE_ENV = "LT_BENCH_STOP_DEADLINE"
# Seconds from the first stop signal to a forced exit. A cooperative stop normally takes one step; at an
# epoch's last batch it waits for that epoch's validation and checkpoint, which this must outlast.
DEFAULT_DEADLINE_S = 120.0
# The same signal again within this many seconds is the same request delivered twice (GNU timeout, a
# process-group kill), not a second one.
DUPLICATE_WINDOW_S = 1.0


class Repeats:
    """Tells a signal that repeats the one just before it (same signal within :data:`DUPLICATE_WINDOW_S`)
    from a new one."""

    def __init__(self) -> None:
        self._last: tuple[int, float] | None = None

    def is_repeat(self, signum: int) -> bool:
        now = time.monotonic()
        repeat = (
            self._last is not None and self._last[0] == signum and now - self._last[1] < DUPLICATE_WINDOW_S
        )
        self._last = (signum, now)
        return repeat


def exit_code_of(signum: int) -> int:
    """What a shell reports for a process the signal ended: 143 for SIGTERM, 130 for SIGINT."""
    return 128 + signum


class StopOnSigterm(L.Callback):
    """A SIGTERM or SIGINT during training stops every rank at the same step and writes ``last.ckpt`` there.

    For the duration of ``fit`` this replaces Lightning's SIGTERM handler, which in DDP broadcasts from
    inside the signal handler: that collective can pair with a different one on another rank, and two
    gloo processes then hang for good (seen with Lightning 2.6; Lightning-AI/pytorch-lightning#20806).
    Here the handler only records the request. After every training batch the ranks agree on it with one
    reduction (an "any"); the epoch's last batch is decided at the epoch's end instead, after its
    validation and checkpoint, so a validation is never cut short. Once agreed, Lightning's own flag is
    set, its loop raises ``SIGTERMException`` at the end of that step on every rank, and
    :meth:`on_exception` writes the checkpoint: it holds the batches done so far and the loader's
    position, so ``ckpt_path=last`` continues with the next batch.

    A stop signal while testing (after ``fit``) stops the test at the next batch, the last one included,
    or before the next test starts: nothing is saved, and ``last.ckpt`` already holds the final epoch.
    One that arrives after the last test is acted on when the block of
    :func:`stop_cleanly_on_sigterm` ends, before the summary is written: the run never ends with status 0
    after a stop signal.

    A step that never ends (a hung data read, a rank that stopped answering) would make that wait
    endless: :meth:`watching` ends the process on a second stop signal, or :data:`DEADLINE_ENV` seconds
    after the first, and says that nothing was saved past ``last.ckpt``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requested = False
        self.signum: int | None = None  # the first stop signal
        self.saved: Path | None = None
        self.stage: str | None = None  # Lightning clears trainer.state.stage before the exception leaves
        self._trainer: L.Trainer | None = None
        self._seen = 0
        self._repeats = Repeats()
        self._deadline: threading.Timer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning installs its handlers just before this; it restores the earlier ones when fit ends
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._request_stop)

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
        self.requested = True
        trainer = self._trainer
        if trainer is not None and trainer.state.fn != TrainerFn.FITTING:
            trainer._signal_connector.received_sigterm = True  # testing: its loop stops at the next batch

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # with trainer.accumulate_grad_batches=k, only after an optimizer step: a checkpoint holds no
        # partly accumulated gradient, so stopping inside a window would lose its batches on resume
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if stepped and batch_idx + 1 < trainer.num_training_batches:
            self._stop_if_requested(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_requested(trainer)

    def _stop_if_requested(self, trainer: L.Trainer) -> None:
        # one tiny all-reduce per step in DDP (Lightning already broadcasts its own flag every step)
        if trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            trainer._signal_connector.received_sigterm = True

    # -- outside fit (the final tests, a validation of a resumed finished run) ---------------------------
    # Lightning's evaluation loop stops on its flag only before a batch that is not the last, and each
    # trainer.test() clears the flag when it starts: a signal in a one-batch test, in the last batch or
    # between two tests would otherwise be forgotten. Decided per rank, as Lightning's own check is (test
    # shards may differ by a batch, so no collective here); rank 0 then ends the ranks it started.
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_outside_fit(trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._stop_outside_fit(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_outside_fit(trainer)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._stop_outside_fit(trainer)

    def _stop_outside_fit(self, trainer: L.Trainer) -> None:
        if self.requested and trainer.state.fn != TrainerFn.FITTING:
            raise SIGTERMException

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, error: BaseException) -> None:
        if not isinstance(error, SIGTERMException):
            return
        self.stage = trainer.state.stage.value if trainer.state.stage is not None else None
        if trainer.training:
            trainer.save_checkpoint(self.path)
            self.saved = self.path

    def kept(self) -> str:
        """What a stop leaves to continue from."""
        if self.saved is not None:
            return f"saved {self.saved}"
        if self.path.is_file():
            if self.stage in (None, "train"):
                return f"nothing was saved past {self.path}"
            return (
                f"nothing saved while in the {self.stage} stage; {self.path} holds the last completed epoch"
            )
        return "no checkpoint was written yet"

    # -- ending a stop that does not happen ----------------------------------------------------------------
    @contextlib.contextmanager
    def watching(self, resume: str) -> Iterator[None]:
        """Handles SIGTERM and SIGINT for the block, and watches them from a thread.

        Python runs a signal handler only when the main thread next executes bytecode, never while it
        waits inside C (a gloo collective that a stuck rank never joins): the handler alone could not
        end such a wait. The interpreter's C-level handler also writes each signal's number to the
        wakeup file descriptor at once, from whatever thread; a thread reading it counts the signals.
        """
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach only the main thread's handlers; a caller's thread keeps its own
            return
        deadline = seconds_from_env(os.environ, DEADLINE_ENV, DEFAULT_DEADLINE_S)
        previous = {s: signal.signal(s, self._request_stop) for s in STOP_SIGNALS}
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)  # the C handler must never block on a full pipe
        previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        watcher = threading.Thread(
            target=self._watch, args=(read_end, deadline, resume), name="lt_bench-signals", daemon=True
        )
        watcher.start()
        try:
            yield
        finally:
            signal.set_wakeup_fd(previous_fd)
            os.close(write_end)  # the watcher reads the end of the pipe and returns
            watcher.join()
            if self._deadline is not None:
                self._deadline.cancel()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _watch(self, read_end: int, deadline: float, resume: str) -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(64):
                for signum in chunk:
                    if signum in STOP_SIGNALS:
                        self._on_stop_signal(signum, deadline, resume)

    def _on_stop_signal(self, signum: int, deadline: float, resume: str) -> None:
        if self._repeats.is_repeat(signum):
            return  # the same signal delivered twice (GNU timeout, a group kill): one request
        self._seen += 1
        if self.signum is None:
            self.signum = signum
        name = signal.Signals(signum).name
        if self._seen > 1:
            self._force_exit(f"a second {name} ended the run before it could stop at a step", resume)
        else:
            why = (
                f"the run had not stopped {deadline:g} s after {name} (a step that does not end; "
                f"{DEADLINE_ENV} sets this wait)"
            )
            self._deadline = threading.Timer(deadline, self._force_exit, args=(why, resume))
            self._deadline.daemon = True
            self._deadline.start()

    def _force_exit(self, why: str, resume: str) -> None:
        """Ends the process from the watcher thread: the main thread may be stuck anywhere, so nothing
        is saved (a half-done step is no state to resume from) and nothing waits on a lock it may hold."""
        trainer = self._trainer
        _end_started_ranks(trainer)
        if trainer is None or trainer.is_global_zero:
            line = f"lt_bench: error: {why}; {self.kept()}. Continue with: {resume}\n"
            os.write(2, line.encode())  # not sys.stderr: its lock may be held by the stuck main thread
        os._exit(exit_code_of(self.signum or signal.SIGTERM))


def _end_started_ranks(trainer: L.Trainer | None) -> None:
    """Rank 0 started the other ranks (Lightning's ``ddp`` launcher): it ends them, stuck or not, before
    it goes, so that none is left waiting for it."""
    launcher = trainer.strategy.launcher if trainer is not None else None
    if isinstance(launcher, _SubprocessScriptLauncher):
        launcher.kill(signal.SIGKILL)


def resume_command(run_dir: Path) -> str:
    """The command line that continues this run: its own overrides, ``ckpt_path=last``, its directory."""
    overrides: list[str] = []
    if HydraConfig.initialized():
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("ckpt_path=")]
    args = [*overrides, "ckpt_path=last", f"hydra.run.dir={run_dir}"]
    return " ".join(["python -m lt_bench", *map(shlex.quote, args)])


@contextlib.contextmanager
def stop_cleanly_on_sigterm(trainer: L.Trainer, run_dir: Path) -> Iterator[None]:
    """Turns Lightning's ``SIGTERMException`` into :class:`RunInterrupted` naming the way back, and ends
    the process when a stop does not come (:meth:`StopOnSigterm.watching`).

    ``SIGTERMException`` is a bare ``SystemExit``: left alone, a terminated run exits with status 0, as
    if it had finished, and without a word.
    """
    saver = next(c for c in trainer.callbacks if isinstance(c, StopOnSigterm))
    resume = resume_command(run_dir)
    with saver.watching(resume):
        try:
            yield
            if saver.requested:  # after the last test, before the summary: the run is stopped all the same
                saver.stage = saver.stage or "test"
                raise SIGTERMException
        except SIGTERMException:
            code = exit_code_of(saver.signum or signal.SIGTERM)
            fitting = trainer.state.fn == TrainerFn.FITTING
            if not fitting:  # a test stops on the rank the signal reached: it ends the ranks it started
                _end_started_ranks(trainer)
            if not trainer.is_global_zero:  # every rank stops; rank 0 alone says so
                raise SystemExit(code) from None
            name = signal.Signals(saver.signum or signal.SIGTERM).name
            where = f"at epoch {trainer.current_epoch}, step {trainer.global_step}"
            if not fitting:
                where = (
                    f"in the {saver.stage or 'test'} stage, after {trainer.current_epoch} epochs of training"
                )
            raise RunInterrupted(
                f"stopped by {name} {where}; {saver.kept()}. Continue with: {resume}", exit_code=code
            ) from None
        except RuntimeError as err:
            why = lost_rank(err, trainer.world_size)
            if why is None:
                raise
            _end_started_ranks(trainer)
            if not trainer.is_global_zero:
                raise SystemExit(RankLost.exit_code) from None
            raise RankLost(
                f"a DDP rank stopped answering or died ({why}; {TIMEOUT_ENV} sets how long a rank is "
                f"waited for); {saver.kept()}. Continue with: {resume}"
            ) from None


class StopAtOnce:
    """SIGTERM and SIGINT for a process that has nothing to save (:mod:`lt_bench.eval`): the first stops it
    where it is, with one line and status 143 / 130 (:class:`RunInterrupted`, raised in the main thread).

    Inside :meth:`deferred` (the final writes: a summary is never half-written) the stop waits until the
    block is done. The same signal again within :data:`DUPLICATE_WINDOW_S` is the same request; a later
    one ends the process at once, even inside :meth:`deferred` (the atomic writes leave no partial file
    in place). ``outcome`` is the sentence the line ends with: what the interruption leaves.
    """

    def __init__(self, what: str, outcome: str) -> None:
        self.what, self.outcome = what, outcome
        self.signum: int | None = None
        self._repeats = Repeats()
        self._deferring = 0
        self._stopped_at: float | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopAtOnce]:
        """Handles SIGTERM and SIGINT for the block (in the main thread; elsewhere signals are not ours)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        try:
            yield self
        finally:
            # the same signal may still be on its way (GNU timeout signals the command, then its group):
            # the handler stays until the duplicate window has passed, so that copy is one request, never
            # the default action that would end the process before its one line and status
            if self._stopped_at is not None:
                time.sleep(max(0.0, self._stopped_at + DUPLICATE_WINDOW_S - time.monotonic()))
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self._repeats.is_repeat(signum):
            return  # the same signal delivered twice (GNU timeout, a group kill): one request
        if self.signum is not None:
            name = signal.Signals(signum).name
            line = f"lt_bench: error: a second {name} ended {self.what} at once; {self.outcome}\n"
            os.write(2, line.encode())  # not sys.stderr: the main thread may hold its lock
            os._exit(exit_code_of(self.signum))
        self.signum, self._stopped_at = signum, time.monotonic()
        if not self._deferring:
            raise self.interruption()

    def interruption(self) -> RunInterrupted:
        name = signal.Signals(self.signum or signal.SIGTERM).name
        return RunInterrupted(
            f"stopped by {name} during {self.what}; {self.outcome}",
            exit_code=exit_code_of(self.signum or signal.SIGTERM),
        )

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A stop signal during the block is acted on once the block has ended."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if self.signum is not None and not self._deferring:
            raise self.interruption()
