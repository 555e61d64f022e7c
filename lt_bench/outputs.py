"""What a run leaves behind: summary.json and the files beside it (written atomically, with the umask's
mode), the plots, and the terminal table. Training (:mod:`lt_bench.train`) and evaluation
(:mod:`lt_bench.eval`) write through the same :func:`write_run_outputs`.

summary.json holds figures, not matrices: a result's ``confusion`` is the name of the ``.npy`` file beside
it (``confusion_<split>.npy``, int64 [C, C], rows = true class, columns = predicted; ``numpy.load``), or
null when the matrix was not kept (more than :data:`lt_bench.metrics.CONFUSION_MAX_CLASSES` classes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from lt_bench.atomic import atomic_write
from lt_bench.metrics import GROUPS, SCALAR_KEYS
from lt_bench.plots import Curve, plot_per_class

NOT_PERCENT = ("nll",)  # figures printed as they are (nats), not as percentages


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _dumps(value: Any, indent: int = 0) -> str:
    """Indented JSON, with lists of plain values on one line: a per-class list of 8,142 figures takes one
    line instead of 8,142 (a third of the bytes go to indentation otherwise), and stays readable."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {_dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return "[\n" + ",\n".join(f"{inner}{_dumps(v, indent + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (a kill never leaves half a file); the file gets the umask's mode."""
    text = _dumps(_clean(data)) + "\n"
    atomic_write(Path(path), lambda f: f.write(text))


def write_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(Path(path), lambda f: np.save(f, array), binary=True)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write(Path(path), lambda f: np.savez(f, **arrays), binary=True)


def split_off_confusion(summary: dict[str, Any]) -> dict[str, Any]:
    """Replace every result's confusion matrix (``summary[key]["confusion"]``) by the name of the file that
    will hold it, ``confusion_<key>.npy``; returns ``{file name: matrix}``. Results that are one object
    (``test`` is ``test_last`` when nothing selects a model) share ``test``'s file."""
    files: dict[str, Any] = {}
    for key in sorted(summary, key=lambda k: k != "test"):  # "test" first: the file a reader looks for
        result = summary[key]
        if not isinstance(result, dict) or "confusion" not in result:
            continue
        matrix = result["confusion"]
        if matrix is None or isinstance(matrix, str):  # not kept, or already named (a shared result)
            continue
        name = f"confusion_{key}.npy"
        files[name] = matrix
        result["confusion"] = name
    return files


def write_run_outputs(
    run_dir: Path, summary: dict[str, Any], class_counts: Sequence[int], key: str = "test"
) -> dict[str, Any]:
    """summary.json, the confusion matrices beside it, and the plots of ``summary[key]``:
    ``per_class_accuracy.png`` and ``reliability.png``. Returns ``{file name: confusion matrix}``."""
    matrices = split_off_confusion(summary)
    for name, matrix in matrices.items():
        write_npy(run_dir / name, np.asarray(matrix, dtype=np.int64))
    write_json(run_dir / "summary.json", summary)
    result = summary[key]
    plot_run_per_class(result, class_counts, run_dir / "per_class_accuracy.png")
    if result.get("calibration"):
        plot_reliability(result["calibration"], run_dir / "reliability.png", f"{key} split")
    return matrices


def plot_run_per_class(result: dict[str, Any], class_counts: list[int], path: Path) -> None:
    """Per-class test accuracy of one run against training count."""
    accuracy = [math.nan if r is None else r for r in result["per_class"]]
    title = f"per-class accuracy (balanced {_fmt(result.get('balanced_acc'))}%)"
    plot_per_class([Curve("", class_counts, accuracy)], path, title)


def plot_reliability(calibration: dict[str, Any], path: Path, title: str = "") -> None:
    """Reliability diagrams, all classes and per many/medium/few group: accuracy per confidence bin
    against the diagonal of perfect calibration, the bins' share of samples shaded below."""
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in any process

    bins = int(calibration["bins"])
    edges = np.linspace(0.0, 1.0, bins + 1)
    fig = Figure(figsize=(13, 3.6), layout="constrained")
    axes = fig.subplots(1, 1 + len(GROUPS), sharey=True)
    for ax, name in zip(axes, ("all", *GROUPS), strict=True):
        diagram = calibration[name]
        counts = np.asarray(diagram["count"], dtype=float)
        accuracy = np.array([np.nan if a is None else a for a in diagram["accuracy"]])
        confidence = np.array([np.nan if c is None else c for c in diagram["confidence"]])
        width = 1 / bins
        if counts.sum() > 0:
            ax.bar(edges[:-1], counts / counts.sum(), width, align="edge", color="grey", alpha=0.35, zorder=1)
        acc = np.nan_to_num(accuracy)
        ax.bar(edges[:-1], acc, width, align="edge", edgecolor="k", lw=0.5, label="accuracy", zorder=2)
        gap = np.nan_to_num(confidence - accuracy)
        ax.bar(edges[:-1], gap, width, bottom=acc, align="edge", color="red", alpha=0.3, zorder=3,
               label="gap to mean confidence")  # fmt: skip
        ax.plot([0, 1], [0, 1], "k--", lw=1, zorder=4)
        ece = diagram["ece"]
        ax.set_title(f"{name}: ECE {_fmt(ece)}%  (n={int(counts.sum())})", fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy; share of samples (grey)")
    axes[0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(f"reliability, {title}", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def _fmt(value: Any, key: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if key in NOT_PERCENT else f"{100 * value:.2f}"


def format_result(result: dict[str, Any]) -> str:
    """``top1=91.20, ..., nll=0.3012`` for a log line (percentages, NLL in nats)."""
    return ", ".join(f"{k}={_fmt(result.get(k), k)}" for k in SCALAR_KEYS)


def result_rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, test result) of the selected model (when selection ran) and of the final epoch."""
    rows = [("final epoch", summary["test_last"])]
    if summary.get("selected_by", "last") != "last":
        rows.insert(0, (f"best {summary['selected_by']} (epoch {summary['best_epoch']})", summary["test"]))
    return rows


def print_table(
    rows: Sequence[tuple[str, dict[str, Any]]], footer: str, title: str = "lt_bench results"
) -> None:
    """One row per (label, result): the figures in percent, NLL in nats."""
    table = Table(title=f"{title} (%; nll in nats)")
    table.add_column("model")
    for key in SCALAR_KEYS:
        table.add_column(key, justify="right")
    for label, result in rows:
        table.add_row(label, *(_fmt(result.get(k), k) for k in SCALAR_KEYS))
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: 80 columns would wrap the figures
        console = Console(width=max(console.width, 132))
    console.print(table)
    console.print(footer)


def print_results(summary: dict[str, Any], run_dir: Path) -> None:
    print_table(result_rows(summary), f"test images: {summary['test']['n']}   run directory: {run_dir}")
