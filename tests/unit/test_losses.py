"""Plain-logit losses (ce, focal, la, balanced_softmax, vs, asl) and the reduction, by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lt_bench.losses import build_loss
from lt_bench.losses.class_weights import effective_number_weights, inverse_frequency_weights
from tests.helpers import approx, t, y

# -- reduction -----------------------------------------------------------------------------------------
# sample A: z = [0, 0], y = 0 -> CE = log 2; sample B: z = [log 3, 0], y = 1 -> p_1 = 1/4, CE = log 4
PAIR_Z, PAIR_Y = t([0.0, 0.0], [math.log(3), 0.0]), y(0, 1)


def test_ce_value():
    s = math.exp(1) + math.exp(2) + math.exp(0)
    approx(build_loss("ce", [1, 1, 1]).per_sample(t([1.0, 2.0, 0.0]), y(1))[0], math.log(s) - 2)


def test_class_weighted_reduction_is_weighted_ce_normalisation():
    loss = build_loss("ce", [1, 1])
    w = torch.tensor([2.0, 0.5])
    # (2 log 2 + 0.5 log 4) / (2 + 0.5) = 3 log 2 / 2.5
    approx(loss(PAIR_Z, PAIR_Y, class_weights=w), 1.2 * math.log(2))
    approx(loss(PAIR_Z, PAIR_Y), 0.5 * (math.log(2) + math.log(4)))


def test_sample_weights_reduction():
    loss = build_loss("ce", [1, 1])
    w, s = torch.tensor([2.0, 0.5]), torch.tensor([0.25, 1.0])
    # (0.25 * 2 * log 2 + 1 * 0.5 * log 4) / (2 + 0.5): sample weights scale, class weights normalise
    approx(loss(PAIR_Z, PAIR_Y, class_weights=w, sample_weights=s), 1.5 * math.log(2) / 2.5)
    # no class weights: mean(s * l) = (0.25 log 2 + log 4) / 2
    approx(loss(PAIR_Z, PAIR_Y, sample_weights=s), (0.25 * math.log(2) + math.log(4)) / 2)


def test_ce_with_class_weights_equals_torch_weighted_ce():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(32, 5, generator=g), torch.randint(0, 5, (32,), generator=g)
    w = torch.rand(5, generator=g) + 0.1
    ours = build_loss("ce", [1] * 5)(logits, targets, class_weights=w)
    torch.testing.assert_close(ours, F.cross_entropy(logits, targets, weight=w))


# -- focal ---------------------------------------------------------------------------------------------
# z = [0, log 3], y = 0: p = [1/4, 3/4], CE = log 4; gamma = 2: (3/4)^2 log 4
FOCAL_Z, FOCAL_Y = t([0.0, math.log(3)]), y(0)


@pytest.mark.parametrize("detach", [False, True])
def test_focal_value(detach):
    loss = build_loss("focal", [1, 1], gamma=2.0, detach=detach)
    approx(loss(FOCAL_Z, FOCAL_Y), 0.75**2 * math.log(4))


def test_focal_gradient_keeps_or_detaches_the_modulation():
    # d CE / dz = p - e_y = [-3/4, 3/4]; d p_y / dz = p_y (e_y - p) = [3/16, -3/16]
    # full: (1-p_y)^2 (p - e_y) - 2 (1-p_y) (d p_y/dz) CE ; detached: first term only
    first = [0.5625 * -0.75, 0.5625 * 0.75]
    second = [-2 * 0.75 * 0.1875 * math.log(4), 2 * 0.75 * 0.1875 * math.log(4)]
    for detach, expected in [(False, [a + b for a, b in zip(first, second, strict=True)]), (True, first)]:
        z = FOCAL_Z.clone().requires_grad_()
        build_loss("focal", [1, 1], gamma=2.0, detach=detach)(z, FOCAL_Y).backward()
        torch.testing.assert_close(z.grad[0], torch.tensor(expected, dtype=torch.float64))


def test_focal_gamma_zero_is_ce_and_stays_finite_when_confident():
    z = torch.tensor([[0.0, 40.0]], requires_grad=True)  # float32 p_y rounds to 1
    loss = build_loss("focal", [1, 1], gamma=0.5)
    loss(z, y(1)).backward()
    assert torch.isfinite(z.grad).all()
    approx(build_loss("focal", [1, 1], gamma=0.0)(FOCAL_Z, FOCAL_Y), math.log(4))


# -- logit adjustment ----------------------------------------------------------------------------------
def test_la_value_and_raw_prediction():
    # counts [3, 1]: pi = [3/4, 1/4]; z = [0, 0], y = 1 -> CE([log 3/4, log 1/4], 1) = log 4
    approx(build_loss("la", [3, 1])(t([0.0, 0.0]), y(1)), math.log(4))
    # tau = 1/2: adjusted [0.5 log 0.75, 0.5 log 0.25] -> -0.5 log 0.25 + log(sqrt(0.75) + 0.5)
    expected = -0.5 * math.log(0.25) + math.log(math.sqrt(0.75) + 0.5)
    approx(build_loss("la", [3, 1], tau=0.5)(t([0.0, 0.0]), y(1)), expected)
    z = t([0.2, 0.1])
    assert torch.equal(build_loss("la", [3, 1]).predict(z), z)


def test_balanced_softmax_is_la_with_tau_one():
    # counts [3, 1], z = [1, 0]: adjusted [1 + log 3/4, log 1/4];
    # y = 0: -log(0.75 e / (0.75 e + 0.25)) = log(1 + 1/(3e)); y = 1: log(1 + 3e)
    loss = build_loss("balanced_softmax", [3, 1])
    approx(loss(t([1.0, 0.0]), y(0)), math.log(1 + 1 / (3 * math.e)))
    approx(loss(t([1.0, 0.0]), y(1)), math.log(1 + 3 * math.e))
    z = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    assert torch.equal(loss(z, targets), build_loss("la", [3, 1], tau=1.0)(z, targets))
    assert torch.equal(loss.predict(z), z)  # Ren et al. evaluate on the plain softmax


# -- VS / TLA ------------------------------------------------------------------------------------------
# counts [4, 1]: pi = [0.8, 0.2], n / n_max = [1, 0.25]; z = [1, 2], y = 1
def vs_expected(scale_1: float) -> float:
    a0, a1 = 1.0 + math.log(0.8), 2.0 * scale_1 + math.log(0.2)
    return -a1 + math.log(math.exp(a0) + math.exp(a1))


@pytest.mark.parametrize(
    "gamma, multiplicative, scale_1",
    [(0.2, True, 0.25**0.2), (0.0, True, 1.0), (0.2, False, 1.0), (0.0, False, 1.0)],
)
def test_vs_value(gamma, multiplicative, scale_1):
    loss = build_loss("vs", [4, 1], gamma=gamma, multiplicative=multiplicative)
    approx(loss(t([1.0, 2.0]), y(1)), vs_expected(scale_1))


def test_vs_predicts_with_raw_logits():
    z = t([0.3, 0.2])
    assert torch.equal(build_loss("vs", [4, 1]).predict(z), z)


# -- ASL -----------------------------------------------------------------------------------------------
# z = [1, 0, -1], y = 1: p_j = e^{z_j} / S with S = e + 1 + 1/e
S = math.e + 1 + 1 / math.e
P = [math.e / S, 1 / S, math.exp(-1) / S]


def test_asl_without_smoothing_and_gamma_pos_zero_is_ce():
    # non-targets carry no target mass when eps = 0, and a_y = (1 - p_y)^0 = 1
    approx(build_loss("asl", [1] * 3, eps=0.0)(t([1.0, 0.0, -1.0]), y(1)), math.log(S))


def test_asl_with_smoothing():
    eps = 0.1
    tgt = [eps / 3, 1 - eps + eps / 3, eps / 3]
    a = [P[0] ** 4, 1.0, P[2] ** 4]  # gamma_pos = 0, gamma_neg = 4
    expected = -sum(tj * aj * math.log(pj) for tj, aj, pj in zip(tgt, a, P, strict=True))
    approx(build_loss("asl", [1] * 3)(t([1.0, 0.0, -1.0]), y(1)), expected)


def test_asl_with_gamma_pos():
    eps = 0.2
    tgt = [eps / 3, 1 - eps + eps / 3, eps / 3]
    a = [P[0] ** 2, 1 - P[1], P[2] ** 2]  # gamma_pos = 1, gamma_neg = 2
    expected = -sum(tj * aj * math.log(pj) for tj, aj, pj in zip(tgt, a, P, strict=True))
    loss = build_loss("asl", [1] * 3, gamma_pos=1.0, gamma_neg=2.0, eps=eps)
    approx(loss(t([1.0, 0.0, -1.0]), y(1)), expected)


def test_asl_weights_are_differentiated_like_ridnik_single_label():
    # gradcheck compares autograd with finite differences: it fails if the asymmetric weights were
    # detached, because finite differences see their dependence on z
    loss = build_loss("asl", [1] * 3, gamma_pos=1.0, gamma_neg=2.0, eps=0.1)
    z = t([1.0, 0.0, -1.0], [0.3, -0.2, 0.5]).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: loss.per_sample(v, y(1, 2)), (z,))


# -- balanced data (ARConvL's q = 1 column) --------------------------------------------------------------
def test_on_equal_counts_la_is_ce_and_the_class_weights_are_one():
    # equal counts: LA's log prior is one constant added to every logit (softmax is shift-invariant) and the
    # inverse / effective-number weights, normalised to sum to C, are all 1 -- so at q = 1 the LA, CB and
    # CB Focal rows train the CPL / Focal losses (the paper's q = 1 column has them within 0.1 of each other)
    counts = [5400] * 4
    z = torch.randn(16, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    targets = torch.arange(16) % 4
    torch.testing.assert_close(build_loss("la", counts)(z, targets), build_loss("ce", counts)(z, targets))
    focal = build_loss("focal", counts, gamma=2.0)
    for weights in (inverse_frequency_weights(counts, 1.0), effective_number_weights(counts, 0.9999, 1.0)):
        torch.testing.assert_close(weights, torch.ones(4, dtype=weights.dtype))
        torch.testing.assert_close(focal(z, targets, class_weights=weights.to(z.dtype)), focal(z, targets))
