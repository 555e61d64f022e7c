"""``python -m lt_bench.eval`` on a full device: one line (exit 1) that says to run the evaluation again (not
training's ``ckpt_path=auto``), no traceback from the failing write nor from the log on the same device,
and no summary.json.

The device fills on purpose by this module itself, imported as a ``plugins`` module: with
``LT_BENCH_TEST_FULL=1`` set, every ``os.fsync`` fails with ENOSPC (as it does on a full ext4 or NFS
volume: the data written so far cannot be stored) and the run's log files write to /dev/full.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys

import pytest

from tests.helpers import FAST, ROOT

FULL_ENV = "LT_BENCH_TEST_FULL"


def _fill_the_device() -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    os.fsync = fsync
    for name in (None, "lt_bench"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.FileHandler):
                handler.stream = open("/dev/full", "w")  # noqa: SIM115 (the handler owns it)


if os.environ.get(FULL_ENV):
    _fill_the_device()

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full"),
]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def test_eval_on_a_full_device_is_one_line_and_writes_no_summary(tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "lt_bench",
        *FAST,
        "dataset.test_per_class=20",
        f"hydra.run.dir={run_dir}",
    ]
    trained = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert trained.returncode == 0, trained.stderr[-3000:]
    out = tmp_path / "eval"
    command = [sys.executable, "-m", "lt_bench.eval", f"ckpt={run_dir}", f"hydra.run.dir={out}",
               "plugins=[tests.faults.test_eval_full_disk]"]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**ENV, FULL_ENV: "1"}
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    print(f"\n{line}")
    assert line.startswith(f"lt_bench: error: no space left on device: {out}/")  # its first file
    assert line.endswith("free some space or choose another hydra.run.dir, then run the evaluation again")
    assert "ckpt_path" not in line
    assert not (out / "summary.json").exists() and not list(out.glob(".*.tmp"))
