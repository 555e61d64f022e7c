"""mixup, Remix and PPmix as one rule: pure functions of the mixing coefficient and the class counts.

A mixed sample is ``x~ = lam x_a + (1 - lam) x_b`` and its loss ``w L(y_a) + (1 - w) L(y_b)`` with a
per-sample label weight ``w`` from :func:`label_weights`. The mixing progress ``p`` (from the schedule)
moves ``w`` from mixup's ``lam`` (``p = 0``) to Remix's 0/1 (``p = 1``); PPmix follows ``p(E)``.
"""

from __future__ import annotations

import random

import torch
from torch import Tensor

from lt_bench.errors import ConfigError

# Beta(a, a) has standard deviation 1 / (2 sqrt(2a + 1)), under 4e-17 past a = 1e32: below the draw's own
# rounding, so a larger ``a`` would draw the same values. The cap is needed, not only harmless: the
# stdlib's gamma sampler computes sqrt(2a - 1), which overflows for a > ~9e307 (1e308 passes a
# finiteness check), and its rejection loop then never accepts.
ALPHA_CAP = 1e32


def sample_lambda(alpha: float, generator: torch.Generator) -> float:
    """One draw of ``lam ~ Beta(alpha, alpha)``, reproducible from ``generator``'s state.

    torch's Beta sampler takes no generator, so the generator supplies a 63-bit seed for the standard
    library's ``betavariate`` (gamma-ratio sampling); the same generator state gives the same ``lam``.
    Any ``alpha`` > 0, however large (``inf`` included), draws in bounded time: see :data:`ALPHA_CAP`.
    """
    if not alpha > 0:
        raise ConfigError(f"schedule.mix_alpha={alpha} must be > 0 (Beta(a, a) parameter, e.g. 1)")
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator, device=generator.device).item())
    capped = min(alpha, ALPHA_CAP)
    return random.Random(seed).betavariate(capped, capped)


def label_weights(lam: float, n_a: Tensor, n_b: Tensor, kappa: float, tau: float, progress: float) -> Tensor:
    """Weight of label ``y_a`` per sample of ``x~ = lam x_a + (1 - lam) x_b`` (``y_b`` gets ``1 - w``).

    With ``n_a``, ``n_b`` the training counts of the two labels and mixing progress ``p``::

        w = lam (1 - p)       if n_a / n_b >= kappa and lam < tau        (towards the rarer y_b)
        w = lam (1 - p) + p   if n_a / n_b <= 1 / kappa and 1 - lam < tau (towards the rarer y_a)
        w = lam               otherwise

    ``p = 0`` is mixup, ``p = 1`` Remix (Chou et al.: 0 and 1), ``p = p(E)`` PPmix. Should both
    conditions hold (only possible with kappa = 1 and tau > 0.5) the first wins.
    """
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"label_weights: progress must be in [0, 1], got {progress}")
    if n_a.shape != n_b.shape:
        raise ValueError(f"label_weights: n_a {tuple(n_a.shape)} and n_b {tuple(n_b.shape)} differ in shape")
    dtype = n_a.dtype if n_a.is_floating_point() else torch.float32
    # compare by multiplication: n_a >= kappa n_b is exact at the boundary where a division may round
    a, b = n_a.double(), n_b.double()
    to_b = (a >= kappa * b) & (lam < tau)
    to_a = (kappa * a <= b) & (1.0 - lam < tau)
    plain = torch.full(n_a.shape, float(lam), dtype=torch.float64, device=n_a.device)
    weights = torch.where(to_a, plain * (1.0 - progress) + progress, plain)
    weights = torch.where(to_b, plain * (1.0 - progress), weights)
    return weights.to(dtype)


def mix_batch(x: Tensor, y: Tensor, lam: float, perm: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(lam x + (1 - lam) x[perm], y, y[perm])``: the mixed inputs and the two labels of each sample."""
    if perm.shape != (len(x),) or len(y) != len(x):
        raise ValueError(
            f"mix_batch: x ({len(x)} samples), y ({len(y)}) and perm {tuple(perm.shape)} must have one "
            "entry per sample"
        )
    return lam * x + (1.0 - lam) * x[perm], y, y[perm]
