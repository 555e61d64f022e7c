"""Cosine-head losses (ldam, cri, kps) against hand-worked margins, radii, values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from lt_bench.losses import build_loss
from tests.helpers import approx, t, y


def same(actual: torch.Tensor, expected: list[float], tol: float = 1e-6) -> None:
    torch.testing.assert_close(
        actual.double(), torch.tensor(expected, dtype=torch.float64), rtol=tol, atol=tol
    )


def ce(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


# -- LDAM ----------------------------------------------------------------------------------------------
def test_ldam_margins_cifar_counts():
    # m_j = 0.5 * n_j^{-1/4} / 50^{-1/4} = 0.5 * (50 / n_j)^{1/4}
    loss = build_loss("ldam", [5000, 500, 50])
    same(loss.margins, [0.5 * 0.01**0.25, 0.5 * 0.1**0.25, 0.5])  # 0.1581, 0.2812, 0.5


def test_ldam_value():
    loss = build_loss("ldam", [5000, 500, 50])
    cos = t([0.5, 0.2, -0.1], [0.5, 0.2, -0.1])
    m0 = 0.5 * 0.01**0.25
    per_sample = loss.per_sample(cos, y(2, 0))
    approx(per_sample[0], ce([15.0, 6.0, -18.0], 2))  # 30 * [0.5, 0.2, -0.1 - 0.5]
    approx(per_sample[1], ce([30 * (0.5 - m0), 6.0, -3.0], 0))
    assert torch.equal(loss.predict(cos), cos)


# -- CRI -----------------------------------------------------------------------------------------------
# counts [16, 1], max_m = 0.1: m = 0.1 * (1/16)^{1/4} = [0.05, 0.1]; s = 10, T = 0.01
# A: cos [0.2, 0.1], y = 0 -> 10 * [0.15, 0.1] = [1.5, 1.0]: CE = log(1 + e^-0.5), p = 0.6225 > T
# B: cos [0.5, -0.3], y = 1 -> 10 * [0.5, -0.4] = [5, -4]: CE = log(1 + e^9), p = 1.234e-4 < T
CRI_COS, CRI_Y = t([0.2, 0.1], [0.5, -0.3]), y(0, 1)
CE_A, CE_B = math.log(1 + math.exp(-0.5)), math.log(1 + math.exp(9))
P_A, P_B = 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(9))
T = 0.01


def cri(sigma: str, gamma: float = 1.0):
    return build_loss("cri", [16, 1], gamma=gamma, max_m=0.1, s=10.0, T=T, sigma=sigma)


@pytest.mark.parametrize("gamma", [1.0, 2.0])
@pytest.mark.parametrize("sigma", ["zero", "fixed", "decreasing"])
def test_cri_values_above_and_below_threshold(sigma, gamma):
    c = -((1 - T) ** gamma) * math.log(T)
    below = {"zero": 0.0, "fixed": c, "decreasing": (P_B / T) * c}[sigma]
    per_sample = cri(sigma, gamma).per_sample(CRI_COS, CRI_Y)
    approx(per_sample[0], (1 - P_A) ** gamma * CE_A)
    approx(per_sample[1], below)
    approx(cri(sigma, gamma)(CRI_COS, CRI_Y), ((1 - P_A) ** gamma * CE_A + below) / 2)


@pytest.mark.parametrize("sigma", ["zero", "fixed", "decreasing"])
def test_cri_gradient_matches_finite_differences(sigma):
    loss = cri(sigma)
    cos = CRI_COS.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: loss.per_sample(v, CRI_Y), (cos,))


def test_cri_outlier_gradient_is_zero_for_constants_and_flows_for_decreasing():
    grads = {}
    for sigma in ("zero", "fixed", "decreasing"):
        cos = CRI_COS.clone().requires_grad_()
        cri(sigma).per_sample(cos, CRI_Y).sum().backward()
        grads[sigma] = cos.grad
    assert torch.equal(grads["zero"][1], torch.zeros(2, dtype=torch.float64))
    assert torch.equal(grads["fixed"][1], torch.zeros(2, dtype=torch.float64))
    # d/dcos [(p_y / T) c] = (c / T) * s * p_y (e_y - p), with y = 1, p = [1 - p_y, p_y]
    c = -(1 - T) * math.log(T)
    g = (c / T) * 10 * P_B * (1 - P_B)
    same(grads["decreasing"][1], [-g, g])
    # above the threshold all three are the same focal-LDAM gradient
    same(grads["zero"][0], grads["decreasing"][0].tolist())


@pytest.mark.parametrize("sigma", ["fixed", "decreasing"])
def test_cri_is_continuous_at_the_threshold(sigma):
    # two classes, no margin, s = 1: p_y = sigmoid(d), d = cos_y - cos_other; put p_y just either side of T
    loss = build_loss("cri", [1, 1], max_m=0.0, s=1.0, T=T, sigma=sigma)
    d = math.log(T / (1 - T))
    values = loss.per_sample(t([0.0, d - 1e-7], [0.0, d + 1e-7]), y(1, 1))
    approx(values[0], values[1].item(), tol=1e-5)
    approx(values[1], -(1 - T) * math.log(T), tol=1e-5)


# -- KPS -----------------------------------------------------------------------------------------------
def test_kps_geometry_with_unsorted_counts():
    # counts [20, 500, 5, 50], n_base = 50: r'_j = log(n_j * 50 / 5) = log(10 n_j), min r' = log 50
    loss = build_loss("kps", [20, 500, 5, 50], m_max=0.5, s=15.0, s_max=30.0)
    r = [math.log(200) / math.log(50), math.log(5000) / math.log(50), 1.0, math.log(500) / math.log(50)]
    m_raw = [max(r) + 1 - rj for rj in r]  # [1.8229, 1, 2.1772, 1.5886]
    same(loss.radius, r)
    same(loss.margin_raw, m_raw)
    same(loss.margin, [mj * 0.5 / max(m_raw) for mj in m_raw])
    # 15 * m' = [27.34, 15, 32.66, 23.83]: the rarest class is clamped at s_max = 30
    same(loss.ga_scale, [15 * m_raw[0], 15.0, 30.0, 15 * m_raw[3]])


# counts [1, 10]: r = [1, R] with R = log 500 / log 50; m' = [R, 1]; m = [0.5, 0.5 / R]
R = math.log(500) / math.log(50)
KPS_COS = t([0.3, 0.6])


def test_kps_value_without_ga():
    loss = build_loss("kps", [1, 10], m_max=0.5, s=15.0)
    approx(loss(KPS_COS, y(0)), ce([15 * (0.3 - 0.5), 15 * R * 0.6], 0))
    approx(loss(KPS_COS, y(1)), ce([15 * 0.3, 15 * (R * 0.6 - 0.5 / R)], 1))
    assert torch.equal(loss.predict(KPS_COS), KPS_COS)


def test_kps_value_with_ga_scales_by_the_target_class():
    loss = build_loss("kps", [1, 10], m_max=0.5, s=15.0, ga=True)
    s0 = 15 * R  # clamp(15 * m'_0, 15, 50) = 23.83 for the rare class
    approx(loss(KPS_COS, y(0)), ce([s0 * (0.3 - 0.5), s0 * R * 0.6], 0))
    approx(loss(KPS_COS, y(1)), ce([15 * 0.3, 15 * (R * 0.6 - 0.5 / R)], 1))  # m'_1 = 1 -> s = 15


def test_cri_gradient_stays_finite_with_a_tiny_threshold():
    # p_y / T overflows float32 for T = 1e-50; the unused branch must not poison the gradient with NaN
    logits = torch.tensor([[0.9, -0.2, 0.1], [-0.5, 0.8, 0.3]], requires_grad=True)
    loss = build_loss("cri", [100, 10, 1], T=1e-50, sigma="decreasing")
    loss(logits, torch.tensor([0, 2]), class_weights=torch.tensor([0.1, 1.0, 10.0])).backward()
    assert torch.isfinite(logits.grad).all()
