"""Checkpoint files are replaced atomically (a write that dies midway leaves the previous one intact), the
best model so far travels with them, a bad one is refused in one line, and ``metrics.csv`` is never lost."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from lt_bench.checkpointing import (
    INPUTS_KEY,
    AtomicCheckpointIO,
    BestCheckpoint,
    atomic_torch_save,
    check_resumable,
    config_changes,
    model_inputs,
    prepare_checkpoint_dir,
    resolve_ckpt_path,
)
from lt_bench.data.datamodule import DataInfo
from lt_bench.errors import ConfigError
from lt_bench.loggers import forget_logged_metrics, keep_logged_metrics
from lt_bench.methods import build_method
from lt_bench.schedules import schedule_of
from tests.helpers import make_config


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
    _good_checkpoint(run_dir / "checkpoints" / "last.ckpt")
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


# -- the best model so far travels by file name ------------------------------------------------------------
def test_the_best_model_selection_is_restored_against_the_folder_it_resumes_in(tmp_path):
    saved = BestCheckpoint(dirpath=tmp_path / "old" / "checkpoints", monitor="val/gmean", mode="max")
    old_best = str(Path(saved.dirpath) / "best-epoch=007.ckpt")
    saved.best_k_models, saved.kth_best_model_path = {old_best: torch.tensor(0.759)}, old_best
    saved.best_model_path, saved.best_model_score = old_best, torch.tensor(0.759)
    state = saved.state_dict()
    assert state["best_model_path"] == "best-epoch=007.ckpt"  # relative: the run directory may move

    resumed = BestCheckpoint(dirpath=tmp_path / "new" / "checkpoints", monitor="val/gmean", mode="max")
    resumed.load_state_dict(state)  # Lightning's own drops the score when the folder differs
    new_best = str(tmp_path / "new" / "checkpoints" / "best-epoch=007.ckpt")
    assert resumed.best_model_path == resumed.kth_best_model_path == new_best
    assert resumed.best_k_models == {new_best: torch.tensor(0.759)}
    assert float(resumed.best_model_score) == pytest.approx(0.759)
    # a later epoch that scores less is not selected
    assert resumed.check_monitor_top_k(ONE_PROCESS, torch.tensor(0.7)) is False


def test_a_superseded_best_file_is_removed_only_once_the_next_epoch_starts(tmp_path):
    removed: list[str] = []
    trainer = SimpleNamespace(strategy=SimpleNamespace(remove_checkpoint=removed.append))
    callback = BestCheckpoint(dirpath=tmp_path, monitor="val/gmean", mode="max")
    callback._remove_checkpoint(trainer, "best-epoch=001.ckpt")  # a new best was saved; last.ckpt not yet
    assert removed == []
    callback.on_train_epoch_start(trainer, None)  # last.ckpt of the previous epoch selects the new one
    assert removed == ["best-epoch=001.ckpt"]


def _fake_checkpoint(selected: list[str]) -> dict:
    state = {"best_k_models": {name: torch.tensor(0.5) for name in selected}}
    return {"callbacks": {"BestCheckpoint{'monitor': 'val/gmean'}": state}}


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(name.encode())


def test_a_resume_into_a_new_run_directory_copies_the_selected_best_model_and_the_checkpoint(tmp_path):
    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    _touch(old, "best-epoch=001.ckpt", "last.ckpt")
    prepare_checkpoint_dir(new, _fake_checkpoint(["best-epoch=001.ckpt"]), old / "last.ckpt")
    assert sorted(os.listdir(new)) == ["best-epoch=001.ckpt", "last.ckpt"]
    assert (new / "best-epoch=001.ckpt").read_bytes() == b"best-epoch=001.ckpt"
    assert sorted(os.listdir(old)) == ["best-epoch=001.ckpt", "last.ckpt"]  # the old run keeps its files


def test_a_resume_in_place_removes_what_a_kill_left(tmp_path):
    folder = tmp_path / "checkpoints"
    debris = [
        ".last.ckpt.k2j3.tmp",
        ".best-epoch=002.ckpt.x1.tmp",
        "best-epoch=000.ckpt",
        "best-epoch=002.ckpt",
    ]
    _touch(folder, "best-epoch=001.ckpt", "last.ckpt", *debris)
    _touch(tmp_path, ".summary.json.q8.tmp", "summary.log")
    prepare_checkpoint_dir(folder, _fake_checkpoint(["best-epoch=001.ckpt"]), folder / "last.ckpt")
    assert sorted(os.listdir(folder)) == ["best-epoch=001.ckpt", "last.ckpt"]
    assert sorted(os.listdir(tmp_path)) == ["checkpoints", "summary.log"]


def test_a_selected_best_model_that_is_missing_is_a_one_line_error(tmp_path):
    folder = tmp_path / "checkpoints"
    _touch(folder, "last.ckpt")
    with pytest.raises(ConfigError, match=r"selects best-epoch=001.ckpt .* does not exist; put it back"):
        prepare_checkpoint_dir(folder, _fake_checkpoint(["best-epoch=001.ckpt"]), folder / "last.ckpt")


# -- bad checkpoints: one line naming the file and the fix -------------------------------------------------
def _good_checkpoint(path: Path) -> Path:
    atomic_torch_save({"state_dict": {"w": torch.zeros(256)}, "loops": {}, "epoch": 0}, path)
    return path


@pytest.mark.parametrize("kind", ["empty", "truncated", "json", "dict", "list"])
def test_a_file_that_is_no_checkpoint_is_refused_in_one_line(tmp_path, kind):
    path = tmp_path / "model.ckpt"
    if kind == "truncated":
        data = _good_checkpoint(path).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        writes = {"empty": lambda: path.write_bytes(b""), "json": lambda: path.write_text('{"epoch": 3}')}
        writes.get(kind, lambda: torch.save({"a": 1} if kind == "dict" else [1, 2], path))()
    with pytest.raises(ConfigError) as refused:
        resolve_ckpt_path(str(path), tmp_path / "run")
    message = str(refused.value)
    assert str(path) in message and "\n" not in message
    expected = {
        "empty": "empty file",
        "truncated": "truncated",
        "json": "JSON",
        "dict": "a dict",
        "list": "a list",
    }
    assert expected[kind] in message


def test_a_directory_as_ckpt_path_says_which_file_to_pass(tmp_path):
    with pytest.raises(ConfigError, match=r"is a directory; pass the checkpoint file .*ckpt_path=last"):
        resolve_ckpt_path(str(tmp_path), tmp_path / "run")


def test_auto_with_a_broken_last_checkpoint_continues_from_the_newest_best(tmp_path, capsys):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(b"PK\x03\x04 half a checkpoint")
    with pytest.raises(ConfigError, match=r"last.ckpt is a truncated or damaged checkpoint; delete it"):
        resolve_ckpt_path("auto", tmp_path / "run")  # nothing to fall back on: say which file is broken
    for epoch in (1, 2):
        _good_checkpoint(folder / f"best-epoch={epoch:03d}.ckpt")
    assert resolve_ckpt_path("auto", tmp_path / "run") == str(folder / "best-epoch=002.ckpt")
    assert "last.ckpt is a truncated or damaged checkpoint; delete it" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="last.ckpt is a truncated"):
        resolve_ckpt_path("last", tmp_path / "run")  # asked for that file: no substitute


# -- metrics.csv is never deleted before its new content is on disk ---------------------------------------
def _metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_resumed_csv_logger_appends_and_a_failed_rewrite_keeps_the_rows(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import CSVLogger

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text("epoch,step,train/loss\n0,2,1.5\n1,5,1.25\n")
    logger = CSVLogger(save_dir=str(run_dir), name="", version="")
    keep_logged_metrics(logger, run_dir)
    logger.log_metrics({"train/loss": 1.0, "epoch": 2}, step=8)
    logger.save()
    assert [row["epoch"] for row in _metrics(run_dir)] == ["0", "1", "2"]

    logger.log_metrics({"test/top1": 0.5, "epoch": 3}, step=9)  # a new column: the file is rewritten

    def dies_midway(self, rows):
        raise OSError("No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", dies_midway)
    with pytest.raises(OSError):
        logger.save()
    assert [row["epoch"] for row in _metrics(run_dir)] == ["0", "1", "2"]  # Lightning's would be empty


def test_every_row_the_run_logs_is_on_disk_at_once(tmp_path):
    """What a kill -9 could lose is only what was never logged: the run's CSV logger writes each row as it
    is logged (Lightning's default keeps 100 steps' rows in memory)."""
    from lt_bench.loggers import build_logger

    logger = build_logger(make_config(), tmp_path)
    logger.log_metrics({"val/top1": 0.5, "epoch": 0}, step=3)
    logger.log_metrics({"train/loss": 1.5, "epoch": 0}, step=4)
    assert [(row["epoch"], row["step"]) for row in _metrics(tmp_path)] == [("0", "3"), ("0", "4")]


def test_rows_logged_after_the_resumed_checkpoint_are_forgotten(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,step,val/top1\n0,2,0.1\n1,5,0.2\n2,8,0.3\n,9,\n")
    forget_logged_metrics(tmp_path, 2)
    assert [row["epoch"] for row in _metrics(tmp_path)] == ["0", "1", ""]


# -- a checkpoint this run cannot continue ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    cfg = make_config()
    info = DataInfo(
        10,
        [100 // (i + 1) for i in range(10)],
        in_channels=3,
        image_size=16,
        train_size=292,
        val_size=0,
        test_size=100,
    )  # no data prepared: only the network matters here
    return build_method(cfg, info, schedule_of(cfg.schedule))


def _checkpoint_of(model, epoch: int = 1) -> dict:
    config = OmegaConf.to_container(model.cfg, resolve=True)
    return {
        "state_dict": dict(model.state_dict()),
        "epoch": epoch,
        "callbacks": {"ResumeState": {"config": config}},
        INPUTS_KEY: model_inputs(model),
    }


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda c: c["callbacks"]["ResumeState"]["config"]["method"].update(name="phase"),
            "method.name=phase",
        ),
        (
            lambda c: c["callbacks"]["ResumeState"]["config"]["backbone"].update(name="resnet32"),
            "backbone.name",
        ),
        (lambda c: c["callbacks"]["ResumeState"]["config"]["loss"].update(head="cosine"), "loss.head=cosine"),
        (lambda c: c[INPUTS_KEY].update(classes=100), "'classes': 100"),
        (lambda c: c[INPUTS_KEY].update(image_size=32), "'image_size': 32"),
        (
            lambda c: (c.pop("callbacks"), c["state_dict"].update({"head.weight": torch.zeros(100, 64)})),
            "[100, 64]",
        ),
        (
            lambda c: c.update(epoch=5),
            "during epoch 5 (0-based), which trainer.max_epochs=2 does not reach; pass trainer.max_epochs=6",
        ),
    ],
    ids=["method", "backbone", "head", "classes", "input_size", "shapes", "max_epochs"],
)
def test_a_checkpoint_this_run_cannot_continue_is_refused_in_one_line(tiny_model, change, expected):
    checkpoint = _checkpoint_of(tiny_model)
    check_resumable(checkpoint, "old.ckpt", tiny_model, max_epochs=2)  # the run's own: accepted
    change(checkpoint)
    with pytest.raises(ConfigError) as refused:
        check_resumable(checkpoint, "old.ckpt", tiny_model, max_epochs=2)
    assert expected in str(refused.value) and "ckpt_path=old.ckpt" in str(refused.value)
    assert "\n" not in str(refused.value)
