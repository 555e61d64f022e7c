"""Logit losses for long-tailed classification, built by name with checked parameters.

``build_loss(name, class_counts, **params)`` returns a :class:`LogitLoss` called as
``loss(logits, targets, class_weights=None, sample_weights=None)``; ``loss.predict(logits)`` gives the
scores argmaxed at evaluation. ldam, cri and kps expect cosine-head outputs in [-1, 1] and apply their
scale s themselves; the others take plain logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from lt_bench.errors import ConfigError
from lt_bench.losses.asl import AsymmetricLoss
from lt_bench.losses.base import LogitLoss, weighted_mean
from lt_bench.losses.ce import CrossEntropyLoss, LogitAdjustedLoss
from lt_bench.losses.class_weights import effective_number_weights, inverse_frequency_weights
from lt_bench.losses.cri import CRILoss
from lt_bench.losses.focal import FocalLoss
from lt_bench.losses.kps import KPSLoss
from lt_bench.losses.ldam import LDAMLoss
from lt_bench.losses.vs import VSLoss

_LOSSES: dict[str, type[LogitLoss]] = {
    cls.name: cls
    for cls in (
        CrossEntropyLoss,
        FocalLoss,
        LDAMLoss,
        LogitAdjustedLoss,
        CRILoss,
        KPSLoss,
        VSLoss,
        AsymmetricLoss,
    )
}
LOSS_NAMES: tuple[str, ...] = tuple(_LOSSES)


def _loss_class(name: str) -> type[LogitLoss]:
    if name not in _LOSSES:
        raise ConfigError(f"unknown loss {name!r}; valid: {', '.join(LOSS_NAMES)}")
    return _LOSSES[name]


def loss_parameters(name: str) -> dict[str, Any]:
    """The parameters loss ``name`` accepts, with their defaults."""
    return {key: spec.default for key, spec in _loss_class(name).params.items()}


def build_loss(name: str, class_counts: Sequence[int] | Tensor, **params: Any) -> LogitLoss:
    """Loss ``name`` for the given training counts; every parameter is checked (name, type, range)."""
    cls = _loss_class(name)
    specs = cls.params
    values: dict[str, Any] = {key: spec.default for key, spec in specs.items()}
    for key, value in params.items():
        if key not in specs:
            valid = ", ".join(specs) or "(none)"
            raise ConfigError(f"loss {name!r} has no parameter {key!r}; valid: {valid}")
        try:
            values[key] = specs[key].coerce(value)
        except ValueError as err:
            raise ConfigError(f"loss {name!r} parameter {key!r} {err}") from None
    try:
        return cls(class_counts, **values)
    except ValueError as err:  # rules across parameters, e.g. kps s_max >= s
        raise ConfigError(f"loss {name!r}: {err}") from None


__all__ = [
    "LOSS_NAMES",
    "AsymmetricLoss",
    "CRILoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "KPSLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "LogitLoss",
    "VSLoss",
    "build_loss",
    "effective_number_weights",
    "inverse_frequency_weights",
    "loss_parameters",
    "weighted_mean",
]
