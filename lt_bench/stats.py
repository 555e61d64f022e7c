"""Statistics for comparing configurations over seeds: pure functions of plain numbers.

Nothing here reads files. :mod:`lt_bench.report` turns runs into the numbers these functions take:
per group a list of values (one per run) for mean ± std, and for the tests a *block matrix* — one row per
seed that every group has (the block), one column per group — because the Wilcoxon and Friedman tests
compare configurations on matched seeds, the way ARConvL compares methods on matched repeats.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

# Below this many matched pairs the exact two-sided Wilcoxon p-value cannot reach 0.05 (min p = 2 / 2^n).
WILCOXON_MIN_N = 6
# Below this many blocks (with fewer than 5 groups) Friedman's chi-square p-value is only a rough guide.
FRIEDMAN_EXACTISH_N = 10


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (ddof=1) of ``n`` values; ``std`` is NaN when ``n < 2``."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class TestResult:
    """One significance test. ``statistic``/``p`` are None when the test cannot be computed; ``note`` says why
    (or qualifies a result computed on few seeds)."""

    test: str  # "wilcoxon" | "friedman" | "none"
    statistic: float | None
    p: float | None
    n: int  # matched seeds (blocks) used
    note: str = ""


def mean_std(values: Sequence[float | None]) -> MeanStd:
    """Mean ± sample std of the finite values; missing (None/NaN) values are left out and not counted."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(kept)
    if n == 0:
        return MeanStd(math.nan, math.nan, 0)
    mean = math.fsum(kept) / n
    if n < 2:
        return MeanStd(mean, math.nan, 1)
    var = math.fsum((v - mean) ** 2 for v in kept) / (n - 1)
    return MeanStd(mean, math.sqrt(var), n)


def best_indices(values: Sequence[float], higher_is_better: bool = True) -> set[int]:
    """Positions of the best finite value (every one of them when several tie)."""
    finite = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if not finite:
        return set()
    pick = max if higher_is_better else min
    best = pick(v for _, v in finite)
    return {i for i, v in finite if v == best}


def matched_blocks(
    per_group: Sequence[Mapping[Hashable, float | None]],
) -> tuple[list[Hashable], list[list[float]]]:
    """Seeds present (with a finite value) in every group, and the block matrix ``[seed][group]``.

    Each mapping is one group's ``seed -> value``. Seeds are returned sorted so a report is stable.
    """
    if not per_group:
        return [], []

    def finite_seeds(group: Mapping[Hashable, float | None]) -> set[Hashable]:
        return {s for s, v in group.items() if v is not None and math.isfinite(v)}

    common = set.intersection(*(finite_seeds(g) for g in per_group))
    seeds = sorted(common, key=lambda s: (str(type(s)), s))
    return seeds, [[float(g[s]) for g in per_group] for s in seeds]


def wilcoxon_signed_rank(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Wilcoxon signed-rank test on paired values ``a[i]`` vs ``b[i]`` (scipy's defaults: zero
    differences dropped, exact distribution for small n)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return TestResult("wilcoxon", None, None, 0, "no seed is shared by both groups")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    nonzero = sum(1 for d in diffs if d != 0)
    if nonzero == 0:
        return TestResult("wilcoxon", None, None, n, "identical on every matched seed: no difference to test")
    notes = []
    if nonzero < n:
        notes.append(f"{n - nonzero} tied pair(s) dropped")
    if nonzero < WILCOXON_MIN_N:
        notes.append(f"only {nonzero} non-zero pairs: p cannot fall below {2 / 2**nonzero:.3g}")
    with warnings.catch_warnings():
        # scipy warns about the normal approximation with ties or few samples; the note above says it
        warnings.simplefilter("ignore")
        result = sps.wilcoxon(a, b)
    return TestResult("wilcoxon", float(result.statistic), float(result.pvalue), n, "; ".join(notes))


def average_ranks(blocks: Sequence[Sequence[float]], higher_is_better: bool = True) -> list[float]:
    """Mean rank of each group over the blocks; rank 1 is the best in a block, ties share the average."""
    if not blocks:
        return []
    matrix = np.asarray(blocks, dtype=float)
    keyed = -matrix if higher_is_better else matrix
    ranks = np.vstack([sps.rankdata(row, method="average") for row in keyed])
    return [float(r) for r in ranks.mean(axis=0)]


def friedman(blocks: Sequence[Sequence[float]]) -> TestResult:
    """Friedman test over a block matrix ``[seed][group]`` with at least three groups."""
    n = len(blocks)
    k = len(blocks[0]) if blocks else 0
    if n == 0:
        return TestResult("friedman", None, None, 0, "no seed is shared by every group")
    if k < 3:
        raise ValueError(f"the Friedman test compares at least 3 groups, got {k}")
    if n < 2:
        return TestResult("friedman", None, None, n, "needs at least 2 seeds shared by every group")
    if all(len(set(row)) == 1 for row in blocks):
        return TestResult("friedman", None, None, n, "all groups tie on every matched seed")
    columns = [list(col) for col in zip(*blocks, strict=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sps.friedmanchisquare(*columns)
    # scipy's p comes from the chi-square approximation, which tables of the exact distribution show to be
    # rough for few blocks and few groups
    note = "chi-square approximation: rough with so few seeds" if n < FRIEDMAN_EXACTISH_N and k < 5 else ""
    return TestResult("friedman", float(result.statistic), float(result.pvalue), n, note)


def compare_groups(blocks: Sequence[Sequence[float]], n_groups: int) -> TestResult:
    """The test that fits the number of groups: Wilcoxon for two, Friedman for three or more."""
    if n_groups < 2:
        return TestResult("none", None, None, len(blocks), "one group: nothing to compare")
    if n_groups == 2:
        return wilcoxon_signed_rank([row[0] for row in blocks], [row[1] for row in blocks])
    if not blocks:
        return TestResult("friedman", None, None, 0, "no seed is shared by every group")
    return friedman(blocks)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values, in the input order.

    With the m raw p-values sorted ascending, ``p_(i)`` is adjusted to ``max_{j <= i} min(1, (m - j + 1)
    p_(j))`` (1-based ``j``): a hypothesis is rejected at level a exactly when its adjusted p is <= a.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class PosthocRow:
    """One group against the control: the rank-difference z, its two-sided p and Holm's adjusted p."""

    group: int
    rank_difference: float  # average rank of the group minus the control's (> 0: the control ranks better)
    z: float
    p: float
    p_holm: float


def holm_vs_control(
    blocks: Sequence[Sequence[float]], control: int, higher_is_better: bool = True
) -> list[PosthocRow]:
    """The post-hoc test after Friedman against one control group (Demšar, JMLR 2006, §3.2.2).

    With k groups ranked over N blocks, ``z_i = (R_i - R_c) / sqrt(k (k + 1) / (6 N))`` is standard normal
    under the null; the k - 1 two-sided p-values are Holm-adjusted (:func:`holm_adjust`).
    """
    n = len(blocks)
    k = len(blocks[0]) if blocks else 0
    if k < 2 or n < 1:
        raise ValueError(f"a post-hoc test needs at least 2 groups and 1 block, got {k} and {n}")
    if not 0 <= control < k:
        raise ValueError(f"control index {control} is outside the {k} groups")
    ranks = average_ranks(blocks, higher_is_better)
    scale = math.sqrt(k * (k + 1) / (6.0 * n))
    others = [i for i in range(k) if i != control]
    diffs = [ranks[i] - ranks[control] for i in others]
    zs = [d / scale for d in diffs]
    ps = [float(2 * sps.norm.sf(abs(z))) for z in zs]
    adjusted = holm_adjust(ps)
    return [PosthocRow(i, d, z, p, a) for i, d, z, p, a in zip(others, diffs, zs, ps, adjusted, strict=True)]
