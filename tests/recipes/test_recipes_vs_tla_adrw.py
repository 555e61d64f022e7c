"""experiment=vs_tla_adrw[_sam]_<setting> against the authors' wang22ti/DDC bash_script.sh, cifar_train_sam.py
and utils/utils.py."""

from __future__ import annotations

import pytest

from lt_bench.optim import lr_factor
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

# bash_script.sh, per setting: the VS line (phase 1: --gamma, --tau, --rho pair, --wd) and the ADRW-T line
# (phase 2, resuming the VS run's epoch-320 checkpoint: --tro, --gamma, --tau, --rho pair, --wd).
BASH_SCRIPT = {
    "cifar100_lt_if100": dict(vs=(0.05, 1.0, (0.3, 0.3), 2e-4), adrw=(0.25, 0.0, 0.75, (0.2, 0.4), 5e-4)),
    "cifar100_lt_if10": dict(vs=(0.05, 0.5, (0.1, 0.1), 1e-4), adrw=(0.1, 0.0, 0.75, (0.1, 0.5), 1e-4)),
    "cifar100_step_if100": dict(vs=(0.0, 1.0, (0.2, 0.2), 1e-4), adrw=(0.1, 0.0, 1.0, (0.2, 0.2), 4e-4)),
    "cifar100_step_if10": dict(vs=(0.0, 1.0, (0.1, 0.1), 1e-4), adrw=(0.05, 0.0, 1.0, (0.1, 0.3), 3e-4)),
    "cifar10_lt_if100": dict(vs=(0.05, 1.0, (0.1, 0.1), 2e-4), adrw=(0.15, 0.0, 1.0, (0.1, 0.2), 2e-4)),
    "cifar10_lt_if10": dict(vs=(0.0, 1.0, (0.1, 0.1), 1e-4), adrw=(0.1, 0.1, 1.0, (0.1, 0.1), 1e-4)),
    "cifar10_step_if100": dict(vs=(0.0, 1.25, (0.1, 0.1), 1e-4), adrw=(0.1, 0.0, 1.0, (0.1, 0.2), 5e-5)),
    "cifar10_step_if10": dict(vs=(0.0, 1.0, (0.1, 0.1), 1e-4), adrw=(0.1, 0.0, 1.0, (0.1, 0.1), 1e-4)),
}
SETTINGS = sorted(BASH_SCRIPT)

# utils/utils.py adjust_learning_rate, factor = epochs // 200, 1-based E: lr * E / 5 for E <= 5 factor,
# lr * 0.0001 for E > 180 factor, lr * 0.01 for E > 160 factor; lr 0.1. Keys: 0-based epochs.
LR_200 = {0: 0.02, 4: 0.1, 5: 0.1, 159: 0.1, 160: 1e-3, 179: 1e-3, 180: 1e-5, 199: 1e-5}
# --epochs 400 (factor 2): lr * E / 5 up to E = 10, i.e. 0.2 at 0-based epoch 9, then back to 0.1
LR_400 = {0: 0.02, 4: 0.1, 8: 0.18, 9: 0.2, 10: 0.1, 319: 0.1, 320: 1e-3, 359: 1e-3, 360: 1e-5, 399: 1e-5}


def check_phases(cfg, setting: str, t0: int) -> None:
    (vs_gamma, vs_tau, _, _), (tro, gamma, tau, _, _) = (
        BASH_SCRIPT[setting]["vs"],
        BASH_SCRIPT[setting]["adrw"],
    )
    dataset, q = setting.rsplit("_if", 1)
    assert (cfg.dataset.name, cfg.dataset.imbalance_factor) == (dataset, float(q))
    # args.t_reweight = (epochs // 200) * 160; TLA (criterion(..., False)) for epoch + 1 > t_reweight
    s = schedule(cfg)
    assert (s.e0, s.e1) == (t0, t0)
    assert (cfg.loss.name, cfg.loss.gamma, cfg.loss.tau, cfg.loss.multiplicative) == (
        "vs",
        vs_gamma,
        vs_tau,
        True,
    )
    after = cfg.loss.after_e0
    assert (after.gamma, after.tau, after.multiplicative) == (gamma, tau, False)
    # ADRW: (n_j / N)^-tro, normalised to sum C, once epoch // t_reweight is 1; all ones before
    n = counts(cfg)
    assert_weights(s.class_weights(t0 - 1, n), None)
    assert_weights(s.class_weights(t0, n), power_weights(n, tro, by_prior=True))
    # --rand_number default 0 (datasets/imbalance_cifar.py's np.random.seed), batch 128, resnet32
    assert (cfg.dataset.subset_seed, cfg.dataset.batch_size, cfg.backbone.name) == (0, 128, "resnet32")


@pytest.mark.parametrize("setting", SETTINGS)
def test_200_epoch_recipe(setting):
    """The README's standard setting: 200 epochs, wd 2e-4 throughout (the script's VS/ADRW values reused)."""
    cfg = recipe(f"experiment=vs_tla_adrw_{setting}")
    assert (cfg.trainer.max_epochs, cfg.optimizer.name) == (200, "sgd")
    assert_lr(cfg, LR_200)
    check_phases(cfg, setting, t0=160)
    for epoch in (0, 159, 160, 199):
        assert optimizer_at(cfg, epoch)["weight_decay"] == 2e-4


@pytest.mark.parametrize("setting", SETTINGS)
def test_400_epoch_sam_recipe(setting):
    cfg = recipe(f"experiment=vs_tla_adrw_sam_{setting}")
    assert (cfg.trainer.max_epochs, cfg.optimizer.name, cfg.optimizer.base) == (400, "sam", "sgd")
    # --randaug 1: CIFAR10Policy (AutoAugment) + Cutout(n_holes=1, length=16)
    assert (cfg.dataset.autoaugment, cfg.dataset.cutout) == (True, 16)
    assert_lr(cfg, LR_400)
    check_phases(cfg, setting, t0=320)
    vs_rho, vs_wd = BASH_SCRIPT[setting]["vs"][2], BASH_SCRIPT[setting]["vs"][3]
    adrw_rho = BASH_SCRIPT[setting]["adrw"][3]
    # adjust_rho: rho[0] for epoch + 1 <= 320, rho[1] after, from the ADRW-T line's pair. Its rho[0] is the
    # VS line's radius everywhere but CIFAR-100-LT IF 100 (0.2 vs 0.3), where the checkpoint it resumes
    # (...seed_0_sam_[0.2, 0.2]...) was trained with 0.2: the recipe takes 0.2.
    assert adrw_rho[0] == vs_rho[0] or setting == "cifar100_lt_if100"
    # weight decay: the phase-1 (VS line) value in both phases: the ADRW-T run resumes the checkpoint and
    # optimizer.load_state_dict restores its weight decay (cifar_train_sam.py), which nothing resets
    for epoch, rho in ((0, adrw_rho[0]), (319, adrw_rho[0]), (320, adrw_rho[1]), (399, adrw_rho[1])):
        assert optimizer_at(cfg, epoch) == {"weight_decay": vs_wd, "rho": rho, "momentum": 0.9}


def test_the_four_settings_whose_adrw_line_names_another_weight_decay():
    moved = {s: (v["vs"][3], v["adrw"][4]) for s, v in BASH_SCRIPT.items() if v["vs"][3] != v["adrw"][4]}
    assert moved == {
        "cifar100_lt_if100": (2e-4, 5e-4),
        "cifar100_step_if100": (1e-4, 4e-4),
        "cifar100_step_if10": (1e-4, 3e-4),
        "cifar10_step_if100": (1e-4, 5e-5),
    }
    for setting, (phase1, _) in moved.items():
        assert recipe(f"experiment=vs_tla_adrw_sam_{setting}").optimizer.weight_decay_after == phase1


def test_warmup_peak_is_ddcs_lr_times_epoch_over_5():
    kw = dict(name="step", max_epochs=400, warmup_epochs=10, milestones=[320, 360], factors=[0.01, 1e-4])
    assert [lr_factor(e, warmup_peak=2.0, **kw) for e in range(11)] == pytest.approx(
        [(e + 1) / 5 for e in range(10)] + [1.0]
    )
    # the default is the linear warm-up to the base LR
    assert lr_factor(9, **kw) == pytest.approx(1.0)


def test_imagenet_lt_recipe_keeps_the_switch_at_80_percent():
    """wang22ti/DDC has CIFAR scripts only: the ImageNet-LT schedule is lt_bench's (its header says so)."""
    cfg = recipe("experiment=vs_tla_adrw_sam_imagenet_lt")
    assert schedule(cfg).e0 == int(0.8 * cfg.trainer.max_epochs)
    assert cfg.dataset.profile == "none"


def test_a_shortened_run_keeps_the_recipes_shape():
    cfg = recipe("experiment=vs_tla_adrw_sam_cifar10_lt_if100", "trainer.max_epochs=100")
    assert schedule(cfg).e0 == 80
    assert list(cfg.lr_schedule.milestones) == [80, 90]


def test_every_vs_tla_adrw_file_is_tested():
    tested = {f"vs_tla_adrw_{s}" for s in SETTINGS} | {f"vs_tla_adrw_sam_{s}" for s in SETTINGS}
    bases = {"vs_tla_adrw_base", "vs_tla_adrw_sam_base"}  # included by every setting file above
    assert experiment_files("vs_tla_adrw") == tested | bases | {"vs_tla_adrw_sam_imagenet_lt"}
