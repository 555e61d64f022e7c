"""Checkpoints a kill cannot corrupt, resume state, and what ``ckpt_path=`` means.

Signals (SIGTERM pauses a run) are :mod:`lt_bench.signals`.

What a resumed run needs and where it comes from:

- weights, BatchNorm statistics, persistent buffers (PHASE's ``stage2_entered`` and MSR
  ``sample_weights``), optimizer (SGD/SAM momentum, per-group LR and weight decay), LR scheduler and loop
  progress: Lightning's own checkpoint.
- the best model so far (score, epoch, file): :class:`BestCheckpoint`'s state, by file name, so it holds in
  whichever run directory the checkpoint is resumed in (:func:`prepare_checkpoint_dir` brings the file).
- the running training loss (and loss terms) of an epoch a SIGTERM interrupted:
  :class:`lt_bench.epoch_sums.EpochSums`, saved with the module; the resumed epoch logs its schedule
  values again (``LongTailModule.on_train_start``).
- epoch order, crops, mixing lambdas: counters of ``(seed, epoch, step)``, nothing to save.
- position inside an epoch (in-memory data): :class:`lt_bench.data.memory.TrainLoader`'s ``state_dict``,
  which Lightning stores with the loop state.
- torch's global generator (torchvision's AutoAugment / RandAugment / colour jitter draw from it):
  :class:`ResumeState`, which also records the configuration and warns when a resume changes it.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from lt_bench.atomic import atomic_write
from lt_bench.config_nodes import flatten_config, is_operational
from lt_bench.errors import ConfigError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"
BEST_GLOB = "best-*.ckpt"
# what atomic_write leaves when a kill stops it between creating its temporary file and the rename
TEMPORARY_GLOB = ".*.ckpt.*.tmp"
OUTPUT_TEMPORARY_GLOB = ".*.tmp"  # the same, of the run directory's own files (summary.json, confusion_*.npy)
# where checkpoints record the model's input (a ResNet's weights fit any image size, so shapes cannot tell)
INPUTS_KEY = "lt_bench_inputs"


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


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: saved -> current`` for every setting that differs, execution-only keys aside (a resume may
    change those: :data:`lt_bench.config_nodes.OPERATIONAL_KEYS`)."""
    old, new = flatten_config(saved), flatten_config(current)
    keys = sorted(k for k in old.keys() | new.keys() if not is_operational(k))
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

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[INPUTS_KEY] = model_inputs(pl_module)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_rng_state(state_dict["rng"])
        changes = config_changes(state_dict.get("config", {}), self.config)
        if changes:
            print(
                "lt_bench: warning: resuming with settings that differ from the checkpoint's, so the result "
                f"will not be the uninterrupted run's: {'; '.join(changes)}",
                file=sys.stderr,
            )


# -- ckpt_path= ------------------------------------------------------------------------------------------
def _what_the_file_is(path: Path) -> str:
    """A diagnosis of a file that did not load as a checkpoint, for the error message."""
    with path.open("rb") as f:
        head = f.read(64).lstrip()
    if head.startswith(b"PK"):
        return "a truncated or damaged checkpoint"
    if head[:1] in (b"{", b"["):
        return "JSON text, not a checkpoint"
    return "not a PyTorch checkpoint"


def read_checkpoint(path: Path, fix: str) -> dict[str, Any]:
    """The training checkpoint at ``path``, or a one-line error naming the file, what it is instead, and
    ``fix``. Memory-mapped: the tensors stay on disk, so the check costs little whatever the model."""
    if path.stat().st_size == 0:
        raise ConfigError(f"{path} is an empty file, not a checkpoint; {fix}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        raise ConfigError(f"{path} is {_what_the_file_is(path)}; {fix}") from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "loops", "epoch"} <= checkpoint.keys():
        kind = type(checkpoint)
        what = {dict: "a dict without state_dict, loops and epoch"}.get(kind, f"a {kind.__name__}")
        raise ConfigError(f"{path} holds {what}, not a training checkpoint of lt_bench; {fix}")
    return checkpoint


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """The checkpoint to start from, or None to start afresh; a file that is not a readable training
    checkpoint is refused here, before anything is built.

    ``last``: ``<run dir>/checkpoints/last.ckpt``, which must exist; ``auto``: the same when it exists,
    else start afresh (one command line for a job that a scheduler may requeue), and the newest best-model
    checkpoint when ``last.ckpt`` is unreadable; else an existing file.
    """
    if ckpt_path is None:
        return None
    last = last_checkpoint(run_dir)
    restart = f"delete it to start the run afresh (ckpt_path=auto then starts over in {run_dir})"
    if ckpt_path == "auto":
        if not last.is_file():
            return None
        return str(_last_or_best(last, restart))
    if ckpt_path == "last":
        if not last.is_file():
            raise ConfigError(
                f"ckpt_path=last continues the run in hydra.run.dir, but {last} does not exist; "
                "point hydra.run.dir=PATH at the directory of the run to continue (it holds checkpoints/), "
                "pass ckpt_path=PATH/TO/FILE.ckpt, or ckpt_path=auto to start afresh when there is none"
            )
        read_checkpoint(last, restart)
        return str(last)
    path = Path(ckpt_path)
    if path.is_dir():
        inside = last_checkpoint(path)
        raise ConfigError(
            f"ckpt_path={ckpt_path} is a directory; pass the checkpoint file (e.g. ckpt_path={inside}), "
            f"or continue that run in place with ckpt_path=last hydra.run.dir={path}"
        )
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path} does not exist; pass a checkpoint file "
            "(e.g. outputs/DATE/TIME/checkpoints/last.ckpt) or ckpt_path=last with hydra.run.dir=RUN_DIR"
        )
    read_checkpoint(path, "pass a checkpoint python -m lt_bench wrote (RUN_DIR/checkpoints/last.ckpt)")
    return ckpt_path


def _last_or_best(last: Path, restart: str) -> Path:
    """``last.ckpt``, or, when it cannot be read, the newest best-model checkpoint beside it.

    A best checkpoint is a full one (saved after the validation of its epoch), so continuing from it
    replays the later epochs and ends where the uninterrupted run does; a requeued job then gets on
    instead of failing on the same file every time.
    """
    try:
        read_checkpoint(last, restart)
        return last
    except ConfigError as broken:
        for best in sorted(last.parent.glob(BEST_GLOB), reverse=True):  # epochs are zero-padded
            with contextlib.suppress(ConfigError):
                read_checkpoint(best, restart)
                print(f"lt_bench: warning: {broken}; continuing from {best} instead", file=sys.stderr)
                return best
        raise


# keys that fix the network's architecture: a checkpoint resumes only under the same values
MODEL_KEYS = ("method.name", "backbone.", "loss.head")


def check_resumable(checkpoint: dict[str, Any], path: str, model: L.LightningModule, max_epochs: int) -> None:
    """Refuse, in one line, a checkpoint this run cannot continue: another method, backbone, head, class
    count or input, a network of other shapes, or more epochs done than ``trainer.max_epochs``."""
    fix = "resume with the settings it was trained with, or start afresh without ckpt_path"
    saved = flatten_config(((checkpoint.get("callbacks") or {}).get("ResumeState") or {}).get("config") or {})
    current = flatten_config(OmegaConf.to_container(model.cfg, resolve=True))
    if saved:
        keys = sorted(k for k in saved.keys() | current.keys() if k.startswith(MODEL_KEYS))
        changed = [
            f"{k}={saved.get(k)} (this run: {current.get(k)})" for k in keys if saved.get(k) != current.get(k)
        ]
        if changed:
            raise ConfigError(f"ckpt_path={path} was trained with {', '.join(changed)}; {fix}")
    inputs = checkpoint.get(INPUTS_KEY)
    if inputs is not None and inputs != model_inputs(model):
        raise ConfigError(
            f"ckpt_path={path} was trained on {inputs}, this run has {model_inputs(model)}; {fix}"
        )
    ours, theirs = model.state_dict(), checkpoint["state_dict"]
    differ = [
        f"{k} {_shape(theirs.get(k))} (this run: {_shape(ours.get(k))})"
        for k in sorted(ours.keys() | theirs.keys())
        if _shape(theirs.get(k)) != _shape(ours.get(k))
    ]
    if differ:
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise ConfigError(f"ckpt_path={path} holds another network: {'; '.join(differ[:3])}{more}; {fix}")
    begun = int(checkpoint["epoch"]) + 1
    if max_epochs < begun:
        raise ConfigError(
            f"ckpt_path={path} was saved during epoch {begun - 1} (0-based), which trainer.max_epochs="
            f"{max_epochs} does not reach; pass trainer.max_epochs={begun} or more (or start afresh without "
            "ckpt_path)"
        )


def _shape(value: Any) -> str:
    return "absent" if value is None else str(list(value.shape))


def model_inputs(model: L.LightningModule) -> dict[str, int]:
    info = model.info
    return {"classes": info.num_classes, "channels": info.in_channels, "image_size": info.image_size}


def epochs_done(checkpoint: dict[str, Any]) -> int:
    """Epochs whose training the checkpoint holds completely (one inside an epoch holds part of one more)."""
    return int(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])


def selected_files(checkpoint: dict[str, Any]) -> set[str]:
    """The names of the best-model files the checkpoint's :class:`BestCheckpoint` state selects."""
    names: set[str] = set()
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if key.startswith(BestCheckpoint.__name__):
            names.update(Path(p).name for p in state.get("best_k_models", {}))
    return names


def _copy_of(source: Path) -> Any:
    def copy(f: Any) -> None:
        with source.open("rb") as original:
            shutil.copyfileobj(original, f)

    return copy


def prepare_checkpoint_dir(
    folder: Path, checkpoint: dict[str, Any] | None, resumed_from: Path | None
) -> None:
    """Before a run starts writing in ``folder`` (its ``checkpoints/``), resumed from the checkpoint file
    ``resumed_from`` (None: a fresh start): bring the best-model files the
    resumed checkpoint selects, and remove what a kill left behind.

    Resumed from another folder (``ckpt_path=PATH`` into a new run directory), the selected files and the
    checkpoint itself (as ``last.ckpt``) are copied in, so the new run is complete on its own (a requeue
    with ``ckpt_path=auto`` continues it) and the old one is never touched; resumed in place
    (a moved run directory included), they must be there. A kill can leave temporary files of
    :func:`atomic_torch_save` (and of the run directory's files) and best files no checkpoint selects (a
    best model saved after the ``last.ckpt`` the resume starts from); both go.
    """
    selected = selected_files(checkpoint) if checkpoint is not None else set()
    elsewhere = resumed_from is not None and resumed_from.parent.resolve() != folder.resolve()
    for name in sorted(selected):
        source = (resumed_from.parent if elsewhere else folder) / name
        if not source.is_file():
            raise ConfigError(
                f"the checkpoint to resume from selects {name} as the best model so far, but {source} does "
                "not exist; put it back beside the checkpoint, or start afresh without ckpt_path"
            )
        if elsewhere:
            atomic_write(folder / name, _copy_of(source), binary=True)
    if elsewhere:  # until the run writes its own (never, when the checkpoint's run had finished)
        atomic_write(folder / LAST, _copy_of(resumed_from), binary=True)
    keep = selected | ({resumed_from.name} if resumed_from is not None and not elsewhere else set())
    for leftover in [
        *folder.glob(TEMPORARY_GLOB),
        *folder.glob(BEST_GLOB),
        *folder.parent.glob(OUTPUT_TEMPORARY_GLOB),
    ]:
        if leftover.name not in keep:
            leftover.unlink(missing_ok=True)


# -- model selection -------------------------------------------------------------------------------------
def _name(path: str) -> str:
    return Path(path).name if path else ""


class BestCheckpoint(ModelCheckpoint):
    """Keeps the epoch with the best ``monitor`` value, the *later* epoch on a tie.

    Lightning keeps the earlier one. With a small validation split ties are common (a tail class with one
    or two validation images gives G-mean exactly 0, or 1, for many epochs), and the earlier rule then
    selects an epoch-0 model; the later model has trained longer at the same validation score (the ARConvL
    reference code also replaces its best model on ties).

    The selection travels with every checkpoint by file name, not by path: Lightning drops it when the
    checkpoint folder changes (a resume into a new run directory then picks another epoch), and absolute
    paths break when a run directory is moved. It is restored against this run's folder.

    A superseded best file is removed only at the next epoch's start (or the end of training), once
    ``last.ckpt`` selects its successor: removed at once, a kill before ``last.ckpt`` is written would
    leave a ``last.ckpt`` that selects a deleted file.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._superseded: list[str] = []

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is None:
            return False
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        at_least_as_good = {"min": torch.le, "max": torch.ge}[self.mode]
        decision = bool(at_least_as_good(current, self.best_k_models[self.kth_best_model_path]))
        return trainer.strategy.reduce_boolean_decision(decision)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            best_model_path=_name(self.best_model_path),
            kth_best_model_path=_name(self.kth_best_model_path),
            best_k_models={_name(p): score for p, score in self.best_k_models.items()},
            last_model_path="",
        )
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        here = Path(self.dirpath)

        def at(path: str) -> str:
            return str(here / Path(path).name) if path else ""

        self.best_model_score = state_dict["best_model_score"]
        self.best_model_path = at(state_dict["best_model_path"])
        self.kth_best_model_path = at(state_dict.get("kth_best_model_path", ""))
        self.kth_value = state_dict.get("kth_value", self.kth_value)
        self.best_k_models = {at(p): score for p, score in state_dict.get("best_k_models", {}).items()}

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        self._superseded.append(filepath)

    def _remove_superseded(self, trainer: L.Trainer) -> None:
        for path in self._superseded:
            super()._remove_checkpoint(trainer, path)
        self._superseded.clear()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_superseded(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._remove_superseded(trainer)


class LatestCheckpoint(ModelCheckpoint):
    """``last.ckpt``, rewritten after every training epoch. It selects nothing, so a resume restores none
    of its state (Lightning's restore warns whenever the run directory is another one)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass
