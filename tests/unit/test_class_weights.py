"""Class weights: hand-computed RW and CB (effective number) weights, normalised to sum C."""

from __future__ import annotations

import math

import pytest
import torch

from lt_bench.errors import ConfigError, DataError
from lt_bench.losses import effective_number_weights, inverse_frequency_weights


def close(actual: torch.Tensor, expected: list[float], tol: float = 1e-6) -> None:
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float32), rtol=tol, atol=tol)


def test_inverse_frequency_weights_sum_to_num_classes():
    # 1/n = [1, 1/2, 1/4], sum 7/4 -> times 3 / (7/4) = 12/7
    close(inverse_frequency_weights([1, 2, 4]), [12 / 7, 6 / 7, 3 / 7])


def test_inverse_frequency_exponent_fades_in():
    raw = [1.0, 2.0**-0.5, 4.0**-0.5]
    close(inverse_frequency_weights([1, 2, 4], exponent=0.5), [3 * r / sum(raw) for r in raw])
    close(inverse_frequency_weights([1, 2, 4], exponent=0.0), [1.0, 1.0, 1.0])


def test_inverse_frequency_accepts_unsorted_tensor_counts():
    # 1/n = [1/4, 1, 1/2], sum 7/4
    close(inverse_frequency_weights(torch.tensor([4, 1, 2])), [3 / 7, 12 / 7, 6 / 7])


def test_effective_number_weights_cifar_style():
    # CIFAR-10-LT IF 100 head/middle/tail counts, beta = 0.9999 as in Cui et al. and the LDAM-DRW code
    beta, counts = 0.9999, [5000, 500, 50]
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    expected = [3 * r / sum(raw) for r in raw]
    weights = effective_number_weights(counts, beta=beta)
    close(weights, expected, tol=1e-5)
    assert math.isclose(weights.sum().item(), 3.0, rel_tol=1e-6)
    # effective numbers: 1 - 0.9999^5000 = 0.3935, 1 - 0.9999^50 = 0.0049878 -> tail / head ~ 78.9
    assert math.isclose((weights[2] / weights[0]).item(), (1 - beta**5000) / (1 - beta**50), rel_tol=1e-5)


def test_effective_number_exponent_and_beta_zero_give_ones():
    close(effective_number_weights([5000, 500, 50], exponent=0.0), [1.0, 1.0, 1.0])
    close(effective_number_weights([5000, 500, 50], beta=0.0), [1.0, 1.0, 1.0])


def test_effective_number_exponent_half():
    beta, counts = 0.99, [100, 10]
    raw = [((1 - beta) / (1 - beta**n)) ** 0.5 for n in counts]
    close(effective_number_weights(counts, beta=beta, exponent=0.5), [2 * r / sum(raw) for r in raw])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="beta"):
        effective_number_weights([10, 1], beta=1.0)
    with pytest.raises(DataError, match="no training samples"):
        inverse_frequency_weights([10, 0, 3])
    with pytest.raises(DataError, match="1-D"):
        inverse_frequency_weights(torch.ones(2, 2))
