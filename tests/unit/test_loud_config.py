"""A run never silently does something other than what its config says (issue 15, part B).

- a switch at ``schedule.e0`` that cannot happen inside the run, LR milestones after its end: one line,
  exit 2, before any data is read;
- ``+trainer.X`` (and ``+optimizer.X``, ``+lr_schedule.X``, a top-level ``+X``) that nothing reads: one line;
- ``trainer.gradient_clip_val`` / ``gradient_clip_algorithm`` / ``accumulate_grad_batches`` reach Lightning
  and take effect; SAM with accumulation is refused;
- ``trainer.limit_train_batches=1`` is one batch (an int stays an int), ``0.5`` half the epoch;
- an imbalance factor the data cannot give warns at start (one line) and is recorded in summary.json.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from lt_bench.errors import ConfigError
from lt_bench.startup import check as validate  # the whole start-up check: values, then the method's own
from lt_bench.train import build_run, build_trainer, realised_imbalance
from tests.helpers import make_config, read_summary, run_cli


def _one_line_error(result) -> str:
    """The run stopped with exit 2 and exactly one line on stderr, no traceback; returns the line."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lt_bench: error: ")
    return lines[0]


# -- the command line: each case, its message ----------------------------------------------------------
CLI_CASES = {
    # PHASE's stage switch at 80% of a 1-epoch run is epoch 0: stage 1 would never run (no data needed)
    "two_stage_switch_at_epoch_0": (
        ["experiment=phase", "dataset=cifar100_lt", "trainer.max_epochs=1"],
        ["schedule.e0=0", "method=phase", "trainer.max_epochs"],
    ),
    "drw_switch_after_the_run": (
        ["schedule=drw", "schedule.e0=50", "trainer.max_epochs=10"],
        ["schedule.e0=50 >= trainer.max_epochs=10", "schedule=drw", "never"],
    ),
    "loss_after_e0_without_a_switch": (["loss=vs_tla"], ["loss.after_e0", "schedule=none"]),
    "sam_rho_after_after_the_run": (
        ["optimizer=sam", "optimizer.rho_after=0.1", "schedule=drw", "schedule.e0=5", "trainer.max_epochs=5"],
        ["schedule.e0=5 >= trainer.max_epochs=5", "optimizer.rho_after"],
    ),
    "lr_milestones_after_the_run": (
        ["lr_schedule.milestones=[160,180]", "trainer.max_epochs=10"],
        ["lr_schedule.milestones=[160, 180]", "trainer.max_epochs=10", "never apply"],
    ),
    "unknown_plus_trainer_key": (
        ["+trainer.gradient_clp_val=1.0"],
        ["trainer.gradient_clp_val: no such trainer key", "gradient_clip_val"],
    ),
    "sam_with_accumulation": (
        ["optimizer=sam", "trainer.accumulate_grad_batches=4"],
        ["trainer.accumulate_grad_batches=4", "optimizer=sam"],
    ),
    "limit_train_batches_neither_batches_nor_fraction": (
        ["trainer.limit_train_batches=1.5"],
        ["trainer.limit_train_batches=1.5", "integer", "fraction"],
    ),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_loud_configuration_is_refused_with_its_message(case):
    args, needles = CLI_CASES[case]
    with pytest.raises(ConfigError) as refused:
        validate(make_config(*args, fast=False))
    for needle in needles:
        assert needle in str(refused.value), refused.value


@pytest.mark.slow
def test_loud_configuration_stops_the_command_line_with_one_line(run_dir):
    """The command line turns the refusal into one line and exit 2 before any data is read (the other
    cases' messages are checked in process above; lt_bench.errors.one_line_errors serves them all)."""
    args, needles = CLI_CASES["two_stage_switch_at_epoch_0"]
    line = _one_line_error(run_cli(*args, run_dir=run_dir, timeout=120))
    for needle in needles:
        assert needle in line, line
    assert not (run_dir / "summary.json").exists()


# -- the same checks, more cases, in process ------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        # a ramp whose progress is still 0 at the last epoch
        (["schedule=ppw", "schedule.e0=9", "schedule.e1=12", "trainer.max_epochs=10"], "p(E) is 0"),
        (["schedule=pb", "trainer.max_epochs=1"], "schedule=pb's progress"),
        (["method=crt", "schedule.e0=0", "schedule.e1=0"], "method=crt enters its second stage"),
        (["optimizer.weight_decay_after=0.0"], "optimizer.weight_decay_after"),
        (["method=kps_ga", "schedule.e0=2"], "loss.after_e0"),
        (["optimizer.rho_after=0.1"], "read by optimizer=sam only"),
        (["+optimizer.momentun=0.5"], "optimizer.momentun: no such optimizer key"),
        (["+lr_schedule.milestone=[3]"], "lr_schedule.milestone: no such lr_schedule key"),
        (["+max_epochs=3"], "max_epochs: no such top-level key"),
        (["trainer.limit_train_batches=0"], "trainer.limit_train_batches=0"),
        (["trainer.gradient_clip_val=0"], "trainer.gradient_clip_val=0"),
        (["trainer.gradient_clip_val=1", "trainer.gradient_clip_algorithm=l2"], "gradient_clip_algorithm"),
        (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0"),
        (["trainer.select_by=test/top1"], "on the test set"),
    ],
)
def test_validate_names_the_key(overrides, needle):
    with pytest.raises(ConfigError) as err:
        validate(make_config(*overrides))
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["schedule=rw"],  # weights from epoch 0 by design
        ["schedule=pb"],  # a ramp over the whole run
        ["schedule=drw", "trainer.max_epochs=1"],  # 80% of 1 epoch: a step at 0, as rw
        ["schedule=ppw", "schedule.e0=0", "schedule.e1=3", "trainer.max_epochs=3"],
        ["method=phase"],  # 80% of the default 2-epoch test run: stage 2 from epoch 1
        ["method=vs_tla_adrw", "optimizer=sam", "optimizer.rho_after=0.1", "optimizer.weight_decay_after=0"],
        ["+trainer.gradient_clip_val=1.0", "trainer.accumulate_grad_batches=2"],
        ["trainer.limit_train_batches=1"],
        ["trainer.limit_train_batches=1.0"],
        ["lr_schedule.milestones=[1]", "lr_schedule.factors=[0.1]"],
    ],
)
def test_configurations_that_do_what_they_say_pass(overrides):
    validate(make_config(*overrides))


# -- the trainer keys take effect -------------------------------------------------------------------------
class OptimizerSteps(L.Callback):
    """The global L2 norm and the largest element of the gradients each optimizer step applied."""

    def __init__(self) -> None:
        self.steps: dict[int, tuple[float, float]] = {}

    @property
    def norms(self) -> list[float]:
        return [norm for norm, _ in self.steps.values()]

    @property
    def largest(self) -> list[float]:
        return [largest for _, largest in self.steps.values()]

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        def record(optimizer, args, kwargs) -> None:
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            norm = float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))
            # keyed by step: SAM's step calls its base class's step, and torch may hook both
            self.steps[trainer.global_step] = (norm, max(float(g.abs().max()) for g in grads))

        # after step(): the gradients are the ones the update used (for SAM, those at the perturbed point)
        trainer.optimizers[0].register_step_post_hook(record)


def _fit(tmp_path, *overrides: str) -> tuple[L.Trainer, OptimizerSteps]:
    """Train through build_trainer, the path a run takes, with the optimizer's steps recorded."""
    cfg = make_config("dataset.test_per_class=10", "logger=csv", *overrides)
    validate(cfg)
    L.seed_everything(cfg.seed, verbose=False)
    _, datamodule, model = build_run(cfg)
    trainer, _ = build_trainer(cfg, tmp_path, datamodule.has_val)
    steps = OptimizerSteps()
    trainer.callbacks.append(steps)
    trainer.fit(model, datamodule=datamodule)
    return trainer, steps


def test_limit_train_batches_one_is_one_batch_and_stays_an_int():
    assert make_config("trainer.limit_train_batches=1").trainer.limit_train_batches == 1
    assert isinstance(make_config("trainer.limit_train_batches=1").trainer.limit_train_batches, int)
    assert isinstance(make_config("trainer.limit_train_batches=0.5").trainer.limit_train_batches, float)


def test_limit_train_batches_counts_batches_or_a_fraction(tmp_path):
    one, _ = _fit(tmp_path / "one", "trainer.max_epochs=1", "trainer.limit_train_batches=1")
    assert one.num_training_batches == 1 and one.global_step == 1
    full, _ = _fit(tmp_path / "full", "trainer.max_epochs=1", "trainer.limit_train_batches=1.0")
    half, _ = _fit(tmp_path / "half", "trainer.max_epochs=1", "trainer.limit_train_batches=0.5")
    assert full.num_training_batches > 2  # 1.0 is the whole epoch
    assert half.num_training_batches == int(0.5 * full.num_training_batches)


@pytest.mark.parametrize("optimizer", ["sgd", "sam"])
def test_gradient_clipping_bounds_the_gradient_the_optimizer_applies(tmp_path, optimizer):
    args = [f"optimizer={optimizer}", "trainer.max_epochs=1", "trainer.limit_train_batches=3"]
    _, free = _fit(tmp_path / "free", *args)
    assert max(free.norms) > 0.05  # so a bound of 0.01 binds
    trainer, clipped = _fit(tmp_path / "clipped", *args, "trainer.gradient_clip_val=0.01")
    assert len(clipped.norms) == trainer.global_step == 3
    assert max(clipped.norms) <= 0.01 * (1 + 1e-4)
    _, by_value = _fit(
        tmp_path / "value", *args, "trainer.gradient_clip_val=1e-4", "trainer.gradient_clip_algorithm=value"
    )
    assert max(free.largest) > 1e-4 and max(by_value.largest) <= 1e-4 * (1 + 1e-6)


def test_gradient_accumulation_halves_the_optimizer_steps(tmp_path):
    args = ["trainer.max_epochs=2", "trainer.limit_train_batches=4"]
    plain, plain_steps = _fit(tmp_path / "plain", *args)
    accumulated, steps = _fit(tmp_path / "accumulated", *args, "trainer.accumulate_grad_batches=2")
    assert plain.global_step == len(plain_steps.norms) == 8
    assert accumulated.global_step == len(steps.norms) == 4


def test_a_two_stage_method_trains_with_accumulation_and_clipping(tmp_path):
    trainer, steps = _fit(
        tmp_path,
        "method=phase",
        "trainer.max_epochs=2",
        "schedule.e0=1",
        "trainer.limit_train_batches=4",
        "trainer.accumulate_grad_batches=2",
        "trainer.gradient_clip_val=0.01",
    )
    module = trainer.lightning_module
    assert bool(module.stage2_entered) and not any(p.requires_grad for p in module.backbone.parameters())
    assert trainer.global_step == 4 and max(steps.norms) <= 0.01 * (1 + 1e-4)


# -- an imbalance factor the data cannot give ------------------------------------------------------------
def test_the_realised_imbalance_factor_is_reported_and_rounding_is_not_a_warning():
    cfg = make_config()
    _, datamodule, _ = build_run(cfg)
    assert realised_imbalance(cfg.dataset, datamodule) == (100.0, [])  # 400 ... 4
    # 480 images per class (20 held out for testing): int(480 / 100) = 4, 480/4 = 120 is rounding
    cfg = make_config("dataset.test_per_class=20", "dataset.val_fraction=0.2")
    _, datamodule, _ = build_run(cfg)
    assert realised_imbalance(cfg.dataset, datamodule) == (120.0, [])


@pytest.mark.slow
def test_an_imbalance_factor_the_data_cannot_give_warns_once_and_is_recorded(run_dir):
    # 400 training images per class at most: IF 1000 would need 0.4 images in the last class
    result = run_cli(
        "dataset.imbalance_factor=1000",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        run_dir=run_dir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lt_bench: warning: dataset.imbalance_factor=1000"), lines
    assert "400/1 = 400" in lines[0]
    summary = read_summary(run_dir)
    assert summary["realised_imbalance_factor"] == 400
    assert summary["warnings"] == [lines[0].removeprefix("lt_bench: warning: ")]
    assert math.isclose(max(summary["class_counts"]) / min(summary["class_counts"]), 400)


def test_a_precision_lightning_rewrites_is_recorded_in_the_warnings(tmp_path):
    from lt_bench.train import precision_rewritten

    cfg = make_config("trainer.precision=bf16")
    validate(cfg)
    trainer, _ = build_trainer(cfg, tmp_path, has_val=False, with_logger=False)
    (line,) = precision_rewritten(str(cfg.trainer.precision), str(trainer.precision))
    assert "trainer.precision=bf16 runs as bf16-mixed" in line
    assert precision_rewritten("32-true", "32-true") == []
