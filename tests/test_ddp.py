"""Two CPU processes over gloo: every test sample is counted exactly once."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_two_process_ddp_counts_every_test_sample_once(run_dir):
    result = run_cli(
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "dataset.test_per_class=37",  # 370 test images, an odd number per process shard
        run_dir=run_dir,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test"]["n"] == 370
    assert sum(map(sum, summary["test"]["confusion"])) == 370
