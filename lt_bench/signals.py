"""Signals: a SIGTERM pauses a run at a step every rank agrees on and names the command that continues it."""

from __future__ import annotations

import contextlib
import shlex
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lt_bench.checkpointing import last_checkpoint
from lt_bench.errors import RunInterrupted


class StopOnSigterm(L.Callback):
    """A SIGTERM during training stops every rank at the same step and writes ``last.ckpt`` there.

    For the duration of ``fit`` this replaces Lightning's SIGTERM handler, which in DDP broadcasts from
    inside the signal handler: that collective can pair with a different one on another rank, and two
    gloo processes then hang for good (seen with Lightning 2.6; Lightning-AI/pytorch-lightning#20806).
    Here the handler only records the request. After every training batch the ranks agree on it with one
    reduction (an "any"); the epoch's last batch is decided at the epoch's end instead, after its
    validation and checkpoint, so a validation is never cut short. Once agreed, Lightning's own flag is
    set, its loop raises ``SIGTERMException`` at the end of that step on every rank, and
    :meth:`on_exception` writes the checkpoint: it holds the batches done so far and the loader's
    position, so ``ckpt_path=last`` continues with the next batch.

    A SIGTERM while testing (after ``fit``) is Lightning's to handle: the run stops, nothing is saved,
    and ``last.ckpt`` already holds the final epoch.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requested = False
        self.saved: Path | None = None
        self.stage: str | None = None  # Lightning clears trainer.state.stage before the exception leaves

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning installs its handlers just before this; it restores the earlier ones when fit ends
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._request_stop)

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.requested = True

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

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, error: BaseException) -> None:
        if not isinstance(error, SIGTERMException):
            return
        self.stage = trainer.state.stage.value if trainer.state.stage is not None else None
        if trainer.training:
            trainer.save_checkpoint(self.path)
            self.saved = self.path


def resume_command(run_dir: Path) -> str:
    """The command line that continues this run: its own overrides, ``ckpt_path=last``, its directory."""
    overrides: list[str] = []
    if HydraConfig.initialized():
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("ckpt_path=")]
    args = [*overrides, "ckpt_path=last", f"hydra.run.dir={run_dir}"]
    return " ".join(["python -m lt_bench", *map(shlex.quote, args)])


@contextlib.contextmanager
def stop_cleanly_on_sigterm(trainer: L.Trainer, run_dir: Path) -> Iterator[None]:
    """Turns Lightning's ``SIGTERMException`` into :class:`RunInterrupted` naming the way back.

    ``SIGTERMException`` is a bare ``SystemExit``: left alone, a terminated run exits with status 0, as
    if it had finished, and without a word.
    """
    try:
        yield
    except SIGTERMException:
        if not trainer.is_global_zero:  # every rank stops; rank 0 alone says so
            raise SystemExit(RunInterrupted.exit_code) from None
        saver = next(c for c in trainer.callbacks if isinstance(c, StopOnSigterm))
        last = last_checkpoint(run_dir)
        if saver.saved is not None:
            kept = f"saved {saver.saved}"
        elif last.is_file():
            kept = f"nothing saved while in the {saver.stage} stage; {last} holds the last completed epoch"
        else:
            kept = "no checkpoint was written yet"
        where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
        raise RunInterrupted(
            f"stopped by SIGTERM at {where}; {kept}. Continue with: {resume_command(run_dir)}"
        ) from None
