"""Two CPU processes over gloo: every test sample is counted exactly once; a SIGTERM stops both ranks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import run_cli, sigterm_after_first_checkpoint

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
    assert np.load(run_dir / summary["test"]["confusion"]).sum() == 370


def test_sigterm_stops_both_processes_at_one_step_and_the_run_resumes(run_dir):
    # Lightning 2.6's own handler broadcasts inside the signal handler and hangs two gloo ranks here
    args = [
        "trainer=ddp_cpu",
        "trainer.max_epochs=12",
        "trainer.limit_train_batches=2",
        "dataset.test_per_class=10",
    ]
    returncode, stderr = sigterm_after_first_checkpoint(*args, run_dir=run_dir, timeout=200)
    assert returncode == 143, stderr[-3000:]
    assert stderr.count("lt_bench: error: stopped by SIGTERM") == 1  # rank 0 alone says so
    resumed = run_cli(*args, "ckpt_path=last", run_dir=run_dir, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["test"]["n"] == 100
