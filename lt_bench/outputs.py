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


def plot_per_class(result: dict[str, Any], class_counts: list[int], path: Path) -> None:
    """Per-class test recall against training count, classes ordered head to tail."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(range(len(class_counts)), key=lambda j: -class_counts[j])
    recall = [result["per_class"][j] if result["per_class"][j] is not None else float("nan") for j in order]
    fig, ax = plt.subplots(figsize=(max(6, len(order) * 0.25), 4))
    ax.bar(range(len(order)), [class_counts[j] for j in order], color="#c7d7ea", label="training count")
    ax.set_yscale("log")
    ax.set_ylabel("training images (log)")
    ax.set_xlabel("class (head to tail)")
    if len(order) <= 30:
        ax.set_xticks(range(len(order)), [str(j) for j in order])
    ax2 = ax.twinx()
    ax2.plot(range(len(order)), recall, "o-", color="#c0392b", label="test recall")
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("test recall")
    ax.set_title(f"per-class accuracy (balanced {result['balanced_acc']:.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def print_results(summary: dict[str, Any], run_dir: Path) -> None:
    table = Table(title="lt_bench results (%)")
    table.add_column("model")
    for key in SCALAR_KEYS:
        table.add_column(key, justify="right")
    rows = [("final epoch", summary["test_last"])]
    if summary.get("selected_by", "last") != "last":
        rows.insert(0, (f"best {summary['selected_by']} (epoch {summary['best_epoch']})", summary["test"]))
    for label, result in rows:
        table.add_row(label, *(_fmt(result.get(k)) for k in SCALAR_KEYS))
    console = Console()
    console.print(table)
    console.print(f"test images: {summary['test']['n']}   run directory: {run_dir}")
