"""Errors that reach the user as one clear message (no traceback) and a non-zero exit."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
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


# What a full device's line tells a training run to do once there is space again; one_line_errors(then=)
# says it for another command (an evaluation runs again: it has nothing to continue).
CONTINUE_TRAINING = "continue the run with ckpt_path=auto"


class CannotWrite(LtBenchError):
    """A file of the run could not be written: the device is full, or the place is read-only. The
    atomic writes (:mod:`lt_bench.atomic`) leave what the file held before intact.

    ``then``: the step after the fix, in the message (:data:`CONTINUE_TRAINING` by default);
    :meth:`saying` gives the same error with another."""

    exit_code = 1

    def __init__(self, what: str, fix: str, then: str | None = CONTINUE_TRAINING) -> None:
        self.what, self.fix = what, fix
        super().__init__(f"{what}; {fix}" + (f", then {then}" if then else ""))
        self.then = then

    def saying(self, then: str) -> CannotWrite:
        return self if self.then is None else CannotWrite(self.what, self.fix, then)


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
                f"no space left on device{where} (the file keeps what it held before)",
                "free some space or choose another hydra.run.dir",
            )
        if isinstance(cause, OSError) and cause.errno in NO_WRITE:
            return CannotWrite(
                f"cannot write{where} ({cause.strerror})",
                "choose a writable hydra.run.dir (or make this one writable)",
                then=None,
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
def one_line_errors(then: str = CONTINUE_TRAINING) -> Iterator[None]:
    """An :class:`LtBenchError` leaves as ``lt_bench: error: MESSAGE`` on stderr (and in the log) and its
    exit status, instead of a traceback; so do a full disk and a read-only run directory anywhere, and a
    Ctrl+C outside training (inside it, :mod:`lt_bench.signals` stops the run and says how to continue).
    SystemExit passes through Hydra untouched.

    ``then``: what a full device's line says to do once there is space (the command's own way back). After
    a write failure the log file may be on the same full device: logging's own error reports (a traceback
    per record) are turned off, so the line stays the only output."""
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
        if isinstance(err, CannotWrite):
            err = err.saying(then)
            logging.raiseExceptions = False  # the process ends now; a log on the full device says nothing
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


# -- Hydra's refusals of the command line, in one line --------------------------------------------------
HYDRA_GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def _first_line(text: object) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _null_group_override(argv: Sequence[str]) -> str | None:
    """The ``GROUP=null`` on the command line (Hydra's message does not name it)."""
    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        if value.strip().lower() in ("null", "none") and "/" not in value and key and "." not in key:
            return key
    return None


def hydra_error_line(err: BaseException, argv: Sequence[str] = ()) -> str | None:
    """One line for Hydra's refusal of a command line (an unknown option or key, a value of the wrong type,
    a malformed override), with the closest valid option or key; ``None`` for any other exception.

    ``argv``: the command line (Hydra's message for ``GROUP=null`` does not name the group)."""
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options:
        group, _, option = str(err.missing_cfg_file).rpartition("/")
        options = sorted(str(o) for o in err.options)
        if group:
            return (
                f"{group}={option}: {group} has no option {option!r}{_did_you_mean(option, options)} "
                f"(options: {', '.join(options)})"
            )
    if isinstance(err, OverrideParseException):
        return f"cannot parse {err.override!r}: {_first_line(err.message)} (override syntax: {HYDRA_GRAMMAR})"
    if isinstance(err, ValueError) and str(err).startswith(
        "Config group override must be a string or a list"
    ):
        group = _null_group_override(argv) or "GROUP"
        hint = " (logger=none: no logger at all)" if group == "logger" else ""
        return f"{group}=null: a config group takes an option name, not null; pick one of its options{hint}"
    if isinstance(err, ValueError) and "No trials are completed yet" in str(err):
        return (
            "no trial of the search finished: every trial was refused or diverged (the errors above say "
            "why); fix the search's ranges or the fixed overrides, then run it again"
        )
    if not isinstance(err, ConfigCompositionException):
        return None
    message, cause = str(err), err.__cause__
    if message.startswith("Sweeping over Hydra's configuration is not supported"):
        where = message.partition(":")[2].strip().strip("'")
        key, _, space = where.partition("=")
        param = key.removeprefix("hydra.sweeper.params.")
        return (
            f"{where}: Hydra does not sweep over its own configuration; give the search range as the "
            f"parameter itself: '{param}={space}' (it replaces the search file's range)"
        )
    if message.startswith("Could not override") and cause is not None:
        full_key = str(getattr(cause, "full_key", "") or message.split("'")[1])
        parent = getattr(cause, "parent_node", None)
        prefix = full_key.rpartition(".")[0]
        siblings = [f"{prefix}.{k}" if prefix else str(k) for k in (parent or {})]
        where = f" in {prefix}" if prefix else ""
        return (
            f"{full_key}: no such key{where}{_did_you_mean(full_key, siblings)} "
            f"(a '+' adds a key: +{full_key}=...)"
        )
    if message.startswith("Could not append to config"):
        key = message.split("'")[1] if "'" in message else "the key"
        return f"+{key}: {key} exists already; drop the '+' ({key}=...) to change it"
    detail = f": {_first_line(cause)}" if cause is not None and _first_line(cause) else ""
    return f"{_first_line(message)}{detail}"


def one_line_hydra_errors() -> None:
    """Make Hydra's refusals of the command line one ``lt_bench: error: ...`` line (:func:`hydra_error_line`)
    and exit status 2, as lt_bench's own refusals, instead of Hydra's multi-line report and status 1.

    Hydra reports them through ``hydra._internal.utils.run_and_report`` before any lt_bench code runs; this
    wraps it (idempotent). Any other exception, and every exception under ``HYDRA_FULL_ERROR=1``, is
    reported by Hydra as before. Called by the entry points that use ``@hydra.main``."""
    import hydra._internal.utils as hydra_utils

    original = hydra_utils.run_and_report
    if getattr(original, "lt_bench", False):
        return

    def run_and_report(func: Any) -> Any:
        try:
            return func()
        except Exception as err:  # noqa: BLE001 - every other exception goes back to Hydra's report
            line = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else hydra_error_line(err, sys.argv[1:])
            if line is None:

                def again(error: Exception = err) -> Any:
                    raise error

                return original(again)
            print(f"lt_bench: error: {line}", file=sys.stderr)  # before Hydra's logging: no log file yet
            raise SystemExit(ConfigError.exit_code) from None

    run_and_report.lt_bench = True  # type: ignore[attr-defined]
    hydra_utils.run_and_report = run_and_report
