"""Convolutional prototype learning (Yang et al., "Robust classification with convolutional prototype
learning", CVPR 2018) on top of any plain-logit loss.

CPL is a logit loss on the prototype head's logits ``z_ij = -||f_i - c_j||^2`` (``loss.head=prototype``,
:class:`lt_bench.models.heads.PrototypeHead`): ``loss=ce`` is their distance-based cross-entropy at
temperature 1, and focal, LA or class-balanced weighting apply unchanged. GCPL adds the prototype loss
``PL = (1/B) sum_i ||f_i - c_{y_i}||^2``, which pulls every feature towards its own centre, with weight
``lambda`` (``loss.prototype_weight``; 0.1 in ``loss=gcpl``: the value ARConvL's comparison gives its
GCPL baseline, Li et al. ECML PKDD 2023, supplementary Table 2 in shuxian-li/ARConvL). That is the paper's
PL; Yang et al.'s code computes ``tf.nn.l2_loss(f - c_y) / B``, half of it, so a lambda taken from their
code is halved here (their mnist_gcpl.py defaults ``weight_pl`` to 0.001: 0.0005 here). ARConvL's
authors' code has no plain GCPL term to take a value from: its counterpart there is the class-weighted
distribution loss (:func:`lt_bench.losses.arconvl.distribution_loss`).

The weight is a usage key of the ``loss`` node (like ``head``), not a parameter of any loss: it applies
to whichever loss the head trains with.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from lt_bench.errors import ConfigError
from lt_bench.losses.base import LogitLoss, weighted_mean
from lt_bench.models.heads import PrototypeHead


def prototype_loss(logits: Tensor, targets: Tensor, sample_weights: Tensor | None = None) -> Tensor:
    """GCPL's ``PL = (1/B) sum_i s_i ||f_i - c_{y_i}||^2`` from prototype-head logits ``z = -D``
    (``s_i = 1`` unless given): ``D_{i,y_i} = -z_{i,y_i}``, so the distances are not computed twice.

    No class weights: PL is a pull on the features, the same for every class (as in GCPL); the mixup
    label weights ``s`` do apply, since each mixed sample counts towards both of its labels' centres.
    """
    own = -logits.gather(1, targets[:, None]).squeeze(1)
    return weighted_mean(own, targets, None, sample_weights)


class PrototypeRegularised(nn.Module):
    """``loss(z, y, w, s) + weight * PL(z, y, s)``: GCPL's objective around a logit loss; called and
    predicting like that loss."""

    def __init__(self, loss: LogitLoss, weight: float) -> None:
        super().__init__()
        self.loss, self.weight = loss, float(weight)

    def forward(
        self,
        logits: Tensor,
        targets: Tensor,
        class_weights: Tensor | None = None,
        sample_weights: Tensor | None = None,
    ) -> Tensor:
        pull = prototype_loss(logits, targets, sample_weights)
        return self.loss(logits, targets, class_weights, sample_weights) + self.weight * pull

    def predict(self, logits: Tensor) -> Tensor:
        return self.loss.predict(logits)

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


def with_prototype_loss(loss: LogitLoss, weight: float, head: nn.Module) -> LogitLoss | PrototypeRegularised:
    """``loss`` itself when ``weight`` is 0, else :class:`PrototypeRegularised`; only a prototype head's
    logits are minus squared distances, so any other head is a configuration error."""
    number = isinstance(weight, int | float) and not isinstance(weight, bool)
    if not number or not math.isfinite(weight) or weight < 0:
        raise ConfigError(f"loss.prototype_weight={weight!r} must be a finite number >= 0 (GCPL: 0.1)")
    if weight == 0:
        return loss
    if not isinstance(head, PrototypeHead):
        raise ConfigError(
            f"loss.prototype_weight={weight} (GCPL's prototype loss) needs the distance head: add "
            f"loss.head=prototype (the head is {type(head).__name__})"
        )
    return PrototypeRegularised(loss, weight)
