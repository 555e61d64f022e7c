"""lt_bench's figures, drawn one way: a matplotlib :class:`~matplotlib.figure.Figure` without pyplot (no
global state, no GUI backend, safe in any process and thread), written with ``fig.savefig``.

:func:`new_figure` and :func:`save_figure` are the convention; every figure of lt_bench goes through them:

- :func:`plot_per_class`: accuracy against the class's training count, shared by a run (one curve) and the
  report (one curve per group);
- :func:`plot_reliability`: a run's reliability diagrams (all classes and per many/medium/few group);
- :func:`plot_regions`: ARConvL's 2-D features, class centres and region radii;
- ``lt_bench.schedules.plot_schedule`` and the report's heat map (``lt_bench.report.plots``).

matplotlib is imported on the first figure, not with this module (``import lt_bench`` stays light), and
never selects a backend: ``Figure.savefig`` writes PNGs with Agg whatever ``matplotlib.use`` says. Run
figures have a fixed size and fixed margins (:func:`new_figure`) instead of a layout engine: constrained
layout measured every text twice and took about 40% of a figure's drawing time.

Accuracy is drawn against the class's training count on a log axis, so head and tail read left to right
the same way whatever the class ids. Above :data:`BIN_ABOVE` classes (iNaturalist has 8,142) one point
per class is unreadable and the figure would grow with C: classes are then binned by training count
(log-spaced bins) and each bin shows its mean accuracy, so the image size is fixed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

BIN_ABOVE = 100  # more classes than this: one point per training-count bin instead of per class
N_BINS = 20
DPI = 100  # every figure: 100 pixels per inch of its size
# the reliability diagram's colours, named in its legend
ACCURACY = "tab:blue"
OVER_CONFIDENT = "tab:red"  # mean confidence above accuracy: the box from accuracy up to confidence
UNDER_CONFIDENT = "tab:orange"  # mean confidence below accuracy: the box from confidence up to accuracy
SAMPLE_SHARE = "grey"


# -- the convention -----------------------------------------------------------------------------------
def new_figure(
    width: float,
    height: float,
    *,
    left: float = 0.75,
    right: float = 0.2,
    bottom: float = 0.55,
    top: float = 0.4,
    wspace: float = 0.2,
    layout: str | None = None,
) -> Figure:
    """A ``width`` x ``height`` inch Figure whose axes leave fixed margins (in inches) for tick labels,
    axis labels and titles. ``layout="constrained"`` instead, for a figure whose labels are not known in
    advance (the report's heat map): it costs a second measuring pass over every text."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    if layout is None:
        fig.subplots_adjust(
            left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
            wspace=wspace,
        )  # fmt: skip
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` to ``path`` (the format from its suffix), creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def title_height(title: str, fontsize: float = 10) -> float:
    """Inches a title of this many lines takes above the axes (with the gap below it)."""
    return 0.12 + (title.count("\n") + 1) * fontsize * 1.35 / 72


# -- per-class accuracy -------------------------------------------------------------------------------
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


def per_class_figure(curves: Sequence[Curve], title: str) -> Figure:
    """Accuracy (%) against training count, one line per curve, binned for large C."""
    fig = new_figure(7, 4.5, top=title_height(title))
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
    ax.set_title(title, fontsize=10, y=1)  # a fixed y: no search for ticks on top
    ax.grid(alpha=0.3)
    if len(curves) > 1 or curves and curves[0].label:
        ax.legend(fontsize=7, loc="best")
    return fig


def plot_per_class(curves: Sequence[Curve], path: str | Path, title: str) -> Figure:
    """Write :func:`per_class_figure` to ``path`` (PNG); returns the figure."""
    fig = per_class_figure(curves, title)
    save_figure(fig, path)
    return fig


# -- reliability --------------------------------------------------------------------------------------
def _percent(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _boxes(ax: Axes, lefts: Any, width: float, lows: Any, highs: Any, zorder: float, **style: Any) -> None:
    """One rectangle per bin from ``lows`` to ``highs``, as one collection (bars cost a patch each)."""
    from matplotlib.collections import PolyCollection

    verts = [
        [(x, lo), (x + width, lo), (x + width, hi), (x, hi)]
        for x, lo, hi in zip(lefts, lows, highs, strict=True)
        if math.isfinite(lo) and math.isfinite(hi) and hi > lo
    ]
    ax.add_collection(PolyCollection(verts, zorder=zorder, **style), autolim=False)


def reliability_figure(diagrams: Mapping[str, Mapping[str, Any]], bins: int, title: str = "") -> Figure:
    """One reliability diagram per entry of ``diagrams`` (name -> ``count``, ``accuracy``, ``confidence``
    per confidence bin and ``ece``, as summary.json's ``calibration`` holds them).

    Each bin: its accuracy (a bar narrower than the bin), the gap to its mean confidence (red above the
    bar when over-confident, orange inside it when under-confident), against the dashed diagonal of
    perfect calibration; the bins' share of the samples is the grey step behind and over the bars.
    """
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    header = 0.3 if title else 0.05
    fig = new_figure(13, 4.1, left=0.6, right=0.2, bottom=0.5, top=header + 0.6, wspace=0.12)
    axes = fig.subplots(1, len(diagrams), sharey=True, squeeze=False)[0]
    edges = np.linspace(0.0, 1.0, bins + 1)
    width = 0.7 / bins
    lefts = edges[:-1] + (1 / bins - width) / 2
    for ax, (name, diagram) in zip(axes, diagrams.items(), strict=True):
        counts = np.asarray(diagram["count"], dtype=float)
        accuracy = np.array([np.nan if a is None else a for a in diagram["accuracy"]], dtype=float)
        confidence = np.array([np.nan if c is None else c for c in diagram["confidence"]], dtype=float)
        if counts.sum() > 0:
            share = counts / counts.sum()
            ax.stairs(share, edges, fill=True, color=SAMPLE_SHARE, alpha=0.25, lw=0, zorder=1)
            ax.stairs(share, edges, color="dimgrey", lw=1.2, zorder=5)
        zeros = np.zeros_like(accuracy)
        _boxes(ax, lefts, width, zeros, accuracy, 2, facecolor=ACCURACY, edgecolor="k", lw=0.5)
        _boxes(ax, lefts, width, confidence, accuracy, 3, facecolor=UNDER_CONFIDENT, edgecolor="k", lw=0.5)
        _boxes(ax, lefts, width, accuracy, confidence, 3, facecolor=OVER_CONFIDENT, alpha=0.45, lw=0)
        ax.plot([0, 1], [0, 1], "k--", lw=1, zorder=6)
        ax.set_title(f"{name}: ECE {_percent(diagram['ece'])}%  (n={int(counts.sum())})", fontsize=9, y=1)
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy; share of samples")
    handles = [
        Patch(facecolor=ACCURACY, edgecolor="k", lw=0.5, label="accuracy"),
        Patch(facecolor=OVER_CONFIDENT, alpha=0.45, label="over-confident: confidence > accuracy"),
        Patch(facecolor=UNDER_CONFIDENT, ec="k", lw=0.5, label="under-confident: confidence < accuracy"),
        Patch(facecolor=(0.5, 0.5, 0.5, 0.25), edgecolor="dimgrey", label="share of samples"),
        Line2D([], [], color="k", ls="--", lw=1, label="perfect calibration"),
    ]
    fig.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - header / 4.1), ncol=len(handles),
        fontsize=8, frameon=False,
    )  # fmt: skip
    if title:
        fig.suptitle(f"reliability, {title}", fontsize=10, y=1 - 0.06 / 4.1, va="top")
    return fig


def plot_reliability(
    diagrams: Mapping[str, Mapping[str, Any]], bins: int, path: str | Path, title: str = ""
) -> Figure:
    """Write :func:`reliability_figure` to ``path`` (PNG); returns the figure."""
    fig = reliability_figure(diagrams, bins, title)
    save_figure(fig, path)
    return fig


# -- ARConvL's regions --------------------------------------------------------------------------------
def plot_regions(
    features: Any, labels: Any, centres: Any, radii: Any, path: str | Path, title: str = ""
) -> Figure:
    """Scatter 2-D ``features`` [N, 2] coloured by class ``labels`` [N], the class ``centres`` [C, 2] and a
    circle of radius ``radii[j]`` around each: ARConvL's regions. Arrays, lists or tensors (any device,
    any dtype, parameters included)."""
    import matplotlib
    import numpy as np
    from matplotlib.patches import Circle

    def array(a: Any) -> np.ndarray:
        if hasattr(a, "detach"):  # a tensor: off the graph, to float32 on the CPU
            a = a.detach().float().cpu().numpy()
        return np.asarray(a, dtype=float)

    f, y, c, r = (array(a) for a in (features, labels, centres, radii))
    cmap = matplotlib.colormaps["tab10" if len(c) <= 10 else "tab20"]
    fig = new_figure(6, 6, left=0.6, right=0.2, bottom=0.5, top=title_height(title or "x", 12))
    ax = fig.add_subplot()
    ax.scatter(f[:, 0], f[:, 1], c=[cmap(int(j) % cmap.N) for j in y], s=4, alpha=0.5, linewidths=0)
    for j in range(len(c)):
        colour = cmap(j % cmap.N)
        ax.add_patch(Circle((float(c[j, 0]), float(c[j, 1])), float(r[j]), fill=False, color=colour, lw=1.5))
        ax.plot(float(c[j, 0]), float(c[j, 1]), "k+", ms=8)
        ax.annotate(str(j), (float(c[j, 0]), float(c[j, 1])), textcoords="offset points", xytext=(4, 4))
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title or "ARConvL class regions (training features)", y=1)
    save_figure(fig, path, dpi=110)
    return fig
