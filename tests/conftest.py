"""Fixtures shared by the tests (plain helpers live in tests/helpers.py).

The suite runs on two xdist workers (``make test``: ``pytest -n 2``), so each worker, and each run it
starts, computes on one thread: two workers on two cores, no oversubscription.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported; inherited by the runs started

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def fast_plots(monkeypatch):
    """A run's figures (per-class accuracy, reliability) as empty files, for an in-process run whose test
    does not look at them (tests.helpers.skip_plots)."""
    from tests.helpers import skip_plots

    skip_plots(monkeypatch)
