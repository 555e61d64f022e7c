"""KPS loss (Li et al., Keke921/KPSLoss): count-dependent radius and margin on a cosine head, with the
optional gradient adjustment (GA) that scales each sample by its target class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor

from lt_bench.losses.base import LOSSES, LogitLoss, NonNegative, Positive, Real, Switch, class_count_tensor
from lt_bench.losses.ldam import margin_logits


def kps_geometry(
    class_counts: Tensor, m_max: float, s: float, n_base: float, s_max: float
) -> dict[str, Tensor]:
    """Per-class tensors of KPS, in class order (any order of the counts):

    - ``radius``     ``r_j = r'_j / min_k r'_k`` with ``r'_j = log(n_j * n_base / min_k n_k)``;
    - ``margin_raw`` ``m'_j = max_k r_k + 1 - r_j`` (rarest class largest, most frequent 1);
    - ``margin``     ``m_j = m'_j * m_max / max_k m'_k``;
    - ``ga_scale``   ``s_j = clamp(s * m'_j, s, s_max)`` (GA's per-target scale).

    The reference code builds m' by reversing the class-sorted r list, which equals this formula only
    for head-first exponential profiles; the paper's formula holds for any order.
    """
    radius_raw = torch.log(class_counts * n_base / class_counts.min())
    radius = radius_raw / radius_raw.min()
    margin_raw = radius.max() + 1.0 - radius
    margin = margin_raw * m_max / margin_raw.max()
    ga_scale = (s * margin_raw).clamp(min=s, max=s_max)
    return {"radius": radius, "margin_raw": margin_raw, "margin": margin, "ga_scale": ga_scale}


@LOSSES.register("kps")
class KPSLoss(LogitLoss):
    """``l_i = CE(s_i * (r * cos_i - m_{y_i} 1_{y_i}), y_i)`` on cosine-head outputs in [-1, 1], with
    ``s_i = s`` or, when ``ga``, ``s_i = clamp(s * m'_{y_i}, s, s_max)``.

    Prediction: the argmax of the plain cosines. The authors' evaluation argmaxes the cosine head's
    output as it is (radius, margin and scale live only in the loss), so :meth:`predict` is the identity.
    """

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor,
        *,
        m_max: NonNegative = 0.5,
        s: Positive = 15.0,
        n_base: Annotated[float, Real(low=1.0, open_low=True)] = 50.0,  # > 1: r' = log(n n_base / n_min) > 0
        ga: Switch = False,
        s_max: Positive = 50.0,
    ) -> None:
        super().__init__()
        if s_max < s:
            raise ValueError(f"s_max ({s_max}) must be >= s ({s})")
        self.m_max, self.s, self.n_base, self.ga, self.s_max = m_max, s, n_base, ga, s_max
        geometry = kps_geometry(class_count_tensor(class_counts), m_max, s, n_base, s_max)
        for key, value in geometry.items():
            self.register_buffer(key, value.float())

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        self.check_width(logits, self.radius.numel())
        dtype = logits.dtype
        adjusted = margin_logits(self.radius.to(dtype) * logits, targets, self.margin)
        scale = self.ga_scale.to(dtype)[targets].unsqueeze(1) if self.ga else self.s
        return F.cross_entropy(scale * adjusted, targets, reduction="none")

    def extra_repr(self) -> str:
        return f"m_max={self.m_max}, s={self.s}, n_base={self.n_base}, ga={self.ga}, s_max={self.s_max}"
