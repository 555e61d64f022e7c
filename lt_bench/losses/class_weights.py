"""Per-class loss weights from the training counts, normalised so that ``sum_j w_j = C``.

Both take an ``exponent`` so that schedules can fade a weighting in: exponent 0 gives all ones,
1 the full weighting (PPW's ``alpha(E)``, ADRW's ``nu``, DRW's switch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lt_bench.errors import ConfigError
from lt_bench.losses.base import class_count_tensor


def _normalised(raw: Tensor) -> Tensor:
    """``C * raw / sum(raw)``, computed in float64 and returned as float32."""
    return (raw * (raw.numel() / raw.sum())).float()


def inverse_frequency_weights(class_counts: Sequence[int] | Tensor, exponent: float = 1.0) -> Tensor:
    """RW: ``w_j ∝ (1 / n_j)^exponent``, normalised to sum C (``pi_j^{-nu}`` is the same with exponent nu)."""
    counts = class_count_tensor(class_counts)
    return _normalised(counts.pow(-float(exponent)))


def effective_number_weights(
    class_counts: Sequence[int] | Tensor, beta: float = 0.9999, exponent: float = 1.0
) -> Tensor:
    """CB (Cui et al.): ``w_j ∝ ((1 - beta) / (1 - beta^{n_j}))^exponent``, normalised to sum C."""
    if not 0.0 <= beta < 1.0:
        raise ConfigError(f"effective-number beta must be in [0, 1), got {beta}")
    counts = class_count_tensor(class_counts)
    # 1 - beta^n as -expm1(n log beta): no cancellation for beta close to 1; beta = 0 gives log 0 = -inf
    # and 1 - 0^n = 1, as it should
    effective_number = -torch.expm1(counts * torch.tensor(float(beta), dtype=torch.float64).log())
    return _normalised(((1.0 - beta) / effective_number).pow(float(exponent)))
