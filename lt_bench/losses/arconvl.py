"""ARConvL's losses (Li et al., ECML PKDD 2023) as pure functions of tensors.

Notation: ``D_ij = ||f_i - C_j||^2`` squared distances from features to class centres [B, C];
``R_j^2 = a_j^2`` learnable squared radii [C]; ``alpha_j = max_k n_k / n_j``; ``pi_j = n_j / sum n``.

- region bounds: ``h_j = (d_min(C_j) / 2)^2`` with ``d_min`` the distance to the nearest other centre,
  ``R_ben^2 = min_j h_j``, ``R_upp^2 = max(max_j R_j^2, max_j h_j)`` (no gradient);
- ``beta = min(1, R_upp^2 / R_ben^2 - 1)``, ``sigma^2 = min(R_ben^2, R_upp^2 - R_ben^2)`` (no gradient);
- region loss ``L_R`` (radii only), distribution loss ``L_D`` (features and centres), margin CE ``L_M``
  and the centre term ``L_C`` (features and centres): ``L = L_M + L_C + L_R + L_D``.

Details the paper leaves open follow the authors' TensorFlow code (shuxian-li/ARConvL):
- ``sigma^2`` is *added* to the non-target logits ``-D_ij`` (the target must beat every other class by
  ``sigma^2`` in squared distance), and the centre term uses the same sign;
- ``log pi_j`` is added to the logits in training only; prediction is the nearest centre (``argmax -D``);
- the region loss compares *distances* ``sqrt(D)`` with radii ``R = sqrt(R^2)``, on detached distances;
- temperature 1; ``L_D``'s coefficient ``beta`` is the code's ``min(2, R_upp^2/R_ben^2) - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lt_bench.losses.base import class_count_tensor, target_mask

# below this a squared radius or bound counts as zero: keeps sqrt and ratios finite (no NaN gradients)
_TINY = 1e-12


def class_alpha(class_counts: Tensor | list[int]) -> Tensor:
    """Imbalance weights ``alpha_j = max_k n_k / n_j`` (1 for the largest class) as float32 [C]."""
    counts = class_count_tensor(class_counts)
    return (counts.max() / counts).float()


def log_prior(class_counts: Tensor | list[int]) -> Tensor:
    """``log pi_j = log(n_j / sum_k n_k)`` as float32 [C] (the code's ``eta``: ``1/alpha`` normalised)."""
    counts = class_count_tensor(class_counts)
    return (counts / counts.sum()).log().float()


def pairwise_sq_distances(a: Tensor, b: Tensor) -> Tensor:
    """``||a_i - b_j||^2`` [N, M] by explicit differences: exact (no cancellation) and with a zero,
    finite gradient on coinciding points; meant for the C x C centre matrix, not for batches."""
    return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)


@torch.no_grad()
def half_nearest_sq(centres: Tensor, centre_sq: Tensor | None = None) -> Tensor:
    """``h_j = (d_min(C_j) / 2)^2 = min_{k != j} ||C_j - C_k||^2 / 4`` [C] (needs C >= 2).

    ``centre_sq``: the C x C :func:`pairwise_sq_distances` of ``centres`` when the caller has it already.
    """
    if centres.shape[0] < 2:
        raise ValueError(f"ARConvL needs at least 2 classes to bound regions, got {centres.shape[0]}")
    d = pairwise_sq_distances(centres, centres) if centre_sq is None else centre_sq.detach().clone()
    d.fill_diagonal_(float("inf"))
    return d.min(dim=1).values / 4


@torch.no_grad()
def region_bounds(
    centres: Tensor, radius_sq: Tensor, centre_sq: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``(R_ben^2, R_upp^2)``: ``R_ben^2 = min_j h_j``, ``R_upp^2 = max(max_j R_j^2, max_j h_j)``.

    ``R_ben`` is the largest radius every class can take without regions overlapping; ``R_upp`` the largest
    region any class has reached (or could reach). Both are statistics of the current parameters,
    computed without gradient as in the reference code. ``centre_sq`` as in :func:`half_nearest_sq`.
    """
    half = half_nearest_sq(centres, centre_sq)
    r_ben_sq = half.min()
    r_upp_sq = torch.maximum(radius_sq.detach().max(), half.max())
    return r_ben_sq, r_upp_sq


def adaptive_beta(r_ben_sq: Tensor, r_upp_sq: Tensor) -> Tensor:
    """``beta = min(1, R_upp^2 / R_ben^2 - 1)``: 0 when all regions are as small as the benchmark, up to
    1 once some region is twice its area; a ``R_ben^2 = 0`` (two coinciding centres) gives 1."""
    ratio = r_upp_sq.detach() / r_ben_sq.detach().clamp_min(_TINY)
    return (ratio - 1).clamp(max=1.0)


def adaptive_margin(r_ben_sq: Tensor, r_upp_sq: Tensor) -> Tensor:
    """``sigma^2 = min(R_ben^2, R_upp^2 - R_ben^2)`` (squared-distance margin, no gradient)."""
    r_ben_sq, r_upp_sq = r_ben_sq.detach(), r_upp_sq.detach()
    return torch.minimum(r_ben_sq, r_upp_sq - r_ben_sq)


def _normalised(alpha: Tensor, by: str) -> Tensor:
    return alpha / (alpha.min() if by == "min" else alpha.mean())


def region_loss(
    sq_dist: Tensor, radius_sq: Tensor, targets: Tensor, alpha: Tensor, gamma: float = 0.05
) -> Tensor:
    """``L_R = (1/B) sum_i alpha'_{y_i} [relu(sqrt(D_{i,y_i}) - R_{y_i})^2 + gamma R_{y_i}^2]``,
    ``alpha' = alpha / min alpha``.

    Distances are detached, so only the radii learn from it: each radius grows until it encloses its
    class's features and ``gamma`` keeps it from growing further than needed.
    """
    d = sq_dist.detach().gather(1, targets[:, None]).squeeze(1)
    r_sq = radius_sq[targets]
    # sqrt(max(R^2, tiny)): the derivative of sqrt at 0 is infinite; the clamp gives 0 instead of NaN
    outside = F.relu(d.clamp_min(0).sqrt() - r_sq.clamp_min(_TINY).sqrt())
    w = _normalised(alpha.to(sq_dist), "min")[targets]
    return (w * (outside.pow(2) + gamma * r_sq)).mean()


def distribution_loss(sq_dist: Tensor, targets: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
    """``L_D = beta (1/B) sum_i alpha''_{y_i} D_{i,y_i}``, ``alpha'' = alpha / mean alpha``: pulls every
    class's features towards its centre, minority classes harder, as strongly as regions are uneven."""
    d = sq_dist.gather(1, targets[:, None]).squeeze(1)
    w = _normalised(alpha.to(sq_dist), "mean")[targets]
    return beta.detach() * (w * d).mean()


def margin_logits(sq_dist: Tensor, targets: Tensor, sigma_sq: Tensor, log_prior: Tensor) -> Tensor:
    """``z_ij = -D_ij + sigma^2 1[j != y_i] + log pi_j`` (training logits of the margin CE)."""
    non_target = 1.0 - target_mask(sq_dist, targets)
    return -sq_dist + sigma_sq.detach() * non_target + log_prior.to(sq_dist)


def margin_cross_entropy(sq_dist: Tensor, targets: Tensor, sigma_sq: Tensor, log_prior: Tensor) -> Tensor:
    """``L_M = (1/B) sum_i -log softmax(z_i)_{y_i}`` over :func:`margin_logits`."""
    return F.cross_entropy(margin_logits(sq_dist, targets, sigma_sq, log_prior), targets)


def centre_loss(centres: Tensor, sigma_sq: Tensor, centre_sq: Tensor | None = None) -> Tensor:
    """``L_C = (1/C) sum_j -log softmax_j(-(D^C_{j,.} - sigma^2 1[. != j]))`` with ``D^C`` the centre-to-
    centre squared distances (``centre_sq`` when the caller has them): each centre must be nearer to
    itself than to any other by ``sigma^2``, which pushes the centres apart (no prior term, as in the
    code)."""
    c = centres.shape[0]
    own = torch.arange(c, device=centres.device)
    d = pairwise_sq_distances(centres, centres) if centre_sq is None else centre_sq
    logits = -(d - sigma_sq.detach() * (1.0 - torch.eye(c, device=centres.device, dtype=d.dtype)))
    return F.cross_entropy(logits, own)


@dataclass(frozen=True)
class ARConvLTerms:
    """The loss terms of one batch and the adaptive quantities they used."""

    margin: Tensor
    centre: Tensor
    region: Tensor
    distribution: Tensor
    beta: Tensor
    sigma_sq: Tensor
    r_ben_sq: Tensor
    r_upp_sq: Tensor

    @property
    def total(self) -> Tensor:
        """``L = L_M + L_C + L_R + L_D``."""
        return self.margin + self.centre + self.region + self.distribution


def arconvl_loss(
    sq_dist: Tensor,
    centres: Tensor,
    radius_sq: Tensor,
    targets: Tensor,
    alpha: Tensor,
    log_prior: Tensor,
    gamma: float = 0.05,
) -> ARConvLTerms:
    """All of ARConvL's terms for a batch with squared distances ``sq_dist`` [B, C] to ``centres`` [C, d].

    The C x C centre distances are computed once, for the region bounds (detached) and the centre term.
    """
    centre_sq = pairwise_sq_distances(centres, centres)
    r_ben_sq, r_upp_sq = region_bounds(centres, radius_sq, centre_sq)
    beta = adaptive_beta(r_ben_sq, r_upp_sq)
    sigma_sq = adaptive_margin(r_ben_sq, r_upp_sq)
    return ARConvLTerms(
        margin=margin_cross_entropy(sq_dist, targets, sigma_sq, log_prior),
        centre=centre_loss(centres, sigma_sq, centre_sq),
        region=region_loss(sq_dist, radius_sq, targets, alpha, gamma),
        distribution=distribution_loss(sq_dist, targets, alpha, beta),
        beta=beta,
        sigma_sq=sigma_sq,
        r_ben_sq=r_ben_sq,
        r_upp_sq=r_upp_sq,
    )
