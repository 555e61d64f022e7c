"""Atomic file writes that honour the umask: every file a run writes (summary.json, checkpoints, .npy/.npz
outputs) goes through :func:`atomic_write`.

``tempfile.mkstemp`` creates its file with mode 0600 whatever the umask, and the rename keeps that mode:
without the ``fchmod`` below a run's summary and checkpoints could not be read by the group that shares
an output folder, unlike every other file of the run (plots, logs, ``.hydra/``), which ``open`` creates
as ``0666 & ~umask``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from lt_bench.errors import explained_write_errors


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` can only be read by
    setting it, which briefly affects files other threads create meanwhile)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[IO[Any]], None], binary: bool = False) -> None:
    """``write(f)`` into a temporary file beside ``path``, fsync, then rename over it.

    ``os.replace`` within one folder is atomic, so ``path`` holds either its previous content or the new
    one, never a truncated file; the file gets the mode ``open`` would give it (``0666 & ~umask``). A full
    device or a read-only folder leaves as one line naming ``path`` (:func:`explained_write_errors`).
    """
    with explained_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
            with os.fdopen(fd, "wb" if binary else "w") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
