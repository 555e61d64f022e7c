"""PHASE: :func:`msr_weights` on 100,000 x 512 features against the pairwise within-class similarity
matrix it never forms (FLOP count x the rate measured on a subsample)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmarks.common import Settings, long_tailed_counts, median_seconds
from lt_bench.methods.phase import mean_unit_similarity, msr_weights


@dataclass(frozen=True)
class PhaseCost:
    n: int
    dim: int
    counts: list[int]
    msr_seconds: float
    subsample: int
    pair_seconds: float
    max_diff: float

    @property
    def pair_flop(self) -> float:
        """``2 sum_j n_j^2 d``: every within-class dot product, multiply and add."""
        return 2.0 * sum(n * n for n in self.counts) * self.dim

    @property
    def rate(self) -> float:
        return 2.0 * self.subsample**2 * self.dim / self.pair_seconds


def phase_cost(s: Settings) -> PhaseCost:
    device, n, dim = s.device, s.phase_n, s.phase_dim
    counts = long_tailed_counts(n, 100)
    labels = torch.repeat_interleave(torch.arange(100), torch.tensor(counts)).to(device)
    features = torch.randn(n, dim, generator=torch.Generator().manual_seed(0)).to(device)
    msr = median_seconds(lambda: msr_weights(features, labels, counts), 3, device)
    # the pairwise form on a subsample of the largest class, in float64 as msr_weights computes
    m = min(s.phase_subsample, counts[0])
    sub = features[:m].double()
    u = F.normalize(sub - sub.mean(0), dim=1)
    pair = median_seconds(lambda: (u @ u.T).mean(1), 3, device)
    zeros = torch.zeros(m, dtype=torch.long, device=device)
    diff = float((mean_unit_similarity(sub, zeros, 1) - (u @ u.T).mean(1)).abs().max())
    return PhaseCost(n, dim, counts, msr, m, pair, diff)


def report_phase(p: PhaseCost) -> None:
    full_gb = p.n**2 * 8 / 1e9
    class_mb = max(p.counts) ** 2 * 8 / 1e6
    print(
        f"PHASE msr_weights on {p.n:,} x {p.dim} float32 features, 100 classes "
        f"({p.counts[0]:,} ... {p.counts[-1]:,} per class, IF 100): {p.msr_seconds:.3g} s"
    )
    print(
        f"PHASE the pairwise within-class similarities it avoids: 2 sum_j n_j^2 d = {p.pair_flop:.2e} FLOP, "
        f"~{p.pair_flop / p.rate:.3g} s at the {p.rate / 1e9:.0f} GFLOP/s that a {p.subsample:,} x "
        f"{p.subsample:,} float64 product of the largest class measured here "
        f"({p.pair_flop / p.rate / p.msr_seconds:.1f}x msr_weights); memory {class_mb:.0f} MB for the "
        f"largest class's matrix, {full_gb:.0f} GB for an N x N one"
    )
    print(f"PHASE check: the O(N d) form equals the pairwise means on that subsample to {p.max_diff:.1e}")
