"""lt_bench.plots and the run's figures: what they show (legends, titles, ticks), on tiny figures."""

from __future__ import annotations

import math

import pytest
import torch
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.patches import StepPatch

from lt_bench import plots
from lt_bench import summary as run_summary
from lt_bench.schedules import Schedule, plot_schedule
from tests.helpers import ROOT

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plotting functions would write, not written."""
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi=plots.DPI: figures.append(fig))
    return figures


def diagram(accuracy, confidence, count):
    return {"accuracy": accuracy, "confidence": confidence, "count": count, "ece": 0.1}


# bin 0: over-confident, bin 1: under-confident, bin 2: empty
CALIBRATION = {
    "bins": 3,
    **{g: diagram([0.2, 0.9, None], [0.25, 0.5, None], [5, 3, 0]) for g in ("all", "many", "medium", "few")},
}


def test_reliability_legend_names_every_colour_it_draws():
    fig = plots.reliability_figure({"all": CALIBRATION["all"]}, 3, "test split")
    (legend,) = fig.legends
    entries = {t.get_text(): h for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)}
    over = next(h for label, h in entries.items() if label.startswith("over-confident"))
    under = next(h for label, h in entries.items() if label.startswith("under-confident"))
    assert any(label.startswith("share of samples") for label in entries)
    (ax,) = fig.axes
    drawn = [tuple(c.get_facecolor()[0]) for c in ax.collections if isinstance(c, PolyCollection)]
    assert tuple(to_rgba(plots.OVER_CONFIDENT, 0.45)) in drawn
    assert tuple(to_rgba(plots.UNDER_CONFIDENT)) in drawn
    assert over.get_facecolor() == to_rgba(plots.OVER_CONFIDENT, 0.45)
    assert under.get_facecolor() == to_rgba(plots.UNDER_CONFIDENT)


def test_reliability_sample_share_is_not_hidden_behind_the_bars():
    fig = plots.reliability_figure({"all": CALIBRATION["all"]}, 3)
    (ax,) = fig.axes
    accuracy = next(c for c in ax.collections if tuple(c.get_facecolor()[0]) == to_rgba(plots.ACCURACY))
    widths = {round(v[:, 0].max() - v[:, 0].min(), 9) for v in (p.vertices for p in accuracy.get_paths())}
    assert max(widths) < 1 / 3  # narrower than a bin: the grey share shows beside each bar
    outline = [p for p in ax.patches if isinstance(p, StepPatch) and not p.get_fill()]
    assert outline and outline[0].get_zorder() > accuracy.get_zorder()  # and its outline over them
    assert list(outline[0].get_data().values) == pytest.approx([5 / 8, 3 / 8, 0])


def test_run_plots_are_titled_with_the_split_and_the_model(drawn):
    result = {"per_class": [0.5, None], "balanced_acc": 0.5}
    title = run_summary.run_plot_title({"selected_by": "val/top1", "best_epoch": 3, "test": result}, "test")
    assert title == "test split, best val/top1 model (epoch 3)"
    run_summary.plot_run_per_class(result, [10, 2], ROOT / "unused.png", title)
    run_summary.plot_reliability(CALIBRATION, ROOT / "unused.png", title)
    per_class, reliability = drawn
    assert per_class.axes[0].get_title() == f"per-class accuracy (balanced 50.00%), {title}"
    assert reliability.texts[0].get_text() == f"reliability, {title}"
    final = run_summary.run_plot_title({"selected_by": "last", "best_epoch": 9}, "test")
    assert final == "test split, final-epoch model (epoch 9)"
    evaluated = run_summary.run_plot_title({"checkpoint_epoch": 4, "split": "val"}, "val")
    assert evaluated == "val split, checkpoint of epoch 4"


def test_schedule_ticks_are_whole_epochs(drawn):
    plot_schedule(Schedule(e0=1, e1=2, weighting="inverse"), 3, ROOT / "unused.png")
    (fig,) = drawn
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


def test_figures_are_written_as_png(tmp_path):
    plots.plot_per_class([plots.Curve("", [10, 2], [0.5, math.nan])], tmp_path / "a" / "per_class.png", "t")
    plots.plot_reliability({"all": CALIBRATION["all"]}, 3, tmp_path / "reliability.png")
    plots.plot_regions([[0, 0], [1, 1]], [0, 1], [[0, 0], [1, 1]], [0.5, 0.5], tmp_path / "regions.png")
    centres = torch.nn.Parameter(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))  # as ARConvL's head holds them
    radii = centres.norm(dim=1) + 0.5
    plots.plot_regions(torch.rand(8, 2), torch.arange(8) % 2, centres, radii, tmp_path / "t.png")
    for name in ("a/per_class.png", "reliability.png", "regions.png", "t.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG
