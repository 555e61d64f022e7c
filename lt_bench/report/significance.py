"""The tests across groups (:mod:`lt_bench.stats` does the arithmetic): per metric, Wilcoxon signed-rank
for two groups, Friedman plus average ranks for three or more, and Holm against a control group."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lt_bench.report.group import Group
from lt_bench.stats import (
    PosthocRow,
    TestResult,
    average_ranks,
    compare_groups,
    holm_vs_control,
    matched_blocks,
)


def per_block(group: Group, metric: str, split: str, block_by: str | None = None) -> dict[str, float | None]:
    """``block -> value`` (percent), a block being a seed, or with ``block_by`` a value of that key (a data
    set, an imbalance factor: ARConvL's protocol ranks methods over data sets). Runs that share a block
    are averaged so each block is one value."""
    values: dict[str, list[float]] = {}
    for run in group.runs:
        value = run.metric(split, metric)
        if value is not None:
            block = run.seed if block_by is None else run.value(block_by)
            values.setdefault(block, []).append(100.0 * value)
    return {block: math.fsum(v) / len(v) for block, v in values.items()}


@dataclass
class MetricTest:
    metric: str
    result: TestResult
    ranks: list[float] | None  # average rank per group (1 = best), three or more groups only
    posthoc: list[PosthocRow] | None = None  # Holm against the control group, when one is chosen


def significance(
    groups: Sequence[Group],
    metrics: Sequence[str],
    split: str,
    block_by: str | None = None,
    control: int | None = None,
) -> list[MetricTest]:
    """One test per metric across the blocks every group shares; Holm vs ``control`` after Friedman."""
    tests = []
    for metric in metrics:
        _, blocks = matched_blocks([per_block(g, metric, split, block_by) for g in groups])
        result = compare_groups(blocks, len(groups))
        ranks = average_ranks(blocks) if len(groups) >= 3 and blocks else None
        posthoc = holm_vs_control(blocks, control) if control is not None and blocks else None
        tests.append(MetricTest(metric, result, ranks, posthoc))
    return tests
