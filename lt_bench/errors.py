"""Errors that reach the user as one clear message (no traceback) and a non-zero exit."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator


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
    """A SIGTERM stopped the run; the message says how to continue it."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a process the signal ended


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """An :class:`LtBenchError` leaves as ``lt_bench: error: MESSAGE`` on stderr (and in the log) and its
    exit status, instead of a traceback; SystemExit passes through Hydra untouched."""
    try:
        yield
    except LtBenchError as err:
        print(f"lt_bench: error: {err}", file=sys.stderr)
        logging.getLogger("lt_bench").error("%s", err)
        raise SystemExit(err.exit_code) from None
