"""Helpers the tests import: compose configs in-process, run the real command line in a subprocess, and
small constructors for the loss tests (float64 logits, labels, a tolerant comparison)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from lt_bench.conf import CONF_DIR as CONF  # noqa: F401  (the tests read the config tree through it)
from lt_bench.startup import compose

ROOT = Path(__file__).resolve().parents[1]

# tiny, fast settings every end-to-end test starts from
FAST = [
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
    "print_table=false",
]


def make_config(*overrides: str, fast: bool = True) -> DictConfig:
    return compose([*(FAST if fast else []), *overrides])


def run_cli(*args: str, run_dir: Path, timeout: float = 300, env: dict | None = None):
    """``python -m lt_bench ARGS`` as a user types it; returns the CompletedProcess."""
    command = [sys.executable, "-m", "lt_bench", *FAST, f"hydra.run.dir={run_dir}", *args]
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)


def sigterm_after_first_checkpoint(*args: str, run_dir: Path, timeout: float = 120) -> tuple[int, str]:
    """Start ``python -m lt_bench ARGS``, send it SIGTERM once ``checkpoints/last.ckpt`` exists (the end of
    epoch 0: training is under way), and return its exit status and stderr. A run that does not stop
    within ``timeout`` is killed with its whole process group (DDP ranks included) and fails the test."""
    command = [sys.executable, "-m", "lt_bench", *FAST, f"hydra.run.dir={run_dir}", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not (run_dir / "checkpoints" / "last.ckpt").exists():  # renamed into place: complete once seen
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run did not stop within {timeout} s of SIGTERM")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, stderr


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def y(*labels: int) -> torch.Tensor:
    return torch.tensor(labels)


def approx(value: torch.Tensor, expected: float, tol: float = 1e-6) -> None:
    assert math.isclose(value.item(), expected, rel_tol=tol, abs_tol=tol), (value.item(), expected)
