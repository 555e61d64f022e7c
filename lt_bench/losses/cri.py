"""CRI loss (PPL paper): focal-modulated LDAM with a per-sample correction for outliers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor

from lt_bench.losses.base import LOSSES, Choice, LogitLoss, NonNegative, Positive, Real, class_count_tensor
from lt_bench.losses.focal import focal_modulation
from lt_bench.losses.ldam import ldam_ce, ldam_margins

SIGMA_FORMS = ("zero", "fixed", "decreasing")


def cri_per_sample(ldam_loss: Tensor, gamma: float, T: float, sigma: str) -> Tensor:
    """``l = (1 - p_y)^gamma * LDAM_CE`` with ``p_y = exp(-LDAM_CE)``; where ``p_y < T``, l is replaced by

    - ``zero``:       ``0``
    - ``fixed``:      ``c = -(1 - T)^gamma log T``
    - ``decreasing``: ``(p_y / T) * c``

    ``c`` is the focal term's value at ``p_y = T``, so ``fixed`` and ``decreasing`` are continuous at
    the threshold (``zero`` jumps). ``zero`` and ``fixed`` are constants, so an outlier contributes no
    gradient; ``decreasing`` keeps a gradient through ``p_y`` that shrinks as the sample gets less
    likely, pulling it up gently instead of with the full CE force.
    """
    if sigma not in SIGMA_FORMS:
        raise ValueError(f"sigma must be one of {SIGMA_FORMS}, got {sigma!r}")
    modulated = focal_modulation(ldam_loss, gamma) * ldam_loss
    c = -((1.0 - T) ** gamma) * math.log(T)
    p = torch.exp(-ldam_loss)
    outlier = p < T
    if sigma == "zero":
        replacement = torch.zeros_like(ldam_loss)
    elif sigma == "fixed":
        replacement = torch.full_like(ldam_loss, c)
    else:
        # p is zeroed outside the outlier branch: p / T overflows for tiny T, and torch.where would
        # turn that unused branch's inf gradient into NaN
        replacement = (torch.where(outlier, p, 0.0) / T) * c
    return torch.where(outlier, replacement, modulated)


@LOSSES.register("cri")
class CRILoss(LogitLoss):
    """CRI on cosine-head outputs: LDAM margins ``max_m * n_j^{-1/4} / max_k n_k^{-1/4}`` and scale s,
    focal exponent gamma, outlier threshold T with correction ``sigma`` (see :func:`cri_per_sample`).

    The threshold is applied per sample, as in the paper (the authors' code thresholds the batch mean
    with T = 1e-50, where it never fires).
    """

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor,
        *,
        gamma: NonNegative = 1.0,
        max_m: NonNegative = 0.1,
        s: Positive = 30.0,
        T: Annotated[float, Real(low=0.0, high=1.0, open_low=True, open_high=True)] = 1e-50,
        sigma: Annotated[str, Choice(SIGMA_FORMS)] = "decreasing",
    ) -> None:
        super().__init__()
        self.gamma, self.max_m, self.s, self.T, self.sigma = gamma, max_m, s, T, sigma
        self.register_buffer("margins", ldam_margins(class_count_tensor(class_counts), max_m).float())

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        self.check_width(logits, self.margins.numel())
        ldam_loss = ldam_ce(logits, targets, self.margins, self.s)
        return cri_per_sample(ldam_loss, self.gamma, self.T, self.sigma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, max_m={self.max_m}, s={self.s}, T={self.T}, sigma={self.sigma}"
