"""Checkpoint files are replaced atomically: a write that dies midway leaves the previous one intact."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lt_bench.checkpointing import (
    AtomicCheckpointIO,
    BestCheckpoint,
    atomic_torch_save,
    config_changes,
    resolve_ckpt_path,
)
from lt_bench.errors import ConfigError


def test_checkpoints_are_written_to_a_temporary_file_then_renamed(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"v": 1}, path)
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append((a, b)), real_replace(a, b)))
    AtomicCheckpointIO().save_checkpoint({"v": 2}, path)
    ((tmp, target),) = replaced
    assert Path(tmp).parent == path.parent and Path(target) == path
    assert torch.load(path, weights_only=True) == {"v": 2}


def test_a_write_that_dies_midway_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"weights": torch.arange(10)}, path)

    def dies_midway(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # as a kill would, after some bytes reached the disk

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"weights": torch.zeros(10)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["weights"], torch.arange(10))
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temporary file left behind


def test_ckpt_path_values(tmp_path):
    run_dir = tmp_path / "run"
    assert resolve_ckpt_path(None, run_dir) is None
    assert resolve_ckpt_path("auto", run_dir) is None  # nothing to continue: start afresh
    with pytest.raises(ConfigError, match="ckpt_path=last"):
        resolve_ckpt_path("last", run_dir)
    atomic_torch_save({}, run_dir / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path("auto", run_dir) == resolve_ckpt_path("last", run_dir)
    assert resolve_ckpt_path("last", run_dir) == str(run_dir / "checkpoints" / "last.ckpt")


def test_config_changes_ignore_how_a_run_is_executed():
    saved = {"optimizer": {"lr": 0.1}, "trainer": {"devices": 1, "max_epochs": 4}, "ckpt_path": None}
    current = {"optimizer": {"lr": 0.1}, "trainer": {"devices": 4, "max_epochs": 8}, "ckpt_path": "last"}
    assert config_changes(saved, current) == ["trainer.max_epochs: 4 -> 8"]


# just enough of a Trainer for check_monitor_top_k: one process decides alone
ONE_PROCESS = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda decision: decision))


@pytest.mark.parametrize(
    "mode, best, current, replaces",
    [
        ("max", 0.5, 0.5, True),  # a tie goes to the later epoch
        ("max", 0.5, 0.6, True),
        ("max", 0.5, 0.4, False),
        ("min", 0.5, 0.5, True),
        ("min", 0.5, 0.4, True),
        ("min", 0.5, 0.6, False),
    ],
)
def test_best_checkpoint_keeps_the_later_epoch_on_ties(tmp_path, mode, best, current, replaces):
    callback = BestCheckpoint(dirpath=tmp_path, monitor="val/gmean", mode=mode, save_top_k=1)
    callback.best_k_models = {"best-epoch=003.ckpt": torch.tensor(best)}
    callback.kth_best_model_path = "best-epoch=003.ckpt"
    assert callback.check_monitor_top_k(ONE_PROCESS, torch.tensor(current)) is replaces
