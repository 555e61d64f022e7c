"""Errors that reach the user as one clear message (no traceback) and a non-zero exit."""


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
