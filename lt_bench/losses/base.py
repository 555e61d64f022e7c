"""Shared pieces of every logit loss: the reduction, the parameter specs, the class-count checks, the
registry.

All losses compute an unreduced per-sample loss and reduce it the way ``F.cross_entropy(weight=w)``
does: ``sum_i s_i w_{y_i} l_i / sum_i w_{y_i}``, where ``w`` are class weights (1 when absent) and
``s`` optional per-sample weights (mixup label weights, PHASE's MSR weights). With ``s`` absent this is
exactly torch's weighted-CE normalisation; with ``w`` absent it is ``mean(s * l)``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real as _RealNumber
from typing import Annotated, Any, ClassVar, get_type_hints

import torch
from torch import Tensor, nn

from lt_bench.errors import ConfigError, DataError
from lt_bench.registry import Registry


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
# A loss declares each parameter once, in its constructor: ``gamma: NonNegative = 1.0``. The default is
# the signature's; the Annotated spec holds only the type and range that user values are checked against.
@dataclass(frozen=True)
class Real:
    """A finite real number in ``[low, high]`` (an end is excluded when ``open_low``/``open_high``)."""

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

    def coerce(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r} ({type(value).__name__})")
        return value


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of strings."""

    choices: tuple[str, ...]

    def coerce(self, value: Any) -> str:
        if value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}; got {value!r}")
        return value


ParamSpec = Real | Flag | Choice

# the annotations most loss parameters share
NonNegative = Annotated[float, Real(low=0.0)]
Positive = Annotated[float, Real(low=0.0, open_low=True)]
Switch = Annotated[bool, Flag()]


@dataclass(frozen=True)
class Param:
    """One loss parameter as its constructor declares it: the spec that checks it and its default."""

    spec: ParamSpec
    default: Any


def constructor_params(cls: type) -> dict[str, Param]:
    """``{name: Param}`` for the keyword-only parameters of ``cls.__init__``.

    Raises TypeError (a bug in the loss class, not in a config) when a parameter other than
    ``class_counts`` is not keyword-only, lacks a default, or is not annotated ``Annotated[type, spec]``.
    """
    init = cls.__init__
    if init is nn.Module.__init__:  # no constructor of its own anywhere (an abstract intermediate class)
        return {}
    hints = get_type_hints(init, include_extras=True)
    params: dict[str, Param] = {}
    for name, p in list(inspect.signature(init).parameters.items())[1:]:  # [0] is self
        if name == "class_counts":
            continue
        specs = [m for m in getattr(hints.get(name), "__metadata__", ()) if isinstance(m, ParamSpec)]
        if p.kind is not p.KEYWORD_ONLY or p.default is p.empty or len(specs) != 1:
            raise TypeError(
                f"{cls.__qualname__}.__init__(class_counts, *, ...): parameter {name!r} must be "
                "keyword-only, have a default and be annotated Annotated[type, Real(...) | Flag() | "
                "Choice(...)] (e.g. `gamma: NonNegative = 1.0`)"
            )
        params[name] = Param(specs[0], p.default)
    return params


class LogitLoss(nn.Module):
    """A loss on classifier outputs. Subclasses implement :meth:`per_sample`; their constructor takes
    ``class_counts`` and keyword-only parameters (see :func:`constructor_params`), read into ``params``
    when the class is defined so that a malformed plug-in loss fails at import."""

    params: ClassVar[dict[str, Param]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.params = constructor_params(cls)

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
                f"loss {type(self).__name__} was built for {num_classes} classes but got logits of shape "
                f"{tuple(logits.shape)}; the head's num_classes must match the class counts"
            )


# ``loss=NAME`` is ``LOSSES.get(NAME)``; built-ins register where they are defined, plug-ins the same way
LOSSES: Registry[type[LogitLoss]] = Registry("loss")


def target_mask(logits: Tensor, targets: Tensor) -> Tensor:
    """One-hot mask ``1[j = y_i]`` shaped like ``logits``, in the logits' dtype."""
    return torch.zeros_like(logits).scatter_(1, targets.long().unsqueeze(1), 1.0)
