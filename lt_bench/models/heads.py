"""Classifier heads: ``forward(features [B, d]) -> [B, C]``, chosen by ``loss.head=NAME`` from :data:`HEADS`.

- ``linear``: ``nn.Linear`` with bias.
- ``cosine``: "normed linear" (LDAM, CRI, KPS): cosines between the feature and each class weight.
- ``prototype``: the distance head of convolutional prototype learning (CPL; Yang et al., CVPR 2018):
  logits are minus squared distances to learnable class centres, so the prediction is the nearest
  centre. Any plain-logit loss trains on it (``loss=ce loss.head=prototype`` is CPL); ARConvL's
  :class:`RegionPrototypeHead` adds one learnable radius per class.

A head of one's own: ``@HEADS.register("my_head")`` over a class or function taking ``(in_dim,
num_classes, **params)``; its other parameters are read from its signature.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lt_bench.errors import ConfigError
from lt_bench.registry import Registry
from lt_bench.signature import builder_params, check_params

HEADS: Registry[Callable[..., nn.Module]] = Registry("head")


@HEADS.register("linear")
def linear_head(in_dim: int, num_classes: int) -> nn.Linear:
    """``W f + b``."""
    return nn.Linear(in_dim, num_classes)


@HEADS.register("cosine")
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


def squared_distances(features: Tensor, centres: Tensor) -> Tensor:
    """``D_ij = ||f_i - c_j||^2`` [B, C] as ``||f||^2 - 2 f.c + ||c||^2``: one matmul, no [B, C, d]
    difference tensor; clamped at 0 because cancellation can leave tiny negatives. The cancellation is
    why callers keep it in float32 under mixed precision."""
    d = (features * features).sum(1, keepdim=True) - 2.0 * features @ centres.T + (centres * centres).sum(1)
    return d.clamp_min(0.0)


@HEADS.register("prototype")
class PrototypeHead(nn.Module):
    """Learnable class centres ``centres`` [C, d]; ``forward`` returns ``-||f - c_j||^2`` (temperature 1),
    so the argmax, and the prediction, is the nearest centre."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.empty(num_classes, in_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # ARConvL's Keras 'he_uniform' on a [C, d] weight takes fan_in = C: uniform(+-sqrt(6 / C))
        bound = math.sqrt(6.0 / self.centres.shape[0])
        with torch.no_grad():
            self.centres.uniform_(-bound, bound)

    def squared_distances(self, features: Tensor) -> Tensor:
        """:func:`squared_distances` to this head's centres [B, C]."""
        return squared_distances(features, self.centres)

    def forward(self, features: Tensor) -> Tensor:
        return -self.squared_distances(features)


class RegionPrototypeHead(PrototypeHead):
    """ARConvL's head: the prototype head plus radius parameters ``radius_param`` [C] (``R_j^2 = a_j^2``).

    The radii do not enter the logits; ARConvL's losses read :attr:`radius_sq`. They are a parameter of
    their own so that an optimizer can give them their own group. Not in :data:`HEADS`: only ARConvL's
    losses train the radii, so with any other loss they would be dead weight.
    """

    def __init__(self, in_dim: int, num_classes: int, radius_init: float = 0.1) -> None:
        super().__init__(in_dim, num_classes)
        self.radius_init = float(radius_init)
        self.radius_param = nn.Parameter(torch.full((num_classes,), self.radius_init))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "radius_param"):  # the base constructor calls this before the radii exist
            with torch.no_grad():
                self.radius_param.fill_(self.radius_init)

    @property
    def radius_sq(self) -> Tensor:
        """Squared radii ``R_j^2 = a_j^2`` [C]."""
        return self.radius_param**2


def head_parameters(kind: str) -> dict[str, Any]:
    """The parameters head ``kind`` accepts besides ``in_dim`` and ``num_classes``, with their defaults."""
    return builder_params(HEADS.get(kind), leading=("in_dim", "num_classes"))


def build_head(kind: str, in_dim: int, num_classes: int, **params: Any) -> nn.Module:
    """Build the head ``kind`` (a name in :data:`HEADS`) for ``in_dim`` features and ``num_classes``."""
    check_params("head", kind, head_parameters(kind), params)
    if in_dim < 1 or num_classes < 1:
        raise ConfigError(f"head {kind!r}: in_dim={in_dim} and num_classes={num_classes} must be >= 1")
    return HEADS.get(kind)(in_dim, num_classes, **params)
