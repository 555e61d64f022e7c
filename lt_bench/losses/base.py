"""Shared pieces of every logit loss: the reduction, the parameter specs, the class-count checks.

All losses compute an unreduced per-sample loss and reduce it the way ``F.cross_entropy(weight=w)``
does: ``sum_i s_i w_{y_i} l_i / sum_i w_{y_i}``, where ``w`` are class weights (1 when absent) and
``s`` optional per-sample weights (mixup label weights, PHASE's MSR weights). With ``s`` absent this is
exactly torch's weighted-CE normalisation; with ``w`` absent it is ``mean(s * l)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real as _RealNumber
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lt_bench.errors import ConfigError, DataError


def weighted_mean(
    per_sample: Tensor,
    targets: Tensor,
    class_weights: Tensor | None = None,
    sample_weights: Tensor | None = None,
) -> Tensor:
    """``sum_i s_i w_{y_i} l_i / sum_i w_{y_i}`` (weighted-CE normalisation; w, s default to 1)."""
    if class_weights is None:
        w = torch.ones_like(per_sample)
    else:
        w = class_weights.to(per_sample)[targets]
    numerator = w * per_sample if sample_weights is None else w * sample_weights.to(per_sample) * per_sample
    return numerator.sum() / w.sum()


def class_count_tensor(class_counts: Sequence[int] | Tensor) -> Tensor:
    """Training counts per class as a float64 vector; every class must have at least one sample."""
    if isinstance(class_counts, Tensor):
        counts = class_counts.detach().to("cpu", torch.float64)
    else:
        counts = torch.tensor([float(n) for n in class_counts], dtype=torch.float64)
    if counts.dim() != 1 or counts.numel() == 0:
        raise DataError(
            f"class_counts must be a non-empty 1-D list of counts, got shape {tuple(counts.shape)}"
        )
    empty = [i for i, n in enumerate(counts.tolist()) if not n > 0]
    if empty:
        raise DataError(
            f"classes {empty} have no training samples (counts {counts.long().tolist()}); the count-based "
            "losses and class weights need n_j > 0: lower the imbalance factor or drop those classes"
        )
    return counts


# -- parameter specs: build_loss checks user values against these ------------------------------------
@dataclass(frozen=True)
class Real:
    """A finite real number in ``[low, high]`` (an end is excluded when ``open_low``/``open_high``)."""

    default: float
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def coerce(self, value: Any) -> float:
        # bool is an int in Python; `loss.s=true` is a typo, not 1.0
        if isinstance(value, bool) or not isinstance(value, _RealNumber) or not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r} ({type(value).__name__})")
        value = float(value)
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            raise ValueError(f"must be {'>' if self.open_low else '>='} {self.low:g}, got {value:g}")
        if self.high is not None and (value >= self.high if self.open_high else value > self.high):
            raise ValueError(f"must be {'<' if self.open_high else '<='} {self.high:g}, got {value:g}")
        return value


@dataclass(frozen=True)
class Flag:
    """A boolean switch (``true``/``false`` on the command line)."""

    default: bool

    def coerce(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r} ({type(value).__name__})")
        return value


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of strings."""

    default: str
    choices: tuple[str, ...]

    def coerce(self, value: Any) -> str:
        if value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}; got {value!r}")
        return value


ParamSpec = Real | Flag | Choice


class LogitLoss(nn.Module):
    """A loss on classifier outputs. Subclasses set ``name``/``params`` and implement :meth:`per_sample`."""

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, ParamSpec]] = {}

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

    def check_width(self, logits: Tensor, num_classes: int) -> None:
        """Fail with a clear message when the head's width differs from the class counts'."""
        if logits.dim() != 2 or logits.shape[1] != num_classes:
            raise ConfigError(
                f"loss '{self.name}' was built for {num_classes} classes but got logits of shape "
                f"{tuple(logits.shape)}; the head's num_classes must match the class counts"
            )


def target_mask(logits: Tensor, targets: Tensor) -> Tensor:
    """One-hot mask ``1[j = y_i]`` shaped like ``logits``, in the logits' dtype."""
    return torch.zeros_like(logits).scatter_(1, targets.long().unsqueeze(1), 1.0)
