"""The run directory's one owner: one run at a time in it, never a fresh run over an earlier one's outputs,
a finished run left as it is, and the ``.hydra/`` files written by the run that writes the summary.

:func:`finished_run` and :func:`prepared` are what an entry point calls: the first answers "is there
nothing to do?", the second locks the directory and decides fresh start, overwrite or resume, handing back
a :class:`RunDirectory`; the entry point removes an earlier run's outputs (:meth:`RunDirectory.clear_earlier`)
only once every check that needs no training has passed.

A run is finished once its ``summary.json`` exists: it is written atomically, after training and testing
(or, for a run that diverged, with ``status: diverged`` and the reason).

An evaluation (:mod:`lt_bench.eval`) writes into a folder of its own, by default beside the run it
evaluates (``RUN/eval/SPLIT-DATE_TIME``, :func:`evaluations_folder`): :func:`prepared_evaluation` locks
that folder, refuses one that holds a training run's files or an earlier evaluation's, and refuses while
a training still runs in the evaluated run's directory; :class:`EvaluationDir` makes the same refusals
before Hydra creates anything.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lt_bench.atomic import atomic_write
from lt_bench.checkpointing import CHECKPOINT_DIR, config_changes, last_checkpoint, resolve_ckpt_path
from lt_bench.errors import ConfigError, LtBenchError, TrainingDiverged

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
LOCK = ".lt_bench.lock"
HYDRA_DIR = ".hydra"
EVAL_DIR = "eval"  # a run's evaluations: RUN/eval/SPLIT-DATE_TIME (lt_bench.eval)
# What a run writes into its directory (lt_bench.train, lt_bench.summary, the loggers, lt_bench.atomic's
# temporary files): a fresh run must not mix with these, and they are what overwrite=true removes. Logs
# (*.log) are appended to, never removed; files of other programs are never touched.
RUN_FILES = (
    SUMMARY,
    CHECKPOINT_DIR,
    "confusion_*.npy",
    "per_class_accuracy.png",
    "reliability.png",
    "schedule.png",
    "metrics.csv",
    "hparams.yaml",
    "tensorboard",
    "wandb",
    HYDRA_DIR,
    EVAL_DIR,  # evaluations of the run's model: they go with it
    ".*.tmp",
)


class RunDirInUse(LtBenchError):
    """Another process holds the run directory's lock."""


# -- one run at a time ---------------------------------------------------------------------------------
@contextlib.contextmanager
def locked(run_dir: Path, name: str = LOCK) -> Iterator[None]:
    """Hold a lock on ``<run dir>/<name>`` (``.lt_bench.lock``) for the duration; a second holder is refused
    at once.

    A POSIX record lock (``lockf``), not ``flock``: it belongs to the process, so the kernel releases it
    the moment the holder dies, however it ends (``kill -9`` included), and processes forked from the holder
    (DataLoader workers, which outlive a killed parent by seconds) do not keep it. The file stays, holding
    the last holder's PID; it never blocks a later run. Nothing else may open it in the holding process:
    closing any descriptor of the file drops a POSIX lock.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / name, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        holder = _holder_if_locked(fd, fcntl.LOCK_EX)
        if holder is not None:
            raise RunDirInUse(
                f"{run_dir} is in use by another lt_bench run (PID {holder}); wait for it to end, or give "
                "this run a directory of its own (hydra.run.dir=NEW_DIR)"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def held_elsewhere(run_dir: Path) -> str | None:
    """The PID recorded by the process that holds ``run_dir``'s lock, when another process holds it; None
    when it is free, has no lock file, or this process holds it. Creates nothing and holds nothing.

    A shared lock (``F_RDLCK``) on a read-only descriptor conflicts with a holder's exclusive lock; it is
    taken and released at once. This process's own lock never conflicts with it, and the descriptor of that
    lock must stay the only one open on the file (closing any drops a POSIX lock): so a directory this
    process may hold is never probed."""
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _holder_if_locked(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


def _holder_if_locked(fd: int, kind: int) -> str | None:
    """Take the ``kind`` lock on ``fd`` without waiting: None when taken, else the PID its holder wrote."""
    try:
        fcntl.lockf(fd, kind | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "not yet written"
    return None


# -- finished runs ---------------------------------------------------------------------------------------
def continues_here(ckpt_path: str | None, run_dir: Path) -> bool:
    """Whether ``ckpt_path`` (as given: ``auto``, ``last`` or a file) continues the run in ``run_dir``."""
    if ckpt_path is None:
        return False
    if ckpt_path in ("auto", "last"):
        return True
    return Path(ckpt_path).resolve().is_relative_to(run_dir.resolve())


def finished_summary(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The summary of the finished run that this command would continue, or None (nothing to continue, or
    not finished). A finished run continued under another configuration is refused: the command is not
    the job that wrote it."""
    path = run_dir / SUMMARY
    if not continues_here(cfg.ckpt_path, run_dir) or not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(
            f"{path} is not readable ({err}); it is left as it is: restore it, or start the run over with "
            "overwrite=true and no ckpt_path"
        ) from None
    changes = config_changes(summary.get("config") or {}, OmegaConf.to_container(cfg, resolve=True))
    if changes:
        raise ConfigError(
            f"{run_dir} holds a finished run with other settings ({'; '.join(changes)}); it is left as it "
            f"is. To train it further, start a new run from its checkpoint: {_train_further(run_dir)}"
        )
    return summary


def finished_outcome(summary: dict[str, Any], run_dir: Path) -> float | None:
    """The finished run's outcome, as when it ended: its objective (and one line saying it is finished), or,
    for a run that diverged, the same :class:`TrainingDiverged`."""
    if summary.get("status") == "diverged":
        raise TrainingDiverged(f"{summary.get('reason')} (recorded in {run_dir / SUMMARY}; nothing was run)")
    print(
        f"lt_bench: {run_dir} holds a finished run, left as it is; its results: {run_dir / SUMMARY}. To "
        f"train it further, start a new run from its checkpoint: {_train_further(run_dir)}",
        file=sys.stderr,
    )
    return objective(summary)


def _train_further(run_dir: Path) -> str:
    return f"ckpt_path={last_checkpoint(run_dir)} hydra.run.dir=NEW_DIR"


def objective(summary: dict[str, Any]) -> float:
    """The figure a sweeper optimises: the selected model's validation score, else the test balanced
    accuracy (no validation split)."""
    if summary.get("best_val") is not None:
        return float(summary["best_val"])
    return float(summary["test"]["balanced_acc"])


# -- never over an earlier run ---------------------------------------------------------------------------
def earlier_run_files(run_dir: Path) -> list[Path]:
    return [p for pattern in RUN_FILES for p in sorted(run_dir.glob(pattern))]


def refuse_overwrite_of_a_continued_run(ckpt_path: str | None, overwrite: bool, run_dir: Path) -> None:
    if overwrite and continues_here(ckpt_path, run_dir):
        raise ConfigError(
            f"overwrite=true starts the run in {run_dir} over, but ckpt_path={ckpt_path} continues it; "
            "drop one of the two"
        )


def files_to_replace(
    run_dir: Path, resume_from: str | None, ckpt_path: str | None, overwrite: bool
) -> list[Path]:
    """The earlier outputs this run replaces (to remove before it writes any), or :class:`ConfigError` when
    it must not: a run that starts over (``resume_from`` None, or a checkpoint of another directory) in a
    directory that holds another run's outputs needs ``overwrite=true``. A requeued ``ckpt_path=auto`` job
    that was stopped before its first checkpoint starts over without it: its leftovers are its own."""
    if resume_from is not None and Path(resume_from).resolve().is_relative_to(run_dir.resolve()):
        return []
    earlier = earlier_run_files(run_dir)
    if not earlier or overwrite or ckpt_path == "auto":
        return earlier
    names = ", ".join(p.name for p in earlier[:4]) + (", ..." if len(earlier) > 4 else "")
    raise ConfigError(
        f"{run_dir} holds the outputs of an earlier run ({names}); continue it with ckpt_path=auto, start "
        "over in a new directory (hydra.run.dir=NEW_DIR; hydra.sweep.dir=NEW_DIR in a multirun), or replace "
        "it with overwrite=true"
    )


def remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


# -- .hydra/ -------------------------------------------------------------------------------------------
def hydra_files(cfg: DictConfig) -> dict[str, str]:
    """``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` as Hydra writes them at a job's start
    (the task config before anything resolves it), for :func:`write_hydra_files`.

    The config sets ``hydra.output_subdir: null``, so Hydra writes none of them before lt_bench has
    checked the command; lt_bench.train writes them beside ``summary.json``, so a refused command, however
    late it is refused, leaves the files of the run in its directory as they are (the report and
    lt_bench.eval read them). Outside Hydra, or when a command sets ``hydra.output_subdir`` itself (Hydra
    has then written them there), there are none to write.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or HydraConfig.get().output_subdir is not None:
        return {}
    hydra_cfg = HydraConfig.instance().cfg
    nodes = {"config.yaml": cfg, "hydra.yaml": hydra_cfg, "overrides.yaml": hydra_cfg.hydra.overrides.task}
    return {name: OmegaConf.to_yaml(node) for name, node in nodes.items()}


def write_hydra_files(run_dir: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        atomic_write(run_dir / HYDRA_DIR / name, lambda f, text=text: f.write(text))


# -- what an entry point calls ---------------------------------------------------------------------------
def run_dir_of_job() -> Path:
    """The directory Hydra made for this job (``hydra.run.dir`` / the sweep's job folder); outside Hydra
    (a test calling :func:`lt_bench.train.train` directly) ``outputs/manual``."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path("outputs/manual")


def finished_run(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The summary of the finished run this command would only repeat (nothing to do then), or None.

    Refuses ``overwrite=true`` together with a ``ckpt_path`` that continues the run in ``run_dir``, and a
    finished run continued under other settings. Read on every rank: none may start training then."""
    refuse_overwrite_of_a_continued_run(cfg.ckpt_path, cfg.overwrite, run_dir)
    return finished_summary(cfg, run_dir)


@dataclass
class RunDirectory:
    """A run directory prepared for one run: where it resumes from, and what it replaces."""

    path: Path
    resume_from: str | None  # the checkpoint the run continues, or None for a fresh start
    earlier: list[Path] = field(default_factory=list)  # another run's outputs, replaced by this run
    hydra_files: dict[str, str] = field(default_factory=dict)  # .hydra/*, written with the summary

    def clear_earlier(self) -> None:
        """Remove the earlier run's outputs: call it once every check that needs no training has passed."""
        if self.earlier:
            remove(self.earlier)
            log.info("removed the earlier run's outputs: %s", ", ".join(p.name for p in self.earlier))
            self.earlier = []

    def write_hydra_files(self) -> None:
        write_hydra_files(self.path, self.hydra_files)


@contextlib.contextmanager
def prepared(
    cfg: DictConfig, run_dir: Path, hydra_files: dict[str, str], owner: bool = True
) -> Iterator[RunDirectory]:
    """Hold ``run_dir`` for one run: locked (by the ``owner``, rank 0 of a multi-process run), the
    checkpoint to resume from resolved (``ckpt_path=``), and the earlier outputs a fresh start replaces
    found — or :class:`ConfigError` when it must not replace them. Nothing is removed here."""
    with locked(run_dir) if owner else contextlib.nullcontext():
        resume_from = resolve_ckpt_path(cfg.ckpt_path, run_dir)
        earlier = files_to_replace(run_dir, resume_from, cfg.ckpt_path, cfg.overwrite) if owner else []
        refuse_removing_a_running_evaluation(run_dir, earlier)
        yield RunDirectory(run_dir, resume_from, earlier, hydra_files)


def refuse_removing_a_running_evaluation(run_dir: Path, earlier: list[Path]) -> None:
    """A fresh start that would remove ``RUN/eval/`` while an evaluation is writing into it is refused:
    the evaluation's folder (and what it is writing) would vanish under it."""
    if run_dir / EVAL_DIR not in earlier:
        return
    for folder in sorted((run_dir / EVAL_DIR).rglob("*")):
        holder = held_elsewhere(folder) if folder.is_dir() else None
        if holder is not None:
            raise ConfigError(
                f"{folder} is in use by a running evaluation (PID {holder}), and this run would remove "
                f"{run_dir / EVAL_DIR} with the earlier outputs; wait for the evaluation to end, or start "
                "over in a new directory (hydra.run.dir=NEW_DIR)"
            )


# -- evaluations --------------------------------------------------------------------------------------------
def run_dir_of_checkpoint(path: Path) -> Path:
    """The run directory of a checkpoint file (``RUN/checkpoints/last.ckpt`` -> ``RUN``; a file elsewhere:
    its folder), or ``path`` itself when it is a directory (a run directory)."""
    if path.is_dir():
        return path
    return path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent


MISSING_CKPT = (
    "ckpt= is missing: name the checkpoint or run directory to evaluate, e.g. python -m lt_bench.eval "
    "ckpt=outputs/DATE/TIME"
)


def check_ckpt_exists(ckpt: str) -> None:
    """:class:`ConfigError` when ``ckpt=`` names nothing: an evaluation takes a file or a run directory."""
    if not Path(ckpt).exists():
        raise ConfigError(
            f"ckpt={ckpt} does not exist; pass a checkpoint (RUN_DIR/checkpoints/last.ckpt) or a run "
            "directory"
        )


def evaluations_folder(ckpt: str | None) -> str:
    """Where evaluations of ``ckpt`` go: ``<its run directory>/eval`` (``outputs/eval`` without a
    ``ckpt``, which is then refused). An OmegaConf resolver: ``conf/eval.yaml`` sets ``hydra.run.dir`` to
    ``${lt.evaluations:...}/SPLIT-DATE_TIME``, one folder per evaluation."""
    if ckpt is None or str(ckpt) in ("", "???"):
        return str(Path("outputs") / EVAL_DIR)
    return str(run_dir_of_checkpoint(Path(str(ckpt))) / EVAL_DIR)


def _names(paths: list[str]) -> str:
    return ", ".join(paths[:4]) + (", ..." if len(paths) > 4 else "")


def is_evaluation_summary(summary: Any) -> bool:
    """Whether a ``summary.json``'s content is an evaluation's (lt_bench.eval: ``split`` and ``checkpoint``)
    rather than a training run's."""
    return isinstance(summary, dict) and "split" in summary and "checkpoint" in summary


def training_run_files(path: Path) -> list[str]:
    """The files that make ``path`` a training run's directory: ``checkpoints/``, a ``summary.json`` that is
    not an evaluation's (one that cannot be read counts), a ``metrics.csv`` with training columns."""
    found = []
    if (path / CHECKPOINT_DIR).exists():
        found.append(f"{CHECKPOINT_DIR}/")
    summary = path / SUMMARY
    if summary.exists():
        try:
            evaluation = is_evaluation_summary(json.loads(summary.read_bytes()))
        except (OSError, ValueError):
            evaluation = False
        if not evaluation:
            found.append(SUMMARY)
    metrics = path / "metrics.csv"
    if metrics.exists():
        try:
            with open(metrics, "rb") as f:
                header = f.readline().decode(errors="replace")
        except OSError:
            header = "train/"
        if "train/" in header:  # an evaluation's metrics.csv logs test/* only
            found.append("metrics.csv")
    return found


def check_evaluation_dir(path: Path, written_by_hydra: tuple[str, ...] = ()) -> None:
    """:class:`ConfigError` when ``path`` must not receive an evaluation's outputs: it holds a training run's
    files (never written over), or any file other than logs (``*.log``), the lock and ``written_by_hydra``
    (an earlier evaluation's outputs: two evaluations never mix in one folder)."""
    if not path.is_dir():
        return
    training = training_run_files(path)
    if training:
        raise ConfigError(
            f"hydra.run.dir={path} holds a training run ({_names(training)}); an evaluation never writes "
            "over a training run's files: leave hydra.run.dir out (each evaluation gets a folder of its own, "
            f"RUN/{EVAL_DIR}/SPLIT-DATE_TIME) or give a new folder"
        )
    kept = {LOCK, *written_by_hydra}
    earlier = sorted(p.name for p in path.iterdir() if p.name not in kept and not p.name.endswith(".log"))
    if earlier:
        raise ConfigError(
            f"hydra.run.dir={path} already holds files ({_names(earlier)}); each evaluation writes into a "
            f"folder of its own: leave hydra.run.dir out (RUN/{EVAL_DIR}/SPLIT-DATE_TIME) or give a new "
            "folder"
        )


def check_not_training(run_dir: Path, own: Path) -> None:
    """:class:`RunDirInUse` while another process holds ``run_dir`` (a training still running there): its
    checkpoints and summary may change under the evaluation. ``own``: the folder this process holds."""
    if not run_dir.is_dir() or (own.is_dir() and os.path.samefile(run_dir, own)):
        return
    holder = held_elsewhere(run_dir)
    if holder is not None:
        raise RunDirInUse(
            f"{run_dir} is in use by a running lt_bench process (PID {holder}): evaluate its checkpoint once "
            "that run has ended"
        )


@contextlib.contextmanager
def prepared_evaluation(out_dir: Path, evaluated_run: Path, owner: bool = True) -> Iterator[Path]:
    """Hold ``out_dir`` for one evaluation of the run in ``evaluated_run``: locked (by the ``owner``,
    rank 0), refused when it holds a training run's or an earlier evaluation's files, or while a training
    holds ``evaluated_run``. Nothing is written here but the lock file."""
    if not owner:
        yield out_dir
        return
    hydra_wrote = (HYDRA_DIR,) if _hydra_writes_its_files() else ()
    check_evaluation_dir(out_dir, hydra_wrote)  # before the lock creates the folder
    with locked(out_dir):
        check_evaluation_dir(out_dir, hydra_wrote)  # again under the lock: another one may have just written
        check_not_training(evaluated_run, out_dir)
        yield out_dir


def first_rank() -> bool:
    """Whether this process is rank 0 (the one that holds and writes the folder)."""
    from lightning.pytorch.utilities import rank_zero_only

    return rank_zero_only.rank == 0


def _hydra_writes_its_files() -> bool:
    """Whether Hydra wrote ``.hydra/`` into the job's folder itself (a command that sets
    ``hydra.output_subdir``)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and HydraConfig.get().output_subdir is not None


class EvaluationDir(Callback):
    """A Hydra callback (``hydra.callbacks`` in ``conf/eval.yaml``): before Hydra creates the output folder
    or its log, refuses in one line (exit 2) an evaluation without ``ckpt=`` and an output folder that
    holds a training run's files or an earlier evaluation's (:func:`check_evaluation_dir`)."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        try:
            if OmegaConf.is_missing(config, "ckpt"):
                raise ConfigError(MISSING_CKPT)
            check_ckpt_exists(str(config.ckpt))  # else its folder (and RUN/eval/) would be a typo's
            if first_rank():  # a rank that rank 0 started evaluates into rank 0's folder
                check_evaluation_dir(Path(str(config.hydra.run.dir)))
        except LtBenchError as err:
            # SystemExit, not an Exception: Hydra's run_and_report would print a traceback for one
            print(f"lt_bench: error: {err}", file=sys.stderr)
            raise SystemExit(err.exit_code) from None
