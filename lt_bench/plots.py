"""The per-class accuracy plot, shared by a run (one curve) and the report (one curve per group).

Accuracy is drawn against the class's training count on a log axis, so head and tail read left to right
the same way whatever the class ids. Above :data:`BIN_ABOVE` classes (iNaturalist has 8,142) one point
per class is unreadable and the figure would grow with C: classes are then binned by training count
(log-spaced bins) and each bin shows its mean accuracy, so the image size is fixed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BIN_ABOVE = 100  # more classes than this: one point per training-count bin instead of per class
N_BINS = 20


@dataclass(frozen=True)
class Curve:
    label: str
    counts: Sequence[float]  # training images of each class
    accuracy: Sequence[float]  # in [0, 1]; NaN where a class has no test sample


def binned(counts: Sequence[float], accuracy: Sequence[float], n_bins: int = N_BINS) -> tuple[list, list]:
    """(geometric bin centre, mean accuracy) over log-spaced training-count bins; empty bins dropped."""
    pairs = [(c, a) for c, a in zip(counts, accuracy, strict=True) if c > 0 and math.isfinite(a)]
    if not pairs:
        return [], []
    low, high = math.log(min(c for c, _ in pairs)), math.log(max(c for c, _ in pairs))
    width = (high - low) / n_bins or 1.0
    sums: dict[int, list[float]] = {}
    for c, a in pairs:
        k = min(n_bins - 1, int((math.log(c) - low) / width))
        sums.setdefault(k, []).append(a)
    keys = sorted(sums)
    centres = [math.exp(low + (k + 0.5) * width) for k in keys]
    return centres, [math.fsum(sums[k]) / len(sums[k]) for k in keys]


def plot_per_class(curves: Sequence[Curve], path: Path, title: str) -> None:
    """Write the PNG: accuracy (%) against training count, one line per curve, binned for large C."""
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in any process

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    n_classes = max((len(c.counts) for c in curves), default=0)
    for curve in curves:
        if n_classes > BIN_ABOVE:
            xs, ys = binned(curve.counts, curve.accuracy)
        else:
            order = sorted(range(len(curve.counts)), key=lambda j: curve.counts[j])
            xs, ys = [curve.counts[j] for j in order], [curve.accuracy[j] for j in order]
        ax.plot(xs, [100 * a for a in ys], "o-", ms=4, alpha=0.85, label=curve.label)
    ax.set_xscale("log")
    binned_note = f", mean over {N_BINS} log-count bins" if n_classes > BIN_ABOVE else ""
    ax.set_xlabel(f"training images of the class (log{binned_note})")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(curves) > 1 or curves and curves[0].label:
        ax.legend(fontsize=7, loc="best")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
