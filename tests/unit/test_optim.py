"""LR factors per the reference recipes; SGD, AdamW and SAM steps checked by hand on a quadratic; the
no-decay groups."""

from __future__ import annotations

import math
import re

import pytest
import torch
from omegaconf import OmegaConf

from lt_bench.config import OptimizerConfig, validate
from lt_bench.data.datamodule import DataInfo
from lt_bench.errors import ConfigError
from lt_bench.methods.arconvl import ARConvLMethod
from lt_bench.optim import SAM, SAMAdamW, build_optimizer, lr_factor
from lt_bench.schedules import schedule_of
from tests.helpers import make_config

A = torch.tensor([1.0, 4.0], dtype=torch.float64)  # L(w) = 0.5 w^T diag(A) w: gradient A * w


def quadratic_closure(w: torch.nn.Parameter, opt: torch.optim.Optimizer):
    def closure():
        opt.zero_grad()
        loss = 0.5 * (A * w * w).sum()
        loss.backward()
        return loss

    return closure


def test_step_schedule_matches_ldam_drw_recipe():
    # warm-up lr*(E+1)/5 over 0-based epochs 0..4, then x0.01 from 160 and x0.0001 from 180 (1-based 161/181)
    kw = dict(name="step", max_epochs=200, warmup_epochs=5, milestones=[160, 180], factors=[0.01, 1e-4])
    assert lr_factor(0, **kw) == pytest.approx(0.2)
    assert lr_factor(4, **kw) == pytest.approx(1.0)
    assert lr_factor(5, **kw) == 1.0
    assert lr_factor(159, **kw) == 1.0
    assert lr_factor(160, **kw) == 0.01
    assert lr_factor(179, **kw) == 0.01
    assert lr_factor(180, **kw) == 1e-4


def test_cosine_schedule_after_warmup():
    kw = dict(name="cosine", max_epochs=25, warmup_epochs=5)
    assert lr_factor(5, **kw) == pytest.approx(1.0)
    assert lr_factor(15, **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(25, **kw) == pytest.approx(0.0)


def test_sam_step_on_a_quadratic_by_hand():
    # L(w) = 0.5 w^T diag(1, 4) w at w = (1, 1): g = (1, 4), e = rho g / sqrt(17), step with grad at w + e
    a = torch.tensor([1.0, 4.0], dtype=torch.float64)
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    opt = SAM([w], rho=0.5, lr=0.1, momentum=0.0, weight_decay=0.0)

    def closure():
        opt.zero_grad()
        loss = 0.5 * (a * w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    e = [0.5 * 1 / math.sqrt(17), 0.5 * 4 / math.sqrt(17)]
    expected = [1 - 0.1 * 1 * (1 + e[0]), 1 - 0.1 * 4 * (1 + e[1])]
    assert w.detach().tolist() == pytest.approx(expected, abs=1e-12)


def test_sam_with_rho_zero_is_sgd():
    w1 = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    w2 = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    sam = SAM([w1], rho=0.0, lr=0.1, momentum=0.9)
    sgd = torch.optim.SGD([w2], lr=0.1, momentum=0.9)
    for _ in range(3):
        for w, opt in ((w1, sam), (w2, sgd)):

            def closure(w=w, opt=opt):
                opt.zero_grad()
                loss = (w**4).sum()
                loss.backward()
                return loss

            opt.step(closure)
    assert torch.allclose(w1, w2)


def test_sgd_is_built_as_configured():
    w = torch.nn.Parameter(torch.ones(2))
    opt = build_optimizer([{"params": [w]}], OptimizerConfig(lr=0.2, momentum=0.5, weight_decay=1e-3))
    assert type(opt) is torch.optim.SGD
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        0.2,
        0.5,
        1e-3,
        False,
    )


def test_two_adamw_steps_by_hand():
    # lr 0.1, betas (0.5, 0.75), eps 0.5 (large, so the step's size depends on |g|), weight decay 0.2
    o = OptimizerConfig(name="adamw", lr=0.1, betas=[0.5, 0.75], eps=0.5, weight_decay=0.2)
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    opt = build_optimizer([{"params": [w]}], o)
    assert type(opt) is torch.optim.AdamW
    closure = quadratic_closure(w, opt)
    # step 1, g = (1, 4): m_hat = g, v_hat = g^2; w <- w (1 - lr wd) - lr g / (|g| + eps)
    opt.step(closure)
    w1 = [0.98 - 0.1 * 1 / 1.5, 0.98 - 0.1 * 4 / 4.5]
    assert w.detach().tolist() == pytest.approx(w1, abs=1e-12)
    # step 2, g2 = A w1: m = 0.5 (0.5 g) + 0.5 g2, v = 0.75 (0.25 g^2) + 0.25 g2^2, bias corrections
    # 1 - 0.5^2 and 1 - 0.75^2
    opt.step(closure)
    expected = []
    for g, wi, a in zip((1.0, 4.0), w1, (1.0, 4.0), strict=True):
        g2 = a * wi
        m_hat = (0.25 * g + 0.5 * g2) / 0.75
        v_hat = (0.1875 * g**2 + 0.25 * g2**2) / 0.4375
        expected.append(wi * 0.98 - 0.1 * m_hat / (math.sqrt(v_hat) + 0.5))
    assert w.detach().tolist() == pytest.approx(expected, abs=1e-12)


def test_sam_over_adamw_ascends_then_takes_an_adamw_step():
    # at w = (1, 1): g = (1, 4), e = rho g / sqrt(17); AdamW's first step with g' = A (w + e):
    # w <- w (1 - lr wd) - lr g' / (|g'| + eps)
    o = OptimizerConfig(name="sam", base="adamw", rho=0.5, lr=0.1, eps=1.0, weight_decay=0.2)
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    opt = build_optimizer([{"params": [w]}], o)
    assert type(opt) is SAMAdamW and opt.rho == 0.5
    opt.step(quadratic_closure(w, opt))
    e = [0.5 * 1 / math.sqrt(17), 0.5 * 4 / math.sqrt(17)]
    g = [1 * (1 + e[0]), 4 * (1 + e[1])]
    expected = [0.98 - 0.1 * gi / (gi + 1.0) for gi in g]
    assert w.detach().tolist() == pytest.approx(expected, abs=1e-12)


def test_sam_over_sgd_by_default():
    w = torch.nn.Parameter(torch.ones(2))
    assert type(build_optimizer([{"params": [w]}], OptimizerConfig(name="sam"))) is SAM


def test_biases_and_norms_go_to_no_decay_groups_that_keep_the_method_groups_keys():
    linear, norm, radius = torch.nn.Linear(3, 2), torch.nn.LayerNorm(2), torch.nn.Parameter(torch.ones(2))
    method_groups = [
        {"params": [*linear.parameters(), *norm.parameters()]},
        {"params": [radius], "lr": 0.01, "weight_decay": 0.0, "decay_follows_phase": False},
    ]
    o = OptimizerConfig(name="adamw", lr=0.1, weight_decay=0.05, decay_norm_and_bias=False)
    opt = build_optimizer(method_groups, o)
    decayed, flat, radius_group = opt.param_groups
    assert decayed["params"] == [linear.weight] and decayed["weight_decay"] == 0.05
    assert decayed.get("decay_follows_phase", True)
    assert flat["params"] == [linear.bias, norm.weight, norm.bias]
    assert flat["weight_decay"] == 0.0 and flat["decay_follows_phase"] is False
    assert radius_group["params"] == [radius] and radius_group["lr"] == 0.01  # its empty decayed twin dropped
    assert [g["method_group"] for g in opt.param_groups] == [0, 0, 1]
    # zero gradients: Adam's update is 0 / (0 + eps) = 0, so only the decay moves a parameter
    weight, bias = linear.weight.detach().clone(), linear.bias.detach().clone()
    for p in (*linear.parameters(), *norm.parameters(), radius):
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.allclose(linear.weight, weight * (1 - 0.1 * 0.05))
    assert torch.equal(linear.bias, bias)
    assert torch.equal(norm.weight, torch.ones(2)) and torch.equal(norm.bias, torch.zeros(2))


def test_decay_on_everything_keeps_the_method_groups_as_they_are():
    linear = torch.nn.Linear(3, 2)
    opt = build_optimizer([{"params": list(linear.parameters())}], OptimizerConfig(decay_norm_and_bias=True))
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 2e-4


def test_split_groups_keep_their_method_groups_lr_factor():
    # ARConvL's groups, split: main (decayed / not) on the step schedule, radius on its own
    info = DataInfo(3, [40, 8, 4], in_channels=1, image_size=28, train_size=52, val_size=6, test_size=30)
    cfg = make_config(
        "method=arconvl",
        "method.latent_dim=2",
        "optimizer.decay_norm_and_bias=false",
        "optimizer.lr=0.1",
        "lr_schedule.name=step",
        "lr_schedule.warmup_epochs=0",
        "lr_schedule.milestones=[26]",
        "lr_schedule.factors=[0.1]",
    )
    setup = ARConvLMethod(cfg, info, schedule_of(cfg.schedule)).configure_optimizers()
    optimizer, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    assert [g["method_group"] for g in optimizer.param_groups] == [0, 0, 1]
    lrs = {}
    for epoch in range(27):
        lrs[epoch] = [g["lr"] for g in optimizer.param_groups]
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx([0.1, 0.1, 1e-3])  # radius: radius_lr_warm
    assert lrs[26] == pytest.approx([0.01, 0.01, 1e-2])  # main x0.1 from epoch 26; radius: radius_lr


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.betas=[0.9,1.0]", "optimizer.betas=[0.9, 1.0] must be two numbers in [0, 1)"),
        ("optimizer.betas=[0.9]", "optimizer.betas=[0.9] must be two numbers in [0, 1)"),
        ("optimizer.eps=0", "optimizer.eps=0.0 must be > 0"),
        ("optimizer.base=adam", "optimizer.base='adam' is not a known option; choose one of: sgd, adamw"),
    ],
)
def test_bad_optimizer_values_name_the_key(override, message):
    cfg = make_config("optimizer=sam", override)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(cfg)


def test_adamw_option_composes_with_its_recipe():
    o = make_config("optimizer=adamw").optimizer
    assert (o.name, o.lr, list(o.betas), o.eps, o.weight_decay, o.decay_norm_and_bias) == (
        "adamw",
        1e-3,
        [0.9, 0.999],
        1e-8,
        0.05,
        False,
    )
    assert OmegaConf.select(make_config("optimizer=sam"), "optimizer.base") == "sgd"
