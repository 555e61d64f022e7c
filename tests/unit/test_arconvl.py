"""ARConvL: region bounds, the four loss terms against hand-worked values, where gradients go, the radius
learning-rate group, and one tiny end-to-end run."""

from __future__ import annotations

import math

import pytest
import torch

from lt_bench.data.datamodule import DataInfo
from lt_bench.errors import ConfigError
from lt_bench.losses.arconvl import (
    adaptive_beta,
    adaptive_margin,
    arconvl_loss,
    centre_loss,
    class_alpha,
    distribution_loss,
    log_prior,
    margin_cross_entropy,
    margin_logits,
    region_bounds,
    region_loss,
)
from lt_bench.methods import build_method
from lt_bench.methods.arconvl import ARConvLMethod, radius_lr_factor
from lt_bench.schedules import schedule_of
from tests.helpers import make_config, read_summary

# centres (0,0), (4,0), (0,5): squared distances 16 (0-1), 25 (0-2), 41 (1-2);
# nearest-other squared distances 16, 16, 25 -> h = (d_min/2)^2 = 4, 4, 6.25
CENTRES = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 5.0]])


def t(x: float) -> torch.Tensor:
    return torch.tensor(x)


@pytest.mark.parametrize(
    ("radii", "r_upp_sq", "beta", "sigma_sq"),
    [
        # R^2 = 1, 4, 4.84 < max h = 6.25: R_upp^2 = 6.25, beta = 6.25/4 - 1, sigma^2 = min(4, 2.25)
        ((1.0, 2.0, 2.2), 6.25, 0.5625, 2.25),
        # R^2 = 9 > 6.25: R_upp^2 = 9, beta = min(1, 9/4 - 1 = 1.25) = 1, sigma^2 = min(4, 5) = 4
        ((1.0, 2.0, 3.0), 9.0, 1.0, 4.0),
        # all radii small and h = 4, 4, 6.25: R_upp^2 = 6.25 as in the first case
        ((0.1, 0.1, 0.1), 6.25, 0.5625, 2.25),
    ],
)
def test_region_bounds_beta_and_margin_by_hand(radii, r_upp_sq, beta, sigma_sq):
    a = torch.tensor(radii, requires_grad=True)
    r_ben, r_upp = region_bounds(CENTRES, a**2)
    assert r_ben.item() == pytest.approx(4.0)
    assert r_upp.item() == pytest.approx(r_upp_sq)
    assert adaptive_beta(r_ben, r_upp).item() == pytest.approx(beta)
    assert adaptive_margin(r_ben, r_upp).item() == pytest.approx(sigma_sq)
    assert not r_ben.requires_grad and not r_upp.requires_grad


def test_equal_regions_give_zero_beta_and_margin():
    # two centres: h = 4 for both; radius 2 = the benchmark -> R_upp = R_ben, beta = sigma^2 = 0
    r_ben, r_upp = region_bounds(CENTRES[:2], torch.tensor([2.0, 1.0]) ** 2)
    assert adaptive_beta(r_ben, r_upp).item() == 0.0
    assert adaptive_margin(r_ben, r_upp).item() == 0.0


def test_alpha_and_prior():
    assert torch.allclose(class_alpha([100, 10, 50]), torch.tensor([1.0, 10.0, 2.0]))
    assert torch.allclose(log_prior([60, 20, 20]), torch.tensor([0.6, 0.2, 0.2]).log())


def test_region_loss_zero_inside_quadratic_outside():
    alpha = torch.tensor([1.0, 1.0])
    a = torch.tensor([2.0, 1.0], requires_grad=True)  # R_0 = 2
    y = torch.tensor([0])
    for dist, expected in [(0.5, 0.0), (1.0, 0.0), (2.0, 0.0), (3.0, 1.0), (4.0, 4.0), (5.0, 9.0)]:
        sq = torch.tensor([[dist**2, 100.0]])
        # relu(dist - 2)^2 + gamma R^2 with gamma = 0 ...
        assert region_loss(sq, a**2, y, alpha, gamma=0.0).item() == pytest.approx(expected)
        # ... and with gamma = 0.05 the penalty 0.05 * 4 = 0.2 is added
        assert region_loss(sq, a**2, y, alpha, gamma=0.05).item() == pytest.approx(expected + 0.2)


def test_region_loss_weights_and_gradient_by_hand():
    # counts (100, 10): alpha' = (1, 10). Sample 0 (class 0, distance 3, R_0 = 2): 1 + 0.05*4 = 1.2.
    # Sample 1 (class 1, distance 1, R_1 = 1): 0 + 0.05*1 = 0.05, times 10 = 0.5. Mean = 0.85.
    alpha = class_alpha([100, 10])
    a = torch.tensor([2.0, 1.0], requires_grad=True)
    sq = torch.tensor([[9.0, 50.0], [60.0, 1.0]], requires_grad=True)
    loss = region_loss(sq, a**2, torch.tensor([0, 1]), alpha, gamma=0.05)
    assert loss.item() == pytest.approx(0.85)
    loss.backward()
    # d/da_0 [(3 - a_0)^2 + 0.05 a_0^2] / 2 = (-2 + 0.2) / 2; d/da_1 [10 * 0.05 a_1^2] / 2 = 1.0 / 2
    assert torch.allclose(a.grad, torch.tensor([-0.9, 0.5]))
    assert sq.grad is None  # distances detached


def test_distribution_loss_by_hand():
    # alpha = (1, 10), mean 5.5 -> alpha'' = (1/5.5, 10/5.5); D targets (9, 1); beta 0.5:
    # 0.5 * (9/5.5 + 10/5.5) / 2 = 19/22
    sq = torch.tensor([[9.0, 50.0], [60.0, 1.0]])
    loss = distribution_loss(sq, torch.tensor([0, 1]), class_alpha([100, 10]), t(0.5))
    assert loss.item() == pytest.approx(19 / 22)


def test_margin_cross_entropy_three_classes_by_hand():
    # D = (1, 4, 9), target 0, sigma^2 = 2, pi = (1/2, 1/4, 1/4):
    # z = (-1 + log 1/2, -4 + 2 + log 1/4, -9 + 2 + log 1/4)
    # CE = log(1 + e^{z1 - z0} + e^{z2 - z0}) = log(1 + e^{-1}/2 + e^{-6}/2)
    sq = torch.tensor([[1.0, 4.0, 9.0]])
    prior = log_prior([2, 1, 1])
    y = torch.tensor([0])
    z = margin_logits(sq, y, t(2.0), prior)
    expected_z = torch.tensor([-1 - math.log(2), -2 - math.log(4), -7 - math.log(4)])
    assert torch.allclose(z[0], expected_z)
    ce = margin_cross_entropy(sq, y, t(2.0), prior)
    assert ce.item() == pytest.approx(math.log(1 + math.exp(-1) / 2 + math.exp(-6) / 2), rel=1e-6)
    # the same sample labelled 1: the margin moves to classes 0 and 2
    # z = (-1 + 2 - log 2, -4 - log 4, -9 + 2 - log 4): CE = log(1 + 2 e^{5} + e^{-3})
    ce1 = margin_cross_entropy(sq, torch.tensor([1]), t(2.0), prior)
    assert ce1.item() == pytest.approx(math.log(1 + 2 * math.exp(5) + math.exp(-3)), rel=1e-6)


def test_centre_term_by_hand():
    # two centres 1 apart (D^C = 1), sigma^2 = 0.5: each row's logits (0, -(1 - 0.5)) -> log(1 + e^{-0.5})
    c = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    assert centre_loss(c, t(0.5)).item() == pytest.approx(math.log(1 + math.exp(-0.5)), rel=1e-6)
    # three centres of CENTRES with sigma^2 = 2.25: row 0 -> log(1 + e^{-(16-2.25)} + e^{-(25-2.25)}) ...
    rows = [(16, 25), (16, 41), (25, 41)]
    expected = sum(math.log(1 + math.exp(-(p - 2.25)) + math.exp(-(q - 2.25))) for p, q in rows) / 3
    got = centre_loss(CENTRES.double(), t(2.25).double())  # float64: the terms are ~1e-6
    assert got.item() == pytest.approx(expected, rel=1e-9)


def _terms():
    torch.manual_seed(0)
    features = torch.randn(6, 2, requires_grad=True)
    centres = (CENTRES + 0.1 * torch.randn(3, 2)).requires_grad_(True)
    a = torch.tensor([1.0, 2.0, 2.2], requires_grad=True)
    sq = (features[:, None, :] - centres[None]).pow(2).sum(-1)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    counts = [50, 10, 5]
    terms = arconvl_loss(sq, centres, a**2, y, class_alpha(counts), log_prior(counts), gamma=0.05)
    return terms, features, centres, a


def test_radii_learn_from_the_region_loss_only():
    terms, features, centres, a = _terms()
    terms.region.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert features.grad is None and centres.grad is None


@pytest.mark.parametrize("name", ["margin", "centre", "distribution"])
def test_other_terms_train_features_and_centres_not_radii(name):
    terms, features, centres, a = _terms()
    assert terms.beta.item() > 0  # so the distribution term is not trivially zero
    getattr(terms, name).backward()
    assert a.grad is None
    assert centres.grad is not None and centres.grad.abs().sum() > 0
    if name != "centre":
        assert features.grad is not None and features.grad.abs().sum() > 0
    else:
        assert features.grad is None


def test_total_is_the_sum_of_terms():
    terms, *_ = _terms()
    total = terms.margin + terms.centre + terms.region + terms.distribution
    assert terms.total.item() == pytest.approx(total.item())
    assert not terms.beta.requires_grad and not terms.sigma_sq.requires_grad


def test_one_centre_matrix_gives_the_terms_of_separate_computations_bit_for_bit():
    # arconvl_loss computes the C x C centre distances once for the bounds and the centre term; each
    # function on its own computes them again: the same numbers, and the same gradients
    terms, features, centres, a = _terms()
    r_ben, r_upp = region_bounds(centres, a**2)
    assert torch.equal(terms.r_ben_sq, r_ben) and torch.equal(terms.r_upp_sq, r_upp)
    sigma_sq = adaptive_margin(r_ben, r_upp)
    alone = centre_loss(centres, sigma_sq)
    assert torch.equal(terms.centre, alone)
    (got,) = torch.autograd.grad(terms.centre, centres)
    (want,) = torch.autograd.grad(alone, centres)
    assert torch.equal(got, want)


# -- the LightningModule ---------------------------------------------------------------------------
INFO = DataInfo(
    num_classes=3,
    class_counts=[40, 8, 4],
    in_channels=1,
    image_size=28,
    train_size=52,
    val_size=6,
    test_size=30,
)


def arconvl_module(cfg) -> ARConvLMethod:
    """Built as every entry point builds it: the method's checks (check_config), then the module."""
    module = build_method(cfg, INFO, schedule_of(cfg.schedule))
    assert isinstance(module, ARConvLMethod)
    return module


def test_radius_lr_factor():
    assert [radius_lr_factor(e, 1e-2, 1e-3, 3) for e in range(5)] == pytest.approx([0.1, 0.1, 0.1, 1, 1])


def test_module_head_groups_and_learning_rates():
    cfg = make_config(
        "experiment=arconvl",
        "trainer.max_epochs=50",
        "method.latent_dim=2",
        "optimizer.weight_decay=5e-4",
        "optimizer.momentum=0.9",  # not the recipe's 0: both groups must take the optimizer's momentum
    )
    module = arconvl_module(cfg)
    assert module.backbone.out_dim == 2 and module.head.centres.shape == (3, 2)
    assert torch.allclose(module.head.radius_param, torch.full((3,), 0.1))
    assert torch.allclose(module.alpha, torch.tensor([1.0, 5.0, 10.0]))
    setup = module.configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    main, radius = optimizer.param_groups
    assert radius["params"] == [module.head.radius_param]
    assert all(p is not module.head.radius_param for p in main["params"])
    assert len(main["params"]) + 1 == len(list(module.parameters()))
    assert radius["weight_decay"] == 0.0 and main["weight_decay"] == 5e-4
    assert main["momentum"] == radius["momentum"] == 0.9
    # epochs 0-2: radius 1e-3; from 3 on: 1e-2, never decayed; main: 0.1, x0.1 from 26, x0.01 from 41
    seen = []
    for epoch in range(50):
        seen.append((epoch, optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"]))
        optimizer.step()
        scheduler.step()
    by_epoch = {e: (m, r) for e, m, r in seen}
    for epoch, (m, r) in {0: (0.1, 1e-3), 2: (0.1, 1e-3), 3: (0.1, 1e-2), 25: (0.1, 1e-2), 26: (0.01, 1e-2),
                          40: (0.01, 1e-2), 41: (0.001, 1e-2), 49: (0.001, 1e-2)}.items():  # fmt: skip
        assert by_epoch[epoch] == pytest.approx((m, r)), epoch


def test_module_predicts_the_nearest_centre():
    module = arconvl_module(make_config("method=arconvl", "method.latent_dim=2")).eval()
    with torch.no_grad():
        module.head.centres.copy_(CENTRES)
        features = torch.tensor([[0.2, -0.1], [3.0, 1.0], [0.5, 4.0], [1.9, 0.0]])
        scores = module.loss_fn.predict(module.head(features))  # what evaluation argmaxes
        # squared distances of the last point: 3.61, 4.41, 28.61 -> class 0
        assert scores.argmax(1).tolist() == [0, 1, 2, 0]
        assert torch.allclose(scores[3], -torch.tensor([3.61, 4.41, 28.61]))
        x = torch.rand(4, 1, 28, 28)
        assert torch.allclose(module(x), module.head(module.backbone(x)))


def test_loss_terms_are_logged_once_per_epoch_as_batch_weighted_means(monkeypatch):
    module = arconvl_module(make_config("method=arconvl", "method.latent_dim=2")).train()
    logged: dict = {}
    monkeypatch.setattr(module, "log_dict", lambda values, **kwargs: logged.update(values))
    torch.manual_seed(0)
    x, y = torch.rand(6, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1, 2])
    per_step = []
    for rows in (slice(0, 4), slice(4, 6)):
        module.training_loss(x[rows], y[rows], torch.arange(6)[rows], 0)
        per_step.append({k: float(v) for k, v in module.loss_terms.items()})
    assert logged == {}  # nothing logged per step
    module.on_train_epoch_end()
    for name in ("margin", "centre", "region", "distribution"):
        mean = (4 * per_step[0][name] + 2 * per_step[1][name]) / 6
        assert float(logged[f"train/loss_{name}"]) == pytest.approx(mean, rel=1e-6)
    assert {"arconvl/beta", "arconvl/sigma2", "radius/2"} <= set(logged)
    logged.clear()
    module.on_train_epoch_end()  # the sums start again with the next epoch
    assert "train/loss_margin" not in logged


def test_module_rejects_what_it_would_ignore():
    with pytest.raises(ConfigError, match="loss"):
        arconvl_module(make_config("method=arconvl", "loss=ldam"))
    with pytest.raises(ConfigError, match="prototype_weight"):
        arconvl_module(make_config("method=arconvl", "loss=gcpl", "method.latent_dim=2"))
    with pytest.raises(ConfigError, match="latent_dim"):
        arconvl_module(make_config("method=arconvl", "backbone=resnet32", "method.latent_dim=2"))


def test_recipe_is_the_paper_setting():
    cfg = make_config("experiment=arconvl", fast=False)
    assert cfg.trainer.max_epochs == 50 and cfg.trainer.select_by == "val/gmean"
    assert list(cfg.lr_schedule.milestones) == [26, 41] and list(cfg.lr_schedule.factors) == [0.1, 0.01]
    assert cfg.lr_schedule.warmup_epochs == 0 and cfg.dataset.val_fraction == 0.1
    assert (cfg.dataset.batch_size, cfg.optimizer.lr, cfg.method.gamma) == (128, 0.1, 0.05)
    cifar = make_config("experiment=arconvl_cifar10", fast=False)
    assert list(cifar.lr_schedule.milestones) == [51, 81] and cifar.backbone.name == "resnet44"


@pytest.mark.slow
def test_end_to_end_tiny_run(tmp_path, fast_plots):  # arconvl_regions.png is the method's own
    from lt_bench.train import train

    cfg = make_config(
        "experiment=arconvl",
        "dataset.profile=even_minority",
        "dataset.imbalance_factor=10",
        "trainer.max_epochs=2",
        "method.latent_dim=2",
        "backbone.channels=[8,16]",  # narrower than the default: keeps the run to seconds
        "trainer.select_by=val/gmean",
    )
    train(cfg, run_dir=tmp_path)
    summary = read_summary(tmp_path)
    assert 0.0 <= summary["test"]["gmean"] <= 1.0
    assert summary["selected_by"] == "val/gmean" and summary["best_epoch"] in (0, 1)
    assert "gmean" in summary["test_last"] and summary["test_last"]["n"] == summary["test"]["n"]
    counts = summary["class_counts"]
    assert counts[0] * 5 < counts[1]  # even classes reduced to 1/10
    assert (tmp_path / "arconvl_regions.png").stat().st_size > 0
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {f"train/loss_{t}" for t in ("margin", "centre", "region", "distribution")} <= set(header)
