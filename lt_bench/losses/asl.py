"""Single-label asymmetric loss with label smoothing (Ridnik et al., ASLSingleLabel): PHASE's DAW."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor

from lt_bench.losses.base import LOSSES, LogitLoss, NonNegative, Real, target_mask


def asl_per_sample(logits: Tensor, targets: Tensor, gamma_pos: float, gamma_neg: float, eps: float) -> Tensor:
    """``l_i = -sum_j t_ij a_ij log p_ij`` with ``p = softmax(z)``,

    ``a_ij = (1 - p_iy)^gamma_pos`` for ``j = y_i`` and ``p_ij^gamma_neg`` otherwise,
    ``t_ij = (1 - eps) 1[j = y_i] + eps / C``.

    The weights ``a`` stay in the graph, as in Ridnik et al.'s ASLSingleLabel (its multi-label
    counterpart has an option to detach them; the single-label one does not). Powers are taken as
    ``exp(gamma * log(.))`` so that p_j underflowing to 0 gives weight 0 with a finite gradient.
    """
    log_p = torch.log_softmax(logits, dim=1)
    onehot = target_mask(logits, targets)
    negative = torch.exp(gamma_neg * log_p)
    if gamma_pos == 0:
        # (1 - p_y)^0 = exp(0 * log(1 - p_y)) is exactly 1 with a zero gradient: skipping it changes no
        # bit of the loss or its gradient and more than halves the cost (PHASE's default)
        a = torch.where(onehot.bool(), 1.0, negative)
    else:
        # log(1 - p_y) = log(-expm1(log p_y)) stays accurate when p_y is close to 1
        log_one_minus_p = torch.log((-torch.expm1(log_p)).clamp_min(torch.finfo(logits.dtype).tiny))
        a = torch.where(onehot.bool(), torch.exp(gamma_pos * log_one_minus_p), negative)
    smoothed = (1.0 - eps) * onehot + eps / logits.shape[1]
    return -(smoothed * a * log_p).sum(dim=1)


@LOSSES.register("asl")
class AsymmetricLoss(LogitLoss):
    """Single-label ASL (see :func:`asl_per_sample`); ``gamma_pos = gamma_neg = eps = 0`` is plain CE."""

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor | None = None,
        *,
        gamma_pos: NonNegative = 0.0,
        gamma_neg: NonNegative = 4.0,
        eps: Annotated[float, Real(low=0.0, high=1.0, open_high=True)] = 0.1,
    ) -> None:
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.eps = gamma_pos, gamma_neg, eps

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        return asl_per_sample(logits, targets, self.gamma_pos, self.gamma_neg, self.eps)

    def extra_repr(self) -> str:
        return f"gamma_pos={self.gamma_pos}, gamma_neg={self.gamma_neg}, eps={self.eps}"
