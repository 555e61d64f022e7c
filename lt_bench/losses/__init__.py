"""Logit losses for long-tailed classification, built by name with checked parameters.

``build_loss(name, class_counts, **params)`` returns a :class:`LogitLoss` called as
``loss(logits, targets, class_weights=None, sample_weights=None)``; ``loss.predict(logits)`` gives the
scores argmaxed at evaluation. ldam, cri and kps expect cosine-head outputs in [-1, 1] and apply their
scale s themselves; the others take plain logits.

A loss of one's own: subclass :class:`LogitLoss` with keyword-only, annotated constructor parameters
(``gamma: NonNegative = 1.0``; the specs are in :mod:`lt_bench.losses.base`), decorate it with
``@LOSSES.register("my_loss")``, list its module in ``plugins=[...]`` and give it a ``loss/my_loss.yaml``
on Hydra's search path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from lt_bench.errors import ConfigError

# importing the loss modules registers their losses in LOSSES
from lt_bench.losses.asl import AsymmetricLoss
from lt_bench.losses.base import LOSSES, LogitLoss, weighted_mean
from lt_bench.losses.ce import BalancedSoftmaxLoss, CrossEntropyLoss, LogitAdjustedLoss
from lt_bench.losses.class_weights import effective_number_weights, inverse_frequency_weights
from lt_bench.losses.cri import CRILoss
from lt_bench.losses.focal import FocalLoss
from lt_bench.losses.kps import KPSLoss
from lt_bench.losses.ldam import LDAMLoss
from lt_bench.losses.vs import VSLoss


def loss_parameters(name: str) -> dict[str, Any]:
    """The parameters loss ``name`` accepts, with their defaults (its constructor's)."""
    return {key: param.default for key, param in LOSSES.get(name).params.items()}


def build_loss(name: str, class_counts: Sequence[int] | Tensor, **params: Any) -> LogitLoss:
    """Loss ``name`` for the given training counts; every parameter is checked (name, type, range)."""
    cls = LOSSES.get(name)
    specs = cls.params
    values: dict[str, Any] = {}
    for key, value in params.items():
        if key not in specs:
            valid = ", ".join(specs) or "(none)"
            raise ConfigError(f"loss {name!r} has no parameter {key!r}; valid: {valid}")
        try:
            values[key] = specs[key].spec.coerce(value)
        except ValueError as err:
            raise ConfigError(f"loss {name!r} parameter {key!r} {err}") from None
    try:
        return cls(class_counts, **values)  # parameters not given take the constructor's defaults
    except ValueError as err:  # rules across parameters, e.g. kps s_max >= s
        raise ConfigError(f"loss {name!r}: {err}") from None


__all__ = [
    "LOSSES",
    "AsymmetricLoss",
    "BalancedSoftmaxLoss",
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
