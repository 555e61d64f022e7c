"""mixup / Remix / PPmix label weights and mixing, against hand-computed values."""

from __future__ import annotations

import contextlib
import math
import random
import signal
import statistics
import sys

import pytest
import torch

from lt_bench.errors import ConfigError
from lt_bench.mixing import label_weights, mix_batch, sample_lambda

# pairs (n_a, n_b): ratio 3 (= kappa: y_b is the minority), 1/3 (y_a is), 2 and 1 (neither), 299/100
N_A = torch.tensor([300.0, 10.0, 100.0, 100.0, 299.0])
N_B = torch.tensor([100.0, 30.0, 50.0, 100.0, 100.0])


def weights(lam: float, progress: float) -> list[float]:
    return label_weights(lam, N_A, N_B, kappa=3.0, tau=0.5, progress=progress).tolist()


@pytest.mark.parametrize("lam", [0.3, 0.8, 0.5])
def test_progress_zero_is_plain_mixup(lam: float):
    assert weights(lam, 0.0) == pytest.approx([lam] * 5)


def test_lambda_below_tau_moves_weight_to_the_minority_label_b():
    # only pair 0 has n_a / n_b >= 3; lam = 0.3 < tau; 1 - lam = 0.7 is not < tau, so pair 1 keeps lam
    assert weights(0.3, 1.0) == pytest.approx([0.0, 0.3, 0.3, 0.3, 0.3])  # Remix
    assert weights(0.3, 0.5) == pytest.approx([0.3 * 0.5, 0.3, 0.3, 0.3, 0.3])  # PPmix lambda_0


def test_lambda_above_one_minus_tau_moves_weight_to_the_minority_label_a():
    # only pair 1 has n_a / n_b <= 1/3; 1 - lam = 0.2 < tau; lam = 0.8 is not < tau, so pair 0 keeps lam
    assert weights(0.8, 1.0) == pytest.approx([0.8, 1.0, 0.8, 0.8, 0.8])  # Remix
    assert weights(0.8, 0.5) == pytest.approx([0.8, 0.8 * 0.5 + 0.5, 0.8, 0.8, 0.8])  # PPmix lambda_1


def test_thresholds_are_strict_in_lambda():
    # lam = tau = 0.5: neither lam < tau nor 1 - lam < tau
    assert weights(0.5, 1.0) == pytest.approx([0.5] * 5)


def test_dtype_and_shape_follow_the_counts():
    out = label_weights(0.3, N_A.half(), N_B.half(), 3.0, 0.5, 1.0)
    assert out.dtype == torch.float16 and out.shape == (5,)
    assert label_weights(0.3, N_A.long(), N_B.long(), 3.0, 0.5, 1.0).dtype == torch.float32


def test_label_weights_rejects_progress_outside_unit_interval():
    with pytest.raises(ValueError, match="progress"):
        label_weights(0.3, N_A, N_B, 3.0, 0.5, 1.5)


def test_mix_batch():
    x = torch.tensor([[0.0, 4.0], [8.0, 12.0], [16.0, 20.0]])
    y = torch.tensor([0, 1, 2])
    perm = torch.tensor([2, 0, 1])
    mixed, y_a, y_b = mix_batch(x, y, 0.25, perm)
    # 0.25 x_i + 0.75 x_perm(i)
    expected = torch.tensor(
        [
            [0.25 * 0 + 0.75 * 16, 0.25 * 4 + 0.75 * 20],
            [0.25 * 8 + 0.75 * 0, 0.25 * 12 + 0.75 * 4],
            [0.25 * 16 + 0.75 * 8, 0.25 * 20 + 0.75 * 12],
        ]
    )
    torch.testing.assert_close(mixed, expected)
    assert y_a.tolist() == [0, 1, 2] and y_b.tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="perm"):
        mix_batch(x, y, 0.25, torch.tensor([0, 1]))


def draws(alpha: float, seed: int, n: int) -> list[float]:
    generator = torch.Generator().manual_seed(seed)
    return [sample_lambda(alpha, generator) for _ in range(n)]


def test_beta_sampling_moments():
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) -> 1/12 for a = 1, 1/5.6 for a = 0.2
    uniform = draws(1.0, seed=0, n=4000)
    assert all(0.0 <= v <= 1.0 for v in uniform)
    assert statistics.fmean(uniform) == pytest.approx(0.5, abs=0.02)
    assert statistics.pvariance(uniform) == pytest.approx(1 / 12, abs=0.01)
    u_shaped = draws(0.2, seed=0, n=4000)
    assert statistics.fmean(u_shaped) == pytest.approx(0.5, abs=0.03)
    assert statistics.pvariance(u_shaped) == pytest.approx(1 / (4 * 1.4), abs=0.015)


def test_beta_sampling_is_reproducible_from_the_generator():
    assert draws(1.0, seed=7, n=5) == draws(1.0, seed=7, n=5)
    assert draws(1.0, seed=7, n=5) != draws(1.0, seed=8, n=5)


def test_sample_lambda_validates_alpha():
    with pytest.raises(ConfigError, match="mix_alpha"):
        sample_lambda(0.0, torch.Generator())


def test_ppmix_label_weights_follow_their_own_rho():
    """PPmix's lambda_0 = lam (1 - p_mix(E)) with p_mix on PPmix's own curvature (the PPL authors'
    CIFAR ppm_alpha 3), not PPW's rho 5: at the phase's midpoint 1/8, not 1/32."""
    from lt_bench.schedules import Schedule

    schedule = Schedule(e0=100, e1=160, rho=5.0, weighting="inverse", mixing="ppmix", mix_rho=3.0)
    w = label_weights(0.3, N_A, N_B, kappa=3.0, tau=0.5, progress=schedule.mix_progress(130)).tolist()
    assert w == pytest.approx([0.3 * (1 - 1 / 8), 0.3, 0.3, 0.3, 0.3])


@contextlib.contextmanager
def within(seconds: float):
    """Fails the test with :class:`TimeoutError` instead of hanging when the block runs past ``seconds``
    (a SIGALRM handler interrupts pure-Python loops such as the stdlib's rejection sampler)."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("alpha", [1e32, 1e200, 1e308, sys.float_info.max, math.inf])
def test_huge_alpha_draws_one_half_instead_of_looping(alpha: float):
    # Beta(a, a) for a >= 1e32 is 0.5 to double precision; 1e308 used to hang step 0 for good
    with within(2.0):
        assert draws(alpha, seed=3, n=20) == pytest.approx([0.5] * 20, abs=1e-15)


def test_the_cap_keeps_the_draws_of_ordinary_alphas():
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=torch.Generator().manual_seed(5)).item())
    assert draws(0.4, seed=5, n=1) == [random.Random(seed).betavariate(0.4, 0.4)]
