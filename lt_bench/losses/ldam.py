"""LDAM (Cao et al.): label-distribution-aware margins on a scaled cosine head."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from lt_bench.losses.base import LOSSES, LogitLoss, NonNegative, Positive, class_count_tensor


def ldam_margins(class_counts: Tensor, max_m: float) -> Tensor:
    """``m_j = max_m * n_j^{-1/4} / max_k n_k^{-1/4}``: the rarest class gets ``max_m``."""
    inv_root = class_counts.pow(-0.25)
    return max_m * inv_root / inv_root.max()


def margin_logits(logits: Tensor, targets: Tensor, margins: Tensor) -> Tensor:
    """``z_ij - m_{y_i} 1[j = y_i]``: subtract the target class's margin from the target logit only."""
    # scatter_add of -m_y equals subtracting one-hot * m bit for bit, with fewer passes over the logits
    return logits.scatter_add(1, targets.long().unsqueeze(1), -margins.to(logits.dtype)[targets].unsqueeze(1))


def ldam_ce(cosines: Tensor, targets: Tensor, margins: Tensor, s: float) -> Tensor:
    """Per-sample ``CE(s * (cos - m_y 1_y), y)``."""
    return F.cross_entropy(s * margin_logits(cosines, targets, margins), targets, reduction="none")


@LOSSES.register("ldam")
class LDAMLoss(LogitLoss):
    """``l_i = CE(s * (cos_i - m_{y_i} 1_{y_i}), y_i)`` on cosine-head outputs in [-1, 1].

    Prediction is the argmax of the cosines (the margin is training-only; s does not change argmax).
    """

    def __init__(
        self, class_counts: Sequence[int] | Tensor, *, max_m: NonNegative = 0.5, s: Positive = 30.0
    ) -> None:
        super().__init__()
        self.max_m, self.s = max_m, s
        self.register_buffer("margins", ldam_margins(class_count_tensor(class_counts), max_m).float())

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        self.check_width(logits, self.margins.numel())
        return ldam_ce(logits, targets, self.margins, self.s)

    def extra_repr(self) -> str:
        return f"max_m={self.max_m}, s={self.s}"
