"""Vector-scaling loss (Kini et al.) and its truncated form TLA (Wang et al., DDC)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from lt_bench.losses.base import LOSSES, LogitLoss, NonNegative, Switch, class_count_tensor


@LOSSES.register("vs")
class VSLoss(LogitLoss):
    """``l_i = CE(z_i * (n / n_max)^gamma + tau * log pi, y_i)``; with ``multiplicative=False`` (TLA)
    the scaling is dropped: ``CE(z_i + tau * log pi, y_i)``.

    Both adjustments are training-only: evaluation argmaxes the raw logits ``z`` (as the reference
    code does), so :meth:`predict` is the identity.
    """

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor,
        *,
        gamma: NonNegative = 0.2,
        tau: NonNegative = 1.0,
        multiplicative: Switch = True,
    ) -> None:
        super().__init__()
        counts = class_count_tensor(class_counts)
        self.gamma, self.tau, self.multiplicative = gamma, tau, multiplicative
        self.register_buffer("scale", (counts / counts.max()).pow(gamma).float())
        self.register_buffer("log_prior", (counts / counts.sum()).log().float())

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        self.check_width(logits, self.log_prior.numel())
        dtype = logits.dtype
        scaled = logits * self.scale.to(dtype) if self.multiplicative else logits
        return F.cross_entropy(scaled + self.tau * self.log_prior.to(dtype), targets, reduction="none")

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, tau={self.tau}, multiplicative={self.multiplicative}"
