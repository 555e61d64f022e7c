"""LR factors per the reference recipes, and one SAM step checked by hand on a quadratic."""

from __future__ import annotations

import math

import pytest
import torch

from lt_bench.optim import SAM, lr_factor


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
