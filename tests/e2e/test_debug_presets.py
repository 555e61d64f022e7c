"""The presets users of lightning-hydra-template bring: `debug=` (fdr, overfit, limit, profile, and the
tests' own tiny run), `trainer=cpu|gpu|ddp`, and the configuration tree printed at start."""

from __future__ import annotations

import pytest

from lt_bench.startup import check
from tests.helpers import make_config, read_summary, run_cli

DEBUG = {
    "tiny": {"max_epochs": 2, "accelerator": "cpu", "enable_progress_bar": False},
    "fdr": {"fast_dev_run": True},
    "overfit": {"max_epochs": 20, "overfit_batches": 3},
    "limit": {"max_epochs": 3, "limit_train_batches": 3},
    "profile": {"max_epochs": 1, "profiler": "simple"},
}


@pytest.mark.parametrize("preset", sorted(DEBUG))
def test_every_debug_preset_composes_validates_and_sets_its_trainer_keys(preset):
    cfg = make_config(f"debug={preset}", fast=False)
    check(cfg)
    assert {k: cfg.trainer[k] for k in DEBUG[preset]} == DEBUG[preset]


def test_debug_applies_after_a_recipe_and_the_command_line_wins():
    cfg = make_config("experiment=ldam_drw", "debug=limit", "trainer.max_epochs=5", fast=False)
    assert (cfg.trainer.max_epochs, cfg.trainer.limit_train_batches) == (5, 3)
    assert cfg.loss.name == "ldam"  # the recipe is still there underneath


def test_trainer_presets():
    assert make_config("trainer=cpu", fast=False).trainer.accelerator == "cpu"
    gpu, ddp = make_config("trainer=gpu", fast=False).trainer, make_config("trainer=ddp", fast=False).trainer
    assert (gpu.accelerator, gpu.devices) == ("gpu", 1)
    assert (ddp.accelerator, ddp.devices, ddp.strategy) == ("gpu", -1, "ddp")


@pytest.mark.slow
def test_debug_fdr_runs_one_batch_end_to_end_and_prints_the_config_tree(run_dir):
    result = run_cli("debug=fdr", "print_config=true", run_dir=run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.lstrip().startswith("config") and "├── dataset" in result.stdout
    summary = read_summary(run_dir)
    assert summary["status"] == "finished" and summary["config"]["trainer"]["fast_dev_run"] is True
    assert summary["test"]["n"] > 0
    quiet = run_cli("debug=fdr", "print_config=false", run_dir=run_dir / "quiet")
    assert quiet.returncode == 0 and "├── dataset" not in quiet.stdout
