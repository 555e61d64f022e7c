"""Shared reduction for every logit loss.

All losses compute an unreduced per-sample loss and reduce it the way ``F.cross_entropy(weight=w)``
does: ``sum_i s_i w_{y_i} l_i / sum_i w_{y_i}``, where ``w`` are class weights (1 when absent) and
``s`` optional per-sample weights (mixup label weights, PHASE's MSR weights). With ``s`` absent this is
exactly torch's weighted-CE normalisation; with ``w`` absent it is ``mean(s * l)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def weighted_mean(
    per_sample: Tensor,
    targets: Tensor,
    class_weights: Tensor | None = None,
    sample_weights: Tensor | None = None,
) -> Tensor:
    if class_weights is None:
        w = torch.ones_like(per_sample)
    else:
        w = class_weights.to(per_sample.dtype)[targets]
    numerator = w * per_sample if sample_weights is None else w * sample_weights * per_sample
    return numerator.sum() / w.sum()


class LogitLoss(nn.Module):
    """A loss on classifier outputs. Subclasses implement :meth:`per_sample`."""

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(
        self,
        logits: Tensor,
        targets: Tensor,
        class_weights: Tensor | None = None,
        sample_weights: Tensor | None = None,
    ) -> Tensor:
        return weighted_mean(self.per_sample(logits, targets), targets, class_weights, sample_weights)

    def predict(self, logits: Tensor) -> Tensor:
        """Scores whose argmax is the prediction at evaluation (identity unless the loss says otherwise)."""
        return logits
