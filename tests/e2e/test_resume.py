"""Fault tolerance by proof: an interrupted run, resumed, ends exactly where an uninterrupted one does.

Runs are tiny (4 epochs of 3 batches on the embedded MNIST-LT) and in-process; an interruption is a
callback that kills training at a chosen point (see :class:`Interrupt`). Schedules, LR milestones and
PHASE's stage switch are set explicitly, so no value is interpolated from the run length.
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import signal
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

import lt_bench.train as train_module
from lt_bench.checkpointing import last_checkpoint
from lt_bench.errors import ConfigError, RunInterrupted, TrainingDiverged
from lt_bench.train import train
from tests.helpers import make_config, read_summary, sigterm_after_first_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fast_plots")]  # no test here looks at the figures

TINY = [
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=3",
    "dataset.test_per_class=20",
    "lr_schedule.warmup_epochs=1",
    "lr_schedule.milestones=[3]",
    "lr_schedule.factors=[0.1]",
]
# DRW switching at epoch 2, with SAM whose radius and weight decay change there too
DRW = [
    *TINY,
    "schedule=drw",
    "schedule.e0=2",
    "optimizer=sam",
    "optimizer.rho_after=0.1",
    "optimizer.weight_decay_after=1e-3",
]
# PHASE: stage 1 (ASL, whole network) for epochs 0-1, stage 2 (frozen backbone, MSR weights) for 2-3;
# a validation split, so the best checkpoint and its selection carry over too
PHASE = [*TINY, "method=phase", "schedule.e0=2", "dataset.val_fraction=0.2"]
# a validation split whose best epoch (1) is not the last one, so a lost selection shows
SELECT = [*TINY, "dataset.val_fraction=0.2", "optimizer.lr=0.8"]
# class-aware sampling and per-sample mixing from epoch 1, colour jitter from torch's global generator
MIXED = [
    *TINY,
    "schedule=ppw_ppmix",
    "schedule.e0=1",
    "schedule.e1=3",
    "schedule.sampling=exponent",
    "dataset.color_jitter=0.3",
]


class Killed(Exception):
    """Stands in for a process killed outright (no handler runs, nothing is saved)."""


class Interrupt(L.Callback):
    """Kills training at the start of ``epoch`` (after the previous epoch's checkpoint), or, with
    ``during_batch``, sends this process a real SIGTERM while that batch of ``epoch`` trains."""

    def __init__(self, epoch: int, during_batch: int | None = None) -> None:
        self.epoch, self.during_batch = epoch, during_batch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.during_batch is None and trainer.current_epoch == self.epoch:
            raise Killed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.during_batch):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler records it; training stops after this batch


def _run(overrides: list[str], run_dir: Path) -> dict[str, Any]:
    train(make_config(*overrides), run_dir)
    return read_summary(run_dir)


def _run_with(callback: L.Callback, overrides: list[str], run_dir: Path, monkeypatch) -> None:
    build = train_module.build_trainer

    def build_with_callback(*args, **kwargs):
        trainer, checkpoint = build(*args, **kwargs)
        trainer.callbacks.append(callback)
        return trainer, checkpoint

    with monkeypatch.context() as m:
        m.setattr(train_module, "build_trainer", build_with_callback)
        train(make_config(*overrides), run_dir)


def _results(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary.get(k) for k in ("test", "test_last", "val", "best_epoch", "best_val")}


_REFERENCES: dict[tuple[str, ...], tuple[dict[str, Any], Path]] = {}


def _reference_run(overrides: list[str], tmp_path_factory) -> tuple[dict[str, Any], Path]:
    """The uninterrupted run of ``overrides`` and its directory (run once per test session)."""
    key = tuple(overrides)
    if key not in _REFERENCES:
        run_dir = tmp_path_factory.mktemp("reference")
        _REFERENCES[key] = (_run(overrides, run_dir), run_dir)
    return _REFERENCES[key]


def _reference(overrides: list[str], tmp_path_factory) -> dict[str, Any]:
    return _reference_run(overrides, tmp_path_factory)[0]


def _interrupted_then_resumed(overrides, interrupt, run_dir, monkeypatch, expect=Killed) -> dict[str, Any]:
    with pytest.raises(expect):
        _run_with(interrupt, overrides, run_dir, monkeypatch)
    assert not (run_dir / "summary.json").exists()
    return _run([*overrides, "ckpt_path=last"], run_dir)


# -- exact resume at epoch boundaries ---------------------------------------------------------------------
@pytest.mark.parametrize("killed_at", [1, 2, 3], ids=["before_e0", "at_e0", "after_e0"])
def test_drw_with_sam_resumes_exactly_at_an_epoch_boundary(killed_at, run_dir, monkeypatch, tmp_path_factory):
    resumed = _interrupted_then_resumed(DRW, Interrupt(killed_at), run_dir, monkeypatch)
    assert _results(resumed) == _results(_reference(DRW, tmp_path_factory))
    with (run_dir / "metrics.csv").open(newline="") as f:
        epochs = [row["epoch"] for row in csv.DictReader(f)]
    assert epochs[:4] == ["0", "1", "2", "3"]  # the rows logged before the kill are kept, once


@pytest.mark.parametrize("killed_at", [1, 2, 3], ids=["stage1", "stage1_end", "stage2"])
def test_phase_resumes_exactly_in_either_stage(killed_at, run_dir, monkeypatch, tmp_path_factory):
    with pytest.raises(Killed):
        _run_with(Interrupt(killed_at), PHASE, run_dir, monkeypatch)
    state = torch.load(last_checkpoint(run_dir), weights_only=True)["state_dict"]
    in_stage2 = killed_at - 1 >= 2  # the checkpoint is from the end of epoch killed_at - 1
    assert bool(state["stage2_entered"]) == in_stage2
    # stage 2 resumes with the MSR weights computed at e0; stage 1 computes them when it reaches e0
    assert torch.equal(state["sample_weights"], torch.ones_like(state["sample_weights"])) != in_stage2
    resumed = _run([*PHASE, "ckpt_path=last"], run_dir)
    assert _results(resumed) == _results(_reference(PHASE, tmp_path_factory))


def test_sampling_mixing_and_global_rng_augmentation_resume_exactly(run_dir, monkeypatch, tmp_path_factory):
    resumed = _interrupted_then_resumed(MIXED, Interrupt(2), run_dir, monkeypatch)
    assert _results(resumed) == _results(_reference(MIXED, tmp_path_factory))


# -- SIGTERM inside an epoch ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "epoch"), [(DRW, 2), (PHASE, 2), (MIXED, 1)], ids=["drw_at_e0", "phase_stage2", "mixed"]
)
def test_sigterm_mid_epoch_saves_and_resumes_exactly(
    overrides, epoch, run_dir, monkeypatch, tmp_path_factory
):
    interrupt = Interrupt(epoch, during_batch=0)
    with pytest.raises(RunInterrupted) as stopped:
        _run_with(interrupt, overrides, run_dir, monkeypatch)
    message = str(stopped.value)
    assert f"epoch {epoch}" in message and "ckpt_path=last" in message and str(run_dir) in message
    checkpoint = torch.load(last_checkpoint(run_dir), weights_only=True)
    assert checkpoint["epoch"] == epoch
    loader_state = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state == [{"epoch": epoch, "batches_done": 1}]
    resumed = _run([*overrides, "ckpt_path=last"], run_dir)
    reference, reference_dir = _reference_run(overrides, tmp_path_factory)
    assert _results(resumed) == _results(reference)
    # the interrupted epoch's train/loss averages all its batches, and its schedule/* values are logged
    assert _epoch_rows(run_dir) == _epoch_rows(reference_dir)


def _epoch_rows(run_dir: Path) -> list[dict[str, str]]:
    """The training epochs' rows of ``metrics.csv``: losses, schedule values, validation figures."""
    with (run_dir / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    logged = [{k: v for k, v in row.items() if v} for row in rows]
    return [row for row in logged if not any(k.startswith("test") for k in row)]


def test_sigterm_on_the_command_line_saves_says_how_to_resume_and_the_resume_finishes(
    run_dir, tmp_path_factory
):
    args = [*TINY, "trainer.max_epochs=12", "trainer.limit_train_batches=2", "dataset.test_per_class=10"]
    returncode, stderr = sigterm_after_first_checkpoint(*args, run_dir=run_dir)  # 11 epochs still to go
    assert returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "lt_bench: error: stopped by SIGTERM at epoch" in stderr
    assert not (run_dir / "summary.json").exists()

    # the command the message prints continues the run (run here in-process: one start-up less)
    printed = shlex.split(stderr.split("Continue with: ")[1].strip())
    assert printed[:3] == ["python", "-m", "lt_bench"] and printed[-1] == f"hydra.run.dir={run_dir}"
    assert "ckpt_path=last" in printed
    train(make_config(*printed[3:-1], fast=False), run_dir)
    summary = read_summary(run_dir)
    assert _results(summary) == _results(_reference(args, tmp_path_factory))


# -- ckpt_path= -------------------------------------------------------------------------------------------
def test_ckpt_path_last_without_a_checkpoint_is_a_clear_error(run_dir):
    with pytest.raises(ConfigError, match="ckpt_path=last .*does not exist"):
        train(make_config("ckpt_path=last"), run_dir)


def test_missing_ckpt_path_file_is_a_clear_error(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        train(make_config(f"ckpt_path={tmp_path / 'nope.ckpt'}"), run_dir)


def test_ckpt_path_auto_starts_afresh_and_the_same_command_continues(run_dir, monkeypatch, tmp_path_factory):
    requeued_job = [*DRW, "ckpt_path=auto"]  # what a scheduler re-runs, unchanged
    with pytest.raises(Killed):
        _run_with(Interrupt(2), requeued_job, run_dir, monkeypatch)
    assert _results(_run(requeued_job, run_dir)) == _results(_reference(DRW, tmp_path_factory))


def test_resuming_a_finished_run_only_tests_it_again(capsys, tmp_path_factory):
    first, run_dir = _reference_run(DRW, tmp_path_factory)
    capsys.readouterr()
    again = _run([*DRW, "ckpt_path=last", "trainer.log_every_n_steps=7"], run_dir)
    assert _results(again) == _results(first)
    assert "warning" not in capsys.readouterr().err  # an operational setting may change silently


def test_resuming_with_other_settings_says_which(capsys, tmp_path, tmp_path_factory):
    _, run_dir = _reference_run(DRW, tmp_path_factory)
    # a finished run is left as it is: training it further starts a new run from its checkpoint
    _run([*DRW, f"ckpt_path={last_checkpoint(run_dir)}", "optimizer.lr=0.05"], tmp_path / "further")
    assert "optimizer.lr: 0.1 -> 0.05" in capsys.readouterr().err


# -- the best model so far, wherever the run continues ------------------------------------------------------
@pytest.mark.heavy
def test_a_moved_run_resumes_and_a_new_directory_retests_it_with_the_same_best_model(
    tmp_path, monkeypatch, tmp_path_factory
):
    reference = _reference(SELECT, tmp_path_factory)
    assert reference["best_epoch"] == 1  # the resumed epochs 2 and 3 score lower: a lost selection shows
    first, moved, retest = tmp_path / "first", tmp_path / "moved", tmp_path / "retest"
    with pytest.raises(Killed):
        _run_with(Interrupt(2), SELECT, first, monkeypatch)
    shutil.move(first, moved)
    assert _results(_run([*SELECT, "ckpt_path=last"], moved)) == _results(reference)
    finished = sorted(p.name for p in (moved / "checkpoints").iterdir())
    assert finished == ["best-epoch=001.ckpt", "last.ckpt"]

    # the finished run's last.ckpt, continued in a new directory (Hydra gives each call one): tested again
    # with the same selection, the best model copied in, the moved run left as it was
    again = _run([*SELECT, f"ckpt_path={moved / 'checkpoints' / 'last.ckpt'}"], retest)
    assert _results(again) == _results(reference)
    assert sorted(p.name for p in (retest / "checkpoints").iterdir()) == finished
    assert sorted(p.name for p in (moved / "checkpoints").iterdir()) == finished


@pytest.mark.heavy
def test_a_resume_into_a_new_directory_continues_with_the_selection(tmp_path, monkeypatch, tmp_path_factory):
    first, second = tmp_path / "first", tmp_path / "second"
    with pytest.raises(Killed):
        _run_with(Interrupt(2), SELECT, first, monkeypatch)
    resumed = _run([*SELECT, f"ckpt_path={last_checkpoint(first)}"], second)
    assert _results(resumed) == _results(_reference(SELECT, tmp_path_factory))
    assert (first / "checkpoints" / "best-epoch=001.ckpt").is_file()  # the first run is not touched


# -- determinism ------------------------------------------------------------------------------------------
def _without_timestamps(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("started_at", "finished_at")}


def test_same_seed_and_config_give_the_same_summary(tmp_path, tmp_path_factory):
    again = _run(MIXED, tmp_path / "again")
    assert _without_timestamps(again) == _without_timestamps(_reference(MIXED, tmp_path_factory))


# -- divergence -------------------------------------------------------------------------------------------
class PoisonWeights(L.Callback):
    """Sets one backbone weight to NaN at the start (``when="start"``) or the end of ``epoch``."""

    def __init__(self, epoch: int, when: str) -> None:
        self.epoch, self.when = epoch, when

    def _poison(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.backbone.parameters()).view(-1)[0] = float("nan")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.when == "start":
            self._poison(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.when == "end":  # before ModelCheckpoint, which Lightning always calls last
            self._poison(trainer, pl_module)


def _checkpoint_is_good_and_from_epoch(run_dir: Path, epoch: int) -> None:
    checkpoint = torch.load(last_checkpoint(run_dir), weights_only=True)
    assert checkpoint["epoch"] == epoch
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())


def test_a_nan_loss_stops_naming_epoch_step_and_loss_and_keeps_the_last_checkpoint(run_dir, monkeypatch):
    with pytest.raises(TrainingDiverged) as diverged:
        _run_with(PoisonWeights(1, "start"), [*TINY, "loss=ldam"], run_dir, monkeypatch)
    message = str(diverged.value)
    assert "ldam loss" in message and "'max_m'" in message and "nan" in message
    assert "epoch 1, step 0" in message and str(last_checkpoint(run_dir)) in message
    _checkpoint_is_good_and_from_epoch(run_dir, 0)


def test_non_finite_weights_are_never_checkpointed(run_dir, monkeypatch):
    with pytest.raises(TrainingDiverged, match="weights became non-finite during epoch 1"):
        _run_with(PoisonWeights(1, "end"), TINY, run_dir, monkeypatch)
    _checkpoint_is_good_and_from_epoch(run_dir, 0)
