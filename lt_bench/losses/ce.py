"""Cross-entropy, logit-adjusted cross-entropy (Menon et al.) and balanced softmax (Ren et al.)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from lt_bench.losses.base import LOSSES, LogitLoss, NonNegative, class_count_tensor


@LOSSES.register("ce")
class CrossEntropyLoss(LogitLoss):
    """``l_i = -log softmax(z_i)_{y_i}``; with class weights it equals ``F.cross_entropy(weight=w)``."""

    def __init__(self, class_counts: Sequence[int] | Tensor | None = None) -> None:
        super().__init__()

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits, targets, reduction="none")


@LOSSES.register("la")
class LogitAdjustedLoss(LogitLoss):
    """LA: ``l_i = CE(z_i + tau * log pi, y_i)`` with ``pi_j = n_j / sum_k n_k``.

    The prior only shifts training; evaluation argmaxes the raw logits ``z`` (Menon et al.'s
    loss-based variant), so :meth:`predict` is the identity on purpose.
    """

    def __init__(self, class_counts: Sequence[int] | Tensor, *, tau: NonNegative = 1.0) -> None:
        super().__init__()
        counts = class_count_tensor(class_counts)
        self.tau = tau
        self.register_buffer("log_prior", (counts / counts.sum()).log().float())

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        self.check_width(logits, self.log_prior.numel())
        return F.cross_entropy(logits + self.tau * self.log_prior.to(logits.dtype), targets, reduction="none")

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


@LOSSES.register("balanced_softmax")
class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax (Ren et al., 2020): ``CE(z + log pi)``, the softmax weighted by the class counts.

    It is LA with ``tau = 1`` fixed, registered under the name the literature uses; a subclass rather
    than an alias so that ``tau`` is not one of its parameters (``loss=la`` is the one to tune it).
    """

    def __init__(self, class_counts: Sequence[int] | Tensor) -> None:
        super().__init__(class_counts, tau=1.0)
