"""experiment=phase[_enhanced|_imagenet_lt]. PHASE (Symmetry 17(12), 2040, 2025) publishes no code: its
CIFAR schedule is that of kaidic/LDAM-DRW cifar_train.py, which the values below come from, with the
paper's weight decay 5e-4 and stage switch at 80% of the run."""

from __future__ import annotations

import pytest

from tests.recipe_tools import (
    CIFAR,
    assert_lr,
    assert_weights,
    counts,
    experiment_files,
    optimizer_at,
    recipe,
    schedule,
)

# kaidic/LDAM-DRW cifar_train.py adjust_learning_rate (1-based E): lr * E / 5 for E <= 5, lr * 0.01 for
# E > 160, lr * 0.0001 for E > 180; lr 0.1. Keys: 0-based epochs.
LDAM_DRW_LR = {0: 0.02, 4: 0.1, 5: 0.1, 159: 0.1, 160: 1e-3, 179: 1e-3, 180: 1e-5, 199: 1e-5}


@pytest.mark.parametrize("dataset", CIFAR)
def test_phase_recipe(dataset):
    cfg = recipe("experiment=phase", f"dataset={dataset}")
    assert cfg.dataset.name == dataset
    assert (cfg.trainer.max_epochs, cfg.backbone.name, cfg.dataset.batch_size) == (200, "resnet32", 128)
    assert_lr(cfg, LDAM_DRW_LR)
    # the paper's wd 5e-4, SGD momentum 0.9, the whole run
    for epoch in (0, 159, 160, 199):
        assert optimizer_at(cfg, epoch) == {"weight_decay": 5e-4, "rho": None, "momentum": 0.9}
    # DAW (asymmetric loss with label smoothing) until 160, MSR from 160: a step the method reads
    s = schedule(cfg)
    assert (s.e0, s.e1) == (160, 160)
    assert cfg.loss.name == "asl" and cfg.method.name == "phase" and cfg.method.alpha == 0.8
    # the schedule's class weights stay off: MSR computes its own weights at the switch
    n = counts(cfg)
    for epoch in (0, 160):
        assert_weights(s.class_weights(epoch, n), None)
    # LDAM-DRW's CIFAR-LT subset (cifar_train.py --rand_number 0)
    assert cfg.dataset.subset_seed == 0


def test_phase_enhanced():
    cfg = recipe("experiment=phase_enhanced")
    assert (cfg.dataset.name, cfg.dataset.imbalance_factor) == ("cifar100_lt", 200.0)
    assert (cfg.backbone.name, cfg.backbone.width) == ("resnet32", 4)
    assert (cfg.dataset.autoaugment, cfg.dataset.color_jitter) == (True, 0.4)
    assert_lr(cfg, LDAM_DRW_LR)
    for epoch in (0, 199):
        assert optimizer_at(cfg, epoch) == {"weight_decay": 5e-4, "rho": 0.05, "momentum": 0.9}
    assert schedule(cfg).e0 == 160 and cfg.dataset.subset_seed == 0


def test_phase_imagenet_lt_keeps_the_switch_at_80_percent():
    cfg = recipe("experiment=phase_imagenet_lt")
    assert schedule(cfg).e0 == int(0.8 * cfg.trainer.max_epochs) == 160
    assert cfg.backbone.name == "resnet50" and cfg.dataset.profile == "none"


def test_a_shortened_run_keeps_the_recipes_shape():
    cfg = recipe("experiment=phase", "trainer.max_epochs=50")
    assert schedule(cfg).e0 == 40
    assert list(cfg.lr_schedule.milestones) == [40, 45]


def test_every_phase_file_is_tested():
    assert experiment_files("phase") == {"phase", "phase_enhanced", "phase_imagenet_lt"}
