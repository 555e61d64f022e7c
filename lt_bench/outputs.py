"""What a run leaves behind: summary.json (written atomically), plots, and the terminal table."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lt_bench.plots import Curve, plot_per_class

SCALAR_KEYS = ("top1", "balanced_acc", "many", "medium", "few", "gmean")


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(_clean(data), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def plot_run_per_class(result: dict[str, Any], class_counts: list[int], path: Path) -> None:
    """Per-class test accuracy of one run against training count."""
    accuracy = [math.nan if r is None else r for r in result["per_class"]]
    title = f"per-class accuracy (balanced {100 * result['balanced_acc']:.2f}%)"
    plot_per_class([Curve("", class_counts, accuracy)], path, title)


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def result_rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, test result) of the selected model (when selection ran) and of the final epoch."""
    rows = [("final epoch", summary["test_last"])]
    if summary.get("selected_by", "last") != "last":
        rows.insert(0, (f"best {summary['selected_by']} (epoch {summary['best_epoch']})", summary["test"]))
    return rows


def print_results(summary: dict[str, Any], run_dir: Path) -> None:
    table = Table(title="lt_bench results (%)")
    table.add_column("model")
    for key in SCALAR_KEYS:
        table.add_column(key, justify="right")
    for label, result in result_rows(summary):
        table.add_row(label, *(_fmt(result.get(k)) for k in SCALAR_KEYS))
    console = Console()
    console.print(table)
    console.print(f"test images: {summary['test']['n']}   run directory: {run_dir}")
