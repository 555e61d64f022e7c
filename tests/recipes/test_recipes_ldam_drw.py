"""experiment=ldam_drw on every CIFAR set against kaidic/LDAM-DRW cifar_train.py (LDAM + DRW, its README's
`--loss_type LDAM --train_rule DRW`)."""

from __future__ import annotations

import pytest

from tests.recipe_tools import (
    CIFAR,
    assert_lr,
    assert_weights,
    cb_weights,
    counts,
    experiment_files,
    optimizer_at,
    recipe,
    schedule,
)

# kaidic/LDAM-DRW cifar_train.py adjust_learning_rate (1-based E = epoch + 1): lr * E / 5 for E <= 5,
# lr * 0.01 for E > 160, lr * 0.0001 for E > 180; argparse default lr 0.1. Keys: 0-based epochs.
LDAM_DRW_LR = {0: 0.02, 1: 0.04, 4: 0.1, 5: 0.1, 159: 0.1, 160: 1e-3, 179: 1e-3, 180: 1e-5, 199: 1e-5}


@pytest.mark.parametrize("dataset", CIFAR)
def test_ldam_drw_is_cifar_train_py(dataset):
    cfg = recipe("experiment=ldam_drw", f"dataset={dataset}")
    assert cfg.dataset.name == dataset
    # cifar_train.py argparse defaults: -b 128, --epochs 200, --wd 2e-4, --momentum 0.9, -a resnet32,
    # --rand_number 0 (the seed of IMBALANCECIFAR's np.random.seed in imbalance_cifar.py)
    assert cfg.dataset.batch_size == 128
    assert cfg.trainer.max_epochs == 200
    assert cfg.backbone.name == "resnet32"
    assert cfg.dataset.subset_seed == 0
    assert_lr(cfg, LDAM_DRW_LR)
    # cifar_train.py: LDAMLoss(max_m=0.5, s=30) on the NormedLinear (use_norm for LDAM) classifier
    assert (cfg.loss.name, cfg.loss.max_m, cfg.loss.s, cfg.loss.head) == ("ldam", 0.5, 30.0, "cosine")
    # cifar_train.py DRW: betas = [0, 0.9999][epoch // 160]; beta 0 gives all-one weights
    s = schedule(cfg)
    n = counts(cfg)
    assert (s.e0, s.e1) == (160, 160)
    assert_weights(s.class_weights(0, n), None)
    assert_weights(s.class_weights(159, n), None)
    assert_weights(s.class_weights(160, n), cb_weights(n, 0.9999))
    assert_weights(s.class_weights(199, n), cb_weights(n, 0.9999))
    # one SGD with --wd 2e-4 for the whole run
    for epoch in (0, 159, 160, 199):
        assert optimizer_at(cfg, epoch) == {"weight_decay": 2e-4, "rho": None, "momentum": 0.9}


def test_cifar10_lt_composes_to_cb_drw_from_160_and_lr_decays_at_160_180():
    """The issue's own example: `experiment=ldam_drw dataset=cifar10_lt`."""
    cfg = recipe("experiment=ldam_drw", "dataset=cifar10_lt")
    n = counts(cfg)
    assert n == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10-LT IF 100
    s = schedule(cfg)
    assert (s.weighting, s.beta) == ("cb", 0.9999)
    assert_weights(s.class_weights(159, n), None)
    assert_weights(s.class_weights(160, n), cb_weights(n, 0.9999))
    assert_lr(cfg, {159: 0.1, 160: 0.1 * 0.01, 179: 0.1 * 0.01, 180: 0.1 * 0.0001})


def test_a_shortened_run_keeps_the_recipes_shape():
    cfg = recipe("experiment=ldam_drw", "trainer.max_epochs=100")
    assert schedule(cfg).e0 == 80
    assert list(cfg.lr_schedule.milestones) == [80, 90]


def test_every_ldam_drw_file_is_tested():
    assert experiment_files("ldam_drw") == {"ldam_drw"}
