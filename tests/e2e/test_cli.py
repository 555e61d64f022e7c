"""The command line as a user meets it: runs that work, and bad input that fails clearly."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from lt_bench.errors import ConfigError
from lt_bench.startup import check as validate  # the whole start-up check: values, then the method's own
from tests.helpers import make_config, read_summary, run_cli

pytestmark = pytest.mark.slow


def test_default_run_writes_summary_and_artifacts(run_dir):
    result = run_cli("print_table=true", run_dir=run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(run_dir)
    test = summary["test"]
    for key in ("top1", "balanced_acc", "many", "medium", "few", "gmean", "per_class", "n", "confusion"):
        assert key in test
    assert test["n"] == 1000  # the balanced held-out split: 100 per class
    assert np.load(run_dir / test["confusion"]).sum() == 1000  # confusion_test.npy beside summary.json
    assert summary["class_counts"][0] == 400 and summary["class_counts"][-1] == 4
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert (run_dir / "per_class_accuracy.png").exists()
    assert (run_dir / "metrics.csv").exists()
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert "balanced_acc" in result.stdout and "gmean" in result.stdout
    # where the figures were computed: a table mixing CPU and GPU runs marks the GPU cells by it
    assert summary["hardware"]["device"] == "cpu" and summary["hardware"]["name"]
    assert summary["hardware"]["torch"] == torch.__version__


# one case per path an error takes to the user: Hydra's composition (unknown option, wrong type), the
# data (a missing file), building the loss (an unknown parameter); lt_bench.config.validate's own
# refusals all leave through the same wrapper, so their messages are checked in process below
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["loss=nonexistent"], "loss"),
        (["dataset=cifar10_lt", "dataset.root=/nonexistent/cifar"], "cifar-10-batches-py"),
        (["+loss.gama=2"], "gama"),
        (["dataset.imbalance_factor=abc"], "imbalance_factor"),
    ],
)
def test_bad_input_fails_with_one_clear_message(args, needle, run_dir):
    result = run_cli(*args, run_dir=run_dir, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert needle in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["dataset.imbalance_factor=-5"], "dataset.imbalance_factor=-5.0 must be >= 1"),
        (["schedule=drw", "schedule.e0=5", "schedule.e1=3"], "schedule.e1 (3) must be >= schedule.e0 (5)"),
        (["dataset.profile=weird"], "dataset.profile='weird' is not a known option"),
    ],
)
def test_bad_values_are_refused_by_validate_with_their_fix(args, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        validate(make_config(*args))


def test_non_finite_loss_stops_with_a_message_naming_epoch_and_step(run_dir):
    # an absurd learning rate makes the loss overflow within the first steps
    result = run_cli(
        "trainer.max_epochs=3", "optimizer.lr=1e30", "lr_schedule.warmup_epochs=0", run_dir=run_dir
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "epoch" in result.stderr and "step" in result.stderr
