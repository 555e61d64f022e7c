"""experiment=kps_ga[_imagenet_lt|_inat2018] against the authors' Keke921/KPSLoss cifar_train.py, and
dataset.subset_seed: the data drawn by it, the training randomness by `seed`."""

from __future__ import annotations

import pytest
import torch

from lt_bench.data.datamodule import LongTailDataModule
from tests.helpers import make_config
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

# Keke921/KPSLoss cifar_train.py adjust_learning_rate (1-based E): lr * E / 5 for E <= 5, lr * 0.1 for
# E > 160, lr * 0.01 for E > 180; argparse default lr 0.1. Keys: 0-based epochs.
KPS_LR = {0: 0.02, 4: 0.1, 5: 0.1, 159: 0.1, 160: 0.01, 179: 0.01, 180: 1e-3, 199: 1e-3}


@pytest.mark.parametrize("dataset", CIFAR)
def test_kps_ga_is_cifar_train_py(dataset):
    cfg = recipe("experiment=kps_ga", f"dataset={dataset}")
    assert cfg.dataset.name == dataset
    # cifar_train.py argparse defaults: -b 64, --epochs 200, --wd 2e-4, --momentum 0.9, -a resnet32,
    # --rand_number 666 (IMBALANCECIFAR's np.random.seed in dataset/imbalance_cifar.py)
    assert (cfg.dataset.batch_size, cfg.trainer.max_epochs, cfg.backbone.name) == (64, 200, "resnet32")
    assert cfg.dataset.subset_seed == 666
    assert_lr(cfg, KPS_LR)
    for epoch in (0, 119, 120, 199):
        assert optimizer_at(cfg, epoch) == {"weight_decay": 2e-4, "rho": None, "momentum": 0.9}
    # cifar_train.py: KPSLoss(s=15) on the normalised classifier; losses.py: s_list * (50 / min) (n_base 50)
    # and clamp(batch_s, s, 50) under GA (s_max 50). m_max: the paper's 0.5 (the code's call passes 0.2).
    assert (cfg.loss.name, cfg.loss.head, cfg.loss.s, cfg.loss.n_base, cfg.loss.s_max) == (
        "kps", "cosine", 15.0, 50.0, 50.0)  # fmt: skip
    assert cfg.loss.m_max == 0.5
    # train_rule GA: weighted = False for epoch < 120, True from 120; per_cls_weights None throughout
    s = schedule(cfg)
    assert s.e0 == 120
    assert cfg.loss.ga is False and cfg.loss.after_e0.ga is True
    n = counts(cfg)
    for epoch in (0, 119, 120, 199):
        assert_weights(s.class_weights(epoch, n), None)


@pytest.mark.parametrize("name", ["kps_ga_imagenet_lt", "kps_ga_inat2018"])
def test_large_scale_recipes_keep_the_ga_switch_at_60_percent(name):
    """KPSLoss has CIFAR code only: these schedules are lt_bench's (their headers say so); what carries
    over is GA from 60% of the run, and the lists fix the data (no subset is drawn)."""
    cfg = recipe(f"experiment={name}")
    assert schedule(cfg).e0 == int(0.6 * cfg.trainer.max_epochs) == 120
    assert cfg.loss.after_e0.ga is True
    assert cfg.dataset.profile == "none"


def test_a_shortened_run_keeps_the_recipes_shape():
    cfg = recipe("experiment=kps_ga", "trainer.max_epochs=50")
    assert schedule(cfg).e0 == 30
    assert list(cfg.lr_schedule.milestones) == [40, 45]


# -- dataset.subset_seed -----------------------------------------------------------------------------


def prepared(*overrides: str, seed: int) -> LongTailDataModule:
    cfg = make_config("dataset=mnist_lt", "dataset.val_fraction=0.1", *overrides)
    module = LongTailDataModule(cfg.dataset, seed)
    module.prepare()
    return module


def splits(module: LongTailDataModule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    data = module.data
    return data.train.images, data.val.images, data.test.images


def test_subset_seed_fixes_the_data_whatever_the_seed():
    a = splits(prepared("dataset.subset_seed=666", seed=0))
    b = splits(prepared("dataset.subset_seed=666", seed=1))
    for x, y in zip(a, b, strict=True):  # test hold-out, long-tailed subset and validation split alike
        assert torch.equal(x, y)


def test_null_subset_seed_follows_seed_as_before():
    default = splits(prepared(seed=3))
    assert all(
        torch.equal(x, y)
        for x, y in zip(default, splits(prepared("dataset.subset_seed=3", seed=0)), strict=True)
    )
    other = splits(prepared(seed=4))
    assert not torch.equal(default[0], other[0])


def test_training_randomness_still_follows_seed():
    one, two = prepared("dataset.subset_seed=666", seed=0), prepared("dataset.subset_seed=666", seed=1)
    assert one.data.augment.seed == 0 and two.data.augment.seed == 1


def test_every_kps_ga_file_is_tested():
    assert experiment_files("kps_ga") == {"kps_ga", "kps_ga_imagenet_lt", "kps_ga_inat2018"}
