"""Classifier heads: ``forward(features [B, d]) -> [B, C]``.

- ``linear``: ``nn.Linear`` with bias.
- ``cosine``: "normed linear" (LDAM, CRI, KPS): cosines between the feature and each class weight.
- ``prototype``: ARConvL's distance head: logits are minus squared distances to learnable centres.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lt_bench.errors import ConfigError

HEAD_NAMES = ("linear", "cosine", "prototype")

_PARAMS: dict[str, tuple[str, ...]] = {"linear": (), "cosine": (), "prototype": ("radius_init",)}


class CosineHead(nn.Module):
    """``normalize(f) @ normalize(W)`` with ``W`` [in_dim, C]; outputs are cosines (no scale: the loss
    applies its own ``s``)."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # LDAM's NormedLinear init: uniform(-1, 1), then every class column rescaled to unit norm
        # (renorm to 1e-5, times 1e5); forward normalises anyway, this only sets the starting scale
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, features: Tensor) -> Tensor:
        return F.normalize(features, dim=1) @ F.normalize(self.weight, dim=0)


class PrototypeHead(nn.Module):
    """Learnable class centres ``centres`` [C, d] and radius parameters ``radius_param`` [C].

    ``forward`` returns ``-||f - C_j||^2``, so the prediction (argmax) is the nearest centre. The radii
    do not enter the logits; ARConvL's losses read :attr:`radius_sq` (``R_j^2 = a_j^2``). Centres and
    radii are separate parameters so an optimizer can give the radii their own group.
    """

    def __init__(self, in_dim: int, num_classes: int, radius_init: float = 0.1) -> None:
        super().__init__()
        self.radius_init = float(radius_init)
        self.centres = nn.Parameter(torch.empty(num_classes, in_dim))
        self.radius_param = nn.Parameter(torch.empty(num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # ARConvL's Keras 'he_uniform' on a [C, d] weight takes fan_in = C: uniform(+-sqrt(6 / C))
        bound = math.sqrt(6.0 / self.centres.shape[0])
        with torch.no_grad():
            self.centres.uniform_(-bound, bound)
            self.radius_param.fill_(self.radius_init)

    @property
    def radius_sq(self) -> Tensor:
        """Squared radii ``R_j^2 = a_j^2`` [C]."""
        return self.radius_param**2

    def squared_distances(self, features: Tensor) -> Tensor:
        """``D_ij = ||f_i - C_j||^2`` [B, C] as ``||f||^2 - 2 f.C + ||C||^2``: one matmul, no [B, C, d]
        difference tensor; clamped at 0 because cancellation can leave tiny negatives."""
        c = self.centres
        d = (features * features).sum(1, keepdim=True) - 2.0 * features @ c.T + (c * c).sum(1)
        return d.clamp_min(0.0)

    def forward(self, features: Tensor) -> Tensor:
        return -self.squared_distances(features)


def build_head(kind: str, in_dim: int, num_classes: int, **params: Any) -> nn.Module:
    """Build the head ``kind`` (one of :data:`HEAD_NAMES`); ``prototype`` takes ``radius_init`` (0.1)."""
    if kind not in _PARAMS:
        raise ConfigError(f"head {kind!r} is not known; choose one of: {', '.join(HEAD_NAMES)}")
    unknown = sorted(set(params) - set(_PARAMS[kind]))
    if unknown:
        valid = ", ".join(_PARAMS[kind]) or "(none)"
        raise ConfigError(f"head {kind!r} has no parameter(s) {', '.join(unknown)}; valid: {valid}")
    if in_dim < 1 or num_classes < 1:
        raise ConfigError(f"head {kind!r}: in_dim={in_dim} and num_classes={num_classes} must be >= 1")
    if kind == "linear":
        return nn.Linear(in_dim, num_classes)
    if kind == "cosine":
        return CosineHead(in_dim, num_classes)
    return PrototypeHead(in_dim, num_classes, radius_init=params.get("radius_init", 0.1))
