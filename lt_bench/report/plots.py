"""The report's figures: per-class accuracy against training count, one line per group
(:func:`lt_bench.plots.plot_per_class`), and a heat map of one metric when exactly two keys are swept.
Drawn as every lt_bench figure is (:func:`lt_bench.plots.new_figure`: a Figure without pyplot)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from lt_bench.plots import Curve, new_figure, plot_per_class, save_figure
from lt_bench.report.group import Group, group_cells, group_name, sort_key
from lt_bench.report.load import split_title

MAX_CURVES = 10  # more lines than this make the per-class plot unreadable


def per_class_curve(group: Group, split: str) -> tuple[list[float], list[float]]:
    """(training count, mean recall over the group's runs) per class, NaN where no run has a value."""
    counts: list[list[float]] = []
    recalls: list[list[float]] = []
    for run in group.runs:
        result = run.result(split)
        class_counts = run.summary.get("class_counts")
        if not isinstance(result, dict) or not result.get("per_class") or not class_counts:
            continue
        counts.append([float(c) for c in class_counts])
        recalls.append([math.nan if r is None else float(r) for r in result["per_class"]])
    if not counts:
        return [], []
    n_classes = len(counts[0])

    def nanmean(column: list[float]) -> float:
        finite = [v for v in column if math.isfinite(v)]
        return math.fsum(finite) / len(finite) if finite else math.nan

    mean_counts = [nanmean([c[j] for c in counts if len(c) == n_classes]) for j in range(n_classes)]
    mean_recalls = [nanmean([r[j] for r in recalls if len(r) == n_classes]) for j in range(n_classes)]
    return mean_counts, mean_recalls


def heatmap_grid(
    groups: Sequence[Group], metric: str, split: str
) -> tuple[list[str], list[str], list[list[float]]]:
    """Rows = values of the first key, columns = values of the second, cells = mean metric (percent)."""
    rows = sorted({g.label[0] for g in groups}, key=sort_key)
    cols = sorted({g.label[1] for g in groups}, key=sort_key)
    grid = [[math.nan] * len(cols) for _ in rows]
    for g in groups:
        grid[rows.index(g.label[0])][cols.index(g.label[1])] = group_cells(g, [metric], split)[metric].mean
    return rows, cols, grid


def _nan_to(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def plot_groups_per_class(
    groups: Sequence[Group], keys: Sequence[str], split: str, metric: str, path: Path
) -> None:
    """Per-class recall against training count, one line per group (the best MAX_CURVES by ``metric``)."""
    chosen = list(groups)
    title = f"per-class {split_title(split)} accuracy vs training count (mean over seeds)"
    if len(chosen) > MAX_CURVES:
        chosen.sort(key=lambda g: -_nan_to(group_cells(g, [metric], split)[metric].mean, -1.0))
        chosen = chosen[:MAX_CURVES]
        title += f"\n{MAX_CURVES} best of {len(groups)} groups by {metric}"
    curves = [Curve(group_name(keys, g.label), *per_class_curve(g, split)) for g in chosen]
    plot_per_class([c for c in curves if c.counts], path, title)


def plot_heatmap(groups: Sequence[Group], keys: Sequence[str], metric: str, split: str, path: Path) -> None:
    """Mean ``metric`` over seeds for every pair of values of the two swept keys."""
    import numpy as np

    rows, cols, grid = heatmap_grid(groups, metric, split)
    data = np.ma.masked_invalid(np.asarray(grid, dtype=float))
    # the values of the swept keys are any text: a layout engine fits their tick labels
    fig = new_figure(1.2 * len(cols) + 2.5, 0.8 * len(rows) + 2, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(data, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(keys[1])
    ax.set_ylabel(keys[0])
    finite = data.compressed()
    middle = float(finite.mean()) if finite.size else 0.0
    for i in range(len(rows)):
        for j in range(len(cols)):
            if math.isfinite(grid[i][j]):
                color = "black" if grid[i][j] > middle else "white"
                ax.text(j, i, f"{grid[i][j]:.1f}", ha="center", va="center", fontsize=8, color=color)
    fig.colorbar(image, ax=ax, label=f"{metric} (%)")
    ax.set_title(f"{split_title(split)} {metric} (%), mean over seeds", fontsize=10)
    save_figure(fig, path, dpi=110)
