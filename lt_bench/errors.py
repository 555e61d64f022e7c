"""Errors that reach the user as one clear message (no traceback) and a non-zero exit."""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback


class LtBenchError(Exception):
    """Base class: the message says what is wrong and how to fix it."""

    exit_code = 2


class ConfigError(LtBenchError):
    """A configuration value is invalid (unknown option, out-of-range value, bad combination)."""


class DataError(LtBenchError):
    """A dataset file is missing or malformed."""


class TrainingDiverged(LtBenchError):
    """The training loss became non-finite."""


class RunInterrupted(LtBenchError):
    """A SIGTERM or SIGINT stopped the run; the message says how to continue it."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a process the signal ended

    def __init__(self, message: str, exit_code: int = 143) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 130 for SIGINT


class RankLost(LtBenchError):
    """Another DDP rank stopped answering (the collective timeout) or died."""

    exit_code = 1


class CannotWrite(LtBenchError):
    """A file of the run could not be written: the device is full, or the place is read-only. The
    atomic writes (:mod:`lt_bench.atomic`) leave what the file held before intact."""

    exit_code = 1


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NO_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def _short_zip_write(err: BaseException) -> bool:
    # torch.save's zip writer turns a failed write into its own RuntimeError, often with no OSError left
    # in its chain: "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598" (a short
    # write) or "PytorchStreamWriter failed writing file ...: file write failed"
    text = str(err)
    return (
        isinstance(err, RuntimeError)
        and "inline_container.cc" in text
        and ("unexpected pos" in text or "file write failed" in text)
    )


def write_failure(
    err: BaseException, path: Path | str | None, within: Path | None = None
) -> CannotWrite | None:
    """The one-line error for ``err`` raised while writing ``path`` (``None``: the failing write's own
    file name, else the folder ``within``), or ``None`` when ``err`` is not about space or permissions."""
    for cause in _chain(err):
        name = path if path is not None else getattr(cause, "filename", None)
        if name is None and within is not None:
            name = f"a file under {within}"
        where = f": {name}" if name is not None else ""
        if (isinstance(cause, OSError) and cause.errno in NO_SPACE) or _short_zip_write(cause):
            return CannotWrite(
                f"no space left on device{where} (the file keeps what it held before); free some space "
                "or choose another hydra.run.dir, then continue the run with ckpt_path=auto"
            )
        if isinstance(cause, OSError) and cause.errno in NO_WRITE:
            return CannotWrite(
                f"cannot write{where} ({cause.strerror}); choose a writable hydra.run.dir "
                "(or make this one writable)"
            )
    return None


@contextlib.contextmanager
def explained_write_errors(path: Path | str) -> Iterator[None]:
    """Around the write of ``path``: a full device or a read-only place becomes one line naming it."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        failure = write_failure(err, path)
        if failure is None:
            raise
        raise failure from err


def _run_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """An :class:`LtBenchError` leaves as ``lt_bench: error: MESSAGE`` on stderr (and in the log) and its
    exit status, instead of a traceback; so do a full disk and a read-only run directory anywhere, and a
    Ctrl+C outside training (inside it, :mod:`lt_bench.signals` stops the run and says how to continue).
    SystemExit passes through Hydra untouched."""
    try:
        try:
            yield
        except (OSError, RuntimeError) as err:
            failure = write_failure(err, None, _run_dir())
            if failure is None:
                raise
            raise failure from None
        except KeyboardInterrupt:
            raise RunInterrupted(
                "interrupted by SIGINT (Ctrl+C) outside training; the same command with ckpt_path=auto "
                "continues the run from its last checkpoint, if it has one",
                exit_code=130,
            ) from None
    except LtBenchError as err:
        print(f"lt_bench: error: {err}", file=sys.stderr)
        logging.getLogger("lt_bench").error("%s", err)
        raise SystemExit(err.exit_code) from None


class WritableOutputDir(Callback):
    """A Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``): refuses an output folder that cannot
    be written, in one line, before Hydra creates it; Hydra's own ``mkdir`` would end in a traceback,
    before lt_bench's code runs."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._check(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._check(Path(config.hydra.sweep.dir), "hydra.sweep.dir")

    @staticmethod
    def _check(path: Path, key: str) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as err:
            # SystemExit, not an Exception: Hydra's run_and_report would print a traceback for one
            print(
                f"lt_bench: error: cannot write {key}={path} ({err.strerror}); choose a writable {key}",
                file=sys.stderr,
            )
            raise SystemExit(CannotWrite.exit_code) from None
