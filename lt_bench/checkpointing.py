"""Checkpoints a kill cannot corrupt, resume state, and what ``ckpt_path=`` means.

Signals (SIGTERM pauses a run) are :mod:`lt_bench.signals`.

What a resumed run needs and where it comes from:

- weights, BatchNorm statistics, persistent buffers (PHASE's ``stage2_entered`` and MSR
  ``sample_weights``), optimizer (SGD/SAM momentum, per-group LR and weight decay), LR scheduler, loop
  progress and ModelCheckpoint's best-so-far: Lightning's own checkpoint.
- epoch order, crops, mixing lambdas: counters of ``(seed, epoch, step)``, nothing to save.
- position inside an epoch (in-memory data): :class:`lt_bench.data.memory.TrainLoader`'s ``state_dict``,
  which Lightning stores with the loop state.
- torch's global generator (torchvision's AutoAugment / RandAugment / colour jitter draw from it):
  :class:`ResumeState`, which also records the configuration and warns when a resume changes it.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from lt_bench.atomic import atomic_write
from lt_bench.config import flatten_config
from lt_bench.errors import ConfigError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / CHECKPOINT_DIR / LAST


# -- atomic writes --------------------------------------------------------------------------------------
def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`lt_bench.atomic.atomic_write` (temporary file beside ``path``, fsync,
    rename; the umask's mode).

    ``os.replace`` within one folder is atomic, so ``path`` holds either the previous checkpoint or the new
    one, never a truncated file. Lightning's default writes through an fsspec transaction whose temporary
    file lives in the system temp folder: when that is another filesystem (node-local ``/tmp``, shared
    output storage) the final move is a copy, and a kill during it leaves half a checkpoint.
    """
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Every ``.ckpt`` (last, best, SIGTERM) is written by :func:`atomic_torch_save`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        atomic_torch_save(checkpoint, Path(path))


# -- global random state --------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """The global generators as tensors and plain Python values (loadable with ``weights_only=True``)."""
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(numpy_state[1].astype(np.int64)), "rest": list(numpy_state[2:])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np.random.set_state(("MT19937", state["numpy"]["key"].numpy().astype(np.uint32), *state["numpy"]["rest"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# keys that change how a run is executed or reported, not what it computes: a resume may change them
OPERATIONAL_KEYS = (
    "ckpt_path",
    "print_table",
    "logger.",
    "dataset.root",
    "dataset.split_dir",
    "dataset.num_workers",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.strategy",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "trainer.channels_last",
    "trainer.compile",
)


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: saved -> current`` for every setting that differs, operational keys aside."""
    old, new = flatten_config(saved), flatten_config(current)
    keys = sorted(k for k in old.keys() | new.keys() if not k.startswith(OPERATIONAL_KEYS))
    return [f"{k}: {old.get(k)} -> {new.get(k)}" for k in keys if old.get(k) != new.get(k)]


class ResumeState(L.Callback):
    """What a resume needs beyond Lightning's own checkpoint: the global generators and the config.

    The generators are restored before the first resumed batch, and nothing between the checkpoint and
    that batch draws from them, so on one process the resumed run draws the numbers the uninterrupted
    one drew. With several processes the checkpoint holds rank 0's state and every rank restores it;
    only the global-generator augmentations (AutoAugment, RandAugment, colour jitter) then differ from
    an uninterrupted run. A resume under a different configuration is allowed (training longer, say)
    but said out loud: its result will not be the uninterrupted run's.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(), "config": self.config}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_rng_state(state_dict["rng"])
        changes = config_changes(state_dict.get("config", {}), self.config)
        if changes:
            print(
                "lt_bench: warning: resuming with settings that differ from the checkpoint's, so the result "
                f"will not be the uninterrupted run's: {'; '.join(changes)}",
                file=sys.stderr,
            )


def keep_logged_metrics(logger: Any, run_dir: Path) -> None:
    """A run resumed in its own directory keeps the ``metrics.csv`` rows logged before the interruption.

    Lightning's CSV logger deletes an existing ``metrics.csv`` when it starts; the rows are read first
    and written back at once, ahead of the resumed run's.
    """
    path = run_dir / ExperimentWriter.NAME_METRICS_FILE
    if logger is None or not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    experiment = getattr(logger, "experiment", None)  # CSVLogger: creating it deletes the file
    if isinstance(experiment, ExperimentWriter) and Path(experiment.metrics_file_path) == path:
        experiment.metrics[:0] = rows
        experiment.save()


# -- ckpt_path= ------------------------------------------------------------------------------------------
def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """The checkpoint to start from, or None to start afresh.

    ``last``: ``<run dir>/checkpoints/last.ckpt``, which must exist; ``auto``: the same when it exists,
    else start afresh (one command line for a job that a scheduler may requeue); else an existing file.
    """
    if ckpt_path is None:
        return None
    last = last_checkpoint(run_dir)
    if ckpt_path == "auto":
        return str(last) if last.is_file() else None
    if ckpt_path == "last":
        if not last.is_file():
            raise ConfigError(
                f"ckpt_path=last continues the run in hydra.run.dir, but {last} does not exist; "
                "point hydra.run.dir=PATH at the directory of the run to continue (it holds checkpoints/), "
                "pass ckpt_path=PATH/TO/FILE.ckpt, or ckpt_path=auto to start afresh when there is none"
            )
        return str(last)
    if not Path(ckpt_path).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path} does not exist; pass a checkpoint file "
            "(e.g. outputs/DATE/TIME/checkpoints/last.ckpt) or ckpt_path=last with hydra.run.dir=RUN_DIR"
        )
    return ckpt_path


# -- model selection -------------------------------------------------------------------------------------
class BestCheckpoint(ModelCheckpoint):
    """Keeps the epoch with the best ``monitor`` value, the *later* epoch on a tie.

    Lightning keeps the earlier one. With a small validation split ties are common (a tail class with one
    or two validation images gives G-mean exactly 0, or 1, for many epochs), and the earlier rule then
    selects an epoch-0 model; the later model has trained longer at the same validation score (the ARConvL
    reference code also replaces its best model on ties).
    """

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is None:
            return False
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        at_least_as_good = {"min": torch.le, "max": torch.ge}[self.mode]
        decision = bool(at_least_as_good(current, self.best_k_models[self.kth_best_model_path]))
        return trainer.strategy.reduce_boolean_decision(decision)
