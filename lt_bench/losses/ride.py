"""RIDE's loss (Wang et al., "Long-tailed Recognition by Routing Diverse Distribution-Aware Experts",
ICLR 2021): a classification loss per expert plus the distribution-aware diversity term. Pure functions;
:mod:`lt_bench.methods.ride` applies them. Sources: RIDE's ``model/loss.py`` (``RIDELoss``,
frank-xwang/RIDE-LongTailRecognition) and the PPL authors' copy of it (``CRI+PPW+RIDE/model/loss.py``,
simonustc/Imbalance_PPL_CRI), whose ``ppw`` scheduler fades the same reweighting in with the PPW power.

Notation: ``E`` experts with logits ``z_i`` [B, C] (the head's outputs; cosines for a cosine head), their
mean ``z̄ = (1/E) sum_i z_i`` (the model's output), training counts ``n_j``, ``pi_j = n_j / sum_k n_k``.

1. Diversity class factors (RIDE's ``per_cls_weights_enabled_diversity``), with ``f`` = RIDE's
   ``reweight_factor``::

       u_j = (C pi_j f + 1 - f) / max_k (C pi_k f + 1 - f)        (all must be > 0)

   Frequent classes get the larger factor (1 for the most frequent).

2. Per-class temperatures at epoch E, with ``a(E)`` the schedule's class-weight exponent (0 before the
   reweighting starts, 1 once it is complete)::

       T_j = T u_j^a(E)

   RIDE switches them on together with DRW (``a`` steps 0 -> 1 at the DRW epoch); CRI+PPW+RIDE's ``ppw``
   scheduler raises ``u`` to the PPW power, so they fade in with the PPW class weights. ``a = 0`` is the
   plain temperature ``T`` for every class.

3. Diversity of expert ``i`` (RIDE's ``temperature_mean ** 2 * F.kl_div(output_dist, mean_output_dist,
   reduction='batchmean')``), with ``T̄ = (1/C) sum_j T_j`` and the logit scale ``s`` (RIDE's cosine
   classifier multiplies cosines by s = 30 before the loss; 1 for a linear head)::

       p̄ = softmax(s z̄ / T)   (a constant: no gradient flows through the ensemble)
       q_i = softmax(s z_i / T)
       D_i = T̄^2 (1/B) sum_b sum_j p̄_bj (log p̄_bj - log q_ibj)          KL(p̄ || q_i), batch mean

   The ``T̄^2`` factor keeps the gradient's size independent of the temperature (as in distillation).

4. The loss, with ``L_cls`` any logit loss (LDAM in RIDE, CRI in CRI+PPW+RIDE) reduced with the schedule's
   class weights ``w`` (DRW in RIDE, PPW in CRI+PPW+RIDE) and ``lambda`` the diversity weight::

       L = sum_i [ L_cls(z_i, y; w) - lambda D_i ]

   RIDE writes ``- lambda`` as a negative ``additional_diversity_factor`` (-0.2 by default, -0.45 in its
   CIFAR configs): the loss falls as an expert's distribution moves away from the ensemble's, which is what
   makes the experts diverse. The classification terms are summed over experts, not averaged, as in RIDE.

Deviations, on purpose: with ``lambda = 0`` RIDE trains every expert's classification loss on the ensemble
logits instead of its own; here each expert keeps its own (so ``E = 1``, ``lambda = 0`` is exactly the
single-network loss either way). The PPL authors' ``CRILoss`` applies CRI's focal factor and outlier
correction to the running sum of the experts' losses (diversity terms included) and its class weights
cancel out of that scalar; here CRI is the per-sample loss of the PPL paper, applied to each expert with
the PPW weights, and the diversity term is RIDE's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lt_bench.errors import ConfigError
from lt_bench.losses.base import class_count_tensor


def diversity_factors(class_counts: Sequence[int] | Tensor, reweight_factor: float) -> Tensor:
    """``u_j = (C pi_j f + 1 - f) / max_k (C pi_k f + 1 - f)`` (formula 1), float32; ConfigError unless
    every ``u_j > 0``."""
    counts = class_count_tensor(class_counts)
    f = float(reweight_factor)
    raw = counts.numel() * (counts / counts.sum()) * f + 1.0 - f
    if not bool((raw > 0).all()):
        raise ConfigError(
            f"method.diversity_reweight={f} is too large for these class counts: C pi_j f + 1 - f must be "
            "> 0 for every class (RIDE uses 0.05 on CIFAR, 0.02 on ImageNet-LT)"
        )
    return (raw / raw.max()).float()


def diversity_temperatures(factors: Tensor, temperature: float, exponent: float) -> Tensor:
    """``T_j = T u_j^a`` (formula 2)."""
    return temperature * factors.pow(float(exponent))


def diversity_kl(expert_logits: Tensor, ensemble_logits: Tensor, temperatures: Tensor) -> Tensor:
    """``T̄^2 KL(softmax(z̄ / T) || softmax(z_i / T))``, batch mean (formula 3, logits already scaled by s).

    ``temperatures`` is a [C] vector (per-class) or a scalar tensor; the ensemble is detached.
    """
    t = temperatures.to(expert_logits)
    log_q = F.log_softmax(expert_logits / t, dim=1)
    log_p = F.log_softmax(ensemble_logits.detach() / t, dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(1).mean()
    return t.mean() ** 2 * kl


@dataclass(frozen=True)
class RIDETerms:
    """``total = classification - weight * diversity``; the two parts are sums over experts."""

    total: Tensor
    classification: Tensor
    diversity: Tensor


def ride_loss(
    expert_logits: Tensor,
    classification: Callable[[Tensor], Tensor],
    temperatures: Tensor,
    diversity_weight: float,
    scale: float = 1.0,
) -> RIDETerms:
    """``L = sum_i [classification(z_i) - lambda D_i]`` (formula 4) for ``expert_logits`` [E, B, C].

    ``classification(z)`` is one expert's reduced classification loss (its labels, class and sample weights
    bound in); ``scale`` is ``s`` of formula 3 (the diversity term sees ``s z``; the classification loss
    gets the head's outputs, as every logit loss does). With ``lambda = 0`` the diversity term is not
    computed (reported as 0).
    """
    if expert_logits.dim() != 3:
        raise ValueError(f"expert_logits must be [experts, batch, classes], got {tuple(expert_logits.shape)}")
    cls = torch.stack([classification(z) for z in expert_logits]).sum()
    if diversity_weight == 0:
        return RIDETerms(cls, cls.detach(), torch.zeros_like(cls))
    scaled = expert_logits * scale
    ensemble = scaled.mean(0)
    diversity = torch.stack([diversity_kl(z, ensemble, temperatures) for z in scaled]).sum()
    return RIDETerms(cls - diversity_weight * diversity, cls.detach(), diversity.detach())
