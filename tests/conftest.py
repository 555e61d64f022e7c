"""Shared helpers: compose configs in-process, or run the real command line in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from lt_bench.config import register

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# tiny, fast settings every end-to-end test starts from
FAST = [
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
    "print_table=false",
]


def make_config(*overrides: str, fast: bool = True) -> DictConfig:
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=[*(FAST if fast else []), *overrides])


def run_cli(*args: str, run_dir: Path, timeout: float = 300, env: dict | None = None):
    """``python -m lt_bench ARGS`` as a user types it; returns the CompletedProcess."""
    command = [sys.executable, "-m", "lt_bench", *FAST, f"hydra.run.dir={run_dir}", *args]
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"
