"""experiment=ppl_cri[_cifar100|_imagenet_lt|_inat2018] against the authors' simonustc/Imbalance_PPL_CRI
CRI+PPL configurations and CRI+PPL/train.py."""

from __future__ import annotations

import math

import pytest

from tests.recipe_tools import (
    assert_lr,
    assert_weights,
    counts,
    experiment_files,
    optimizer_at,
    power_weights,
    recipe,
    schedule,
)

# CRI+PPL/train.py adjust_learning_rate, cos: False (1-based E): lr * E / 5 for E <= 5, lr * 0.1 for
# E > 160, lr * 0.01 for E > 180; lr 0.1 in cifar10_CRI.yaml and cifar100_CRI.yaml. Keys: 0-based epochs.
CIFAR_LR = {0: 0.02, 4: 0.1, 5: 0.1, 159: 0.1, 160: 0.01, 179: 0.01, 180: 1e-3, 199: 1e-3}


def cosine_lr(epoch: int) -> float:
    # CRI+PPL/train.py adjust_learning_rate, cos: True: lr 0.1 * 0.5 (1 + cos(pi E / 200)), no warm-up
    return 0.1 * 0.5 * (1 + math.cos(epoch / 200 * math.pi))


# the CRI values per configuration file (s, max_m, gamma)
CRI = {
    "cifar10": (30.0, 0.1, 1.0),  # CRI+PPL/config/cifar10/cifar10_CRI.yaml
    "cifar100": (10.0, 0.2, 1.5),  # CRI+PPL/config/cifar100/cifar100_CRI.yaml
    "imagenet": (30.0, 0.1, 1.5),  # CRI+PPL/config/imagenet/imagenet_CRI.yaml
    "inat": (30.0, 0.1, 1.5),  # CRI+PPL/config/ina2018/ina2018_CRI.yaml
}

CIFAR_RECIPES = [
    ("experiment=ppl_cri", "cifar10_lt", "cifar10"),
    ("experiment=ppl_cri", "cifar10_step", "cifar10"),
    ("experiment=ppl_cri_cifar100", "cifar100_lt", "cifar100"),
    ("experiment=ppl_cri_cifar100", "cifar100_step", "cifar100"),
]


def check_phases(cfg, ppm_alpha: float) -> None:
    """PPW (ppw_min 100, ppw_max 160, ppw_alpha 5: loss/loss.py reset_epoch 'ppw', 1/n weights to the power
    ((E - 100) / 60)^5, normalised to sum C) and PPmix (ppmix_epoch_min/max 100, 160, ppm_alpha: train.py's
    Remix labels faded in by ((E - 100) / 60)^ppm_alpha), in every configuration file."""
    s = schedule(cfg)
    n = counts(cfg) if cfg.dataset.profile != "none" else [1000, 100, 10]
    assert (s.e0, s.e1, s.form, s.rho, s.delta, s.weighting) == (100, 160, "power", 5.0, 1.0, "inverse")
    assert_weights(s.class_weights(99, n), None)
    assert_weights(s.class_weights(100, n), None)
    assert_weights(s.class_weights(130, n), power_weights(n, 0.5**5))
    assert_weights(s.class_weights(160, n), power_weights(n, 1.0))
    assert_weights(s.class_weights(199, n), power_weights(n, 1.0))
    assert s.mixing == "ppmix" and s.mix_phase == (100, 160, ppm_alpha)
    assert (s.kappa, s.tau) == (3.0, 0.5)  # train.py: n_i / n_j >= 3, l < 0.5
    assert s.mix_progress(100) == 0.0
    assert s.mix_progress(130) == pytest.approx(0.5**ppm_alpha)
    assert s.mix_progress(160) == 1.0


@pytest.mark.parametrize(("experiment", "dataset", "source"), CIFAR_RECIPES)
def test_cifar_recipes_are_the_authors_configs(experiment, dataset, source):
    cfg = recipe(experiment, f"dataset={dataset}")
    assert cfg.dataset.name == dataset
    # num_epochs 200, batch_size 128, backbone resnet32_fe, momentum 0.9, weight_decay 2e-4 (both files)
    assert (cfg.trainer.max_epochs, cfg.dataset.batch_size, cfg.backbone.name) == (200, 128, "resnet32")
    assert_lr(cfg, CIFAR_LR)
    for epoch in (0, 100, 160, 199):
        assert optimizer_at(cfg, epoch) == {"weight_decay": 2e-4, "rho": None, "momentum": 0.9}
    # CRILoss on the FCNorm (cosine) classifier (train.py: Classifier2 for *_CRI datasets)
    assert (cfg.loss.name, cfg.loss.head) == ("cri", "cosine")
    assert (cfg.loss.s, cfg.loss.max_m, cfg.loss.gamma) == CRI[source]
    # ppm_alpha: 3 in both CIFAR files (the paper's Table 1 prints 5; the recipe follows the code)
    check_phases(cfg, ppm_alpha=3.0)
    assert cfg.schedule.mix_alpha == 1.0  # alpha: 1.0, the mixup Beta parameter
    # CRI+PPL/datasets/cao_cifar.py and cao_cifar100.py set rand_number = 0 before drawing the subset
    assert cfg.dataset.subset_seed == 0


# imagenet_CRI.yaml: backbone resnet10_fe, batch_size 256, num_epochs 200, weight_decay 2e-4, cos: True,
# alpha 1.0; ina2018_CRI.yaml: backbone resnet50_fe, batch_size 640, lr 0.1, weight_decay 1e-4, cos: True,
# alpha 0.2; both ppm_alpha 5
@pytest.mark.parametrize(
    ("experiment", "backbone", "batch_size", "weight_decay", "cri", "mix_alpha"),
    [
        ("ppl_cri_imagenet_lt", "resnet10", 256, 2e-4, "imagenet", 1.0),
        ("ppl_cri_inat2018", "resnet50", 640, 1e-4, "inat", 0.2),
    ],
    ids=["imagenet_CRI.yaml", "ina2018_CRI.yaml"],
)
def test_large_scale_recipe_is_the_authors_cri_yaml(
    experiment, backbone, batch_size, weight_decay, cri, mix_alpha
):
    cfg = recipe(f"experiment={experiment}")
    assert (cfg.backbone.name, cfg.dataset.batch_size, cfg.trainer.max_epochs) == (backbone, batch_size, 200)
    assert_lr(cfg, {e: cosine_lr(e) for e in (0, 1, 5, 50, 100, 150, 199)})
    for epoch in (0, 199):
        assert optimizer_at(cfg, epoch)["weight_decay"] == weight_decay
    assert (cfg.loss.s, cfg.loss.max_m, cfg.loss.gamma) == CRI[cri]
    check_phases(cfg, ppm_alpha=5.0)
    assert cfg.schedule.mix_alpha == mix_alpha
    assert cfg.dataset.profile == "none"  # the lists fix the data: no subset is drawn


def test_a_shortened_run_keeps_the_recipes_shape():
    cfg = recipe("experiment=ppl_cri", "trainer.max_epochs=100")
    s = schedule(cfg)
    assert (s.e0, s.e1, s.mix_phase) == (50, 80, (50, 80, 3.0))
    assert list(cfg.lr_schedule.milestones) == [80, 90]


def test_every_ppl_cri_file_is_tested():
    tested = {e.split("=")[1] for e, _, _ in CIFAR_RECIPES} | {"ppl_cri_imagenet_lt", "ppl_cri_inat2018"}
    assert experiment_files("ppl_cri", exclude="ppl_cri_ride") == tested  # RIDE's recipes: their own family


def test_method_ppl_cri_ramps_ppmix_with_the_authors_ppm_alpha():
    """method=ppl_cri alone (no experiment=) mixes with PPmix's own rho 3 (ppm_alpha in the authors' CIFAR
    configs) while PPW keeps rho 5 (ppw_alpha), over PPW's phase."""
    cfg = recipe("method=ppl_cri", "trainer.max_epochs=200")
    s = schedule(cfg)
    assert (s.e0, s.e1, s.rho) == (100, 160, 5.0)
    assert s.mix_phase == (100, 160, 3.0)
    assert s.mix_progress(130) == pytest.approx(0.5**3)
