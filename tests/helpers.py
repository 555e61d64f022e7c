"""Helpers the tests import: the tiny-run preset, compose configs in-process, run the real command line in a
subprocess, read a run's summary, compose and run ``lt_bench.eval`` in-process, and small constructors for
the loss tests (float64 logits, labels, a tolerant comparison)."""

from __future__ import annotations

import json
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

# the one tiny-run preset every end-to-end test starts from: lt_bench/conf/debug/tiny.yaml (2 epochs on the
# CPU, no progress bar, no results table). It is applied after the recipe, and a value given on the command
# line (trainer.max_epochs=1, say) still wins over it.
FAST = ["debug=tiny"]


def make_config(*overrides: str, fast: bool = True) -> DictConfig:
    return compose([*(FAST if fast else []), *overrides])


def read_summary(run_dir: Path) -> dict:
    """The run's ``summary.json``."""
    return json.loads((Path(run_dir) / "summary.json").read_text())


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a command the tests start: this one, Python's warnings off, ``extra`` on top."""
    return {**os.environ, "PYTHONWARNINGS": "ignore", **extra}


def cli_command(*args: str, run_dir: Path | None = None, multirun: bool = False) -> list[str]:
    """``python -m lt_bench [--multirun] debug=tiny [hydra.run.dir=RUN_DIR] ARGS``."""
    where = [] if run_dir is None else [f"hydra.run.dir={run_dir}"]
    return [sys.executable, "-m", "lt_bench", *(["--multirun"] if multirun else []), *FAST, *where, *args]


def run_cli(*args: str, run_dir: Path, timeout: float = 300, env: dict | None = None):
    """``python -m lt_bench ARGS`` as a user types it; returns the CompletedProcess."""
    command = cli_command(*args, run_dir=run_dir)
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=cli_env(**(env or {}))
    )


def sigterm_after_first_checkpoint(*args: str, run_dir: Path, timeout: float = 120) -> tuple[int, str]:
    """Start ``python -m lt_bench ARGS``, send it SIGTERM once ``checkpoints/last.ckpt`` exists (the end of
    epoch 0: training is under way), and return its exit status and stderr. A run that does not stop
    within ``timeout`` is killed with its whole process group (DDP ranks included) and fails the test."""
    process = subprocess.Popen(
        cli_command(*args, run_dir=run_dir),
        cwd=ROOT,
        env=cli_env(),
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


def skip_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Write a run's figures (per-class accuracy, reliability) as empty files: drawing them is a large part
    of a tiny in-process run's time. The ``fast_plots`` fixture (tests/conftest.py) calls it."""
    from lt_bench import summary as run_summary

    monkeypatch.setattr(
        run_summary, "plot_run_per_class", lambda result, counts, path, title="": path.write_bytes(b"")
    )
    monkeypatch.setattr(
        run_summary, "plot_reliability", lambda calibration, path, title="": path.write_bytes(b"")
    )


# -- lt_bench.eval in process ---------------------------------------------------------------------------
def compose_eval(*overrides: str) -> DictConfig:
    """The ``eval`` config of ``overrides``, composed as ``python -m lt_bench.eval OVERRIDES`` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from lt_bench.eval import register

    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="eval", overrides=list(overrides))


def evaluate_in_process(tmp_path: Path, *overrides: str) -> dict:
    """``lt_bench.eval`` of ``overrides`` in this process, written to ``tmp_path/eval``; its summary."""
    from lt_bench.eval import evaluate

    return evaluate(compose_eval(*overrides), list(overrides), tmp_path / "eval")


# -- the loss tests' constructors -----------------------------------------------------------------------
def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def y(*labels: int) -> torch.Tensor:
    return torch.tensor(labels)


def approx(value: torch.Tensor, expected: float, tol: float = 1e-6) -> None:
    assert math.isclose(value.item(), expected, rel_tol=tol, abs_tol=tol), (value.item(), expected)
