"""Classifier heads: forward(features) -> [B, C]."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lt_bench.errors import ConfigError


class CosineHead(nn.Module):
    """ "Normed linear" (LDAM): cosine between the normalised feature and each normalised class weight."""

    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # LDAM's init: uniform(-1, 1), then each column renormalised
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, features: Tensor) -> Tensor:
        return F.normalize(features, dim=1) @ F.normalize(self.weight, dim=0)


class PrototypeHead(nn.Module):
    """Learnable class centres C_j and radius parameters a_j (R_j^2 = a_j^2); logits = -||f - C_j||^2."""

    def __init__(self, in_dim: int, num_classes: int, radius_init: float = 0.1) -> None:
        super().__init__()
        self.radius_init = radius_init
        self.centres = nn.Parameter(torch.empty(num_classes, in_dim))
        self.radius_param = nn.Parameter(torch.empty(num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.centres)
        nn.init.constant_(self.radius_param, self.radius_init)

    @property
    def radius_sq(self) -> Tensor:
        return self.radius_param**2

    def forward(self, features: Tensor) -> Tensor:
        d = (features**2).sum(1, keepdim=True) - 2 * features @ self.centres.T + (self.centres**2).sum(1)
        return -d.clamp_min(0)


HEAD_NAMES = ("linear", "cosine", "prototype")


def build_head(kind: str, in_dim: int, num_classes: int, **params: Any) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, num_classes)
    if kind == "cosine":
        return CosineHead(in_dim, num_classes)
    if kind == "prototype":
        return PrototypeHead(in_dim, num_classes, **params)
    raise ConfigError(f"head {kind!r} is not known; choose one of: {', '.join(HEAD_NAMES)}")
