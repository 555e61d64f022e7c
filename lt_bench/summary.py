"""What a run leaves behind: summary.json and the files beside it (written atomically, with the umask's
mode), the plots, and the terminal table. Training (:mod:`lt_bench.train`) and evaluation
(:mod:`lt_bench.eval`) write through the same :func:`write_summary`.

summary.json holds figures, not matrices: a result's ``confusion`` is the name of the ``.npy`` file beside
it (``confusion_<split>.npy``, int64 [C, C], rows = true class, columns = predicted; ``numpy.load``), or
null when the matrix was not kept (more than :data:`lt_bench.metrics.CONFUSION_MAX_CLASSES` classes).
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from lt_bench import plots
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


def hardware(device: Any) -> dict[str, str]:
    """Where a run's figures were computed (``device``: the torch.device the model is on): a CPU and a GPU
    round bfloat16 differently, so a table that mixes them says which cells came from which."""
    import torch  # here: summary.json's readers need no torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_model() or platform.machine() or "unknown"
    return {"device": device.type, "name": name, "torch": torch.__version__}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return platform.processor()


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


def write_summary(
    run_dir: Path, summary: dict[str, Any], class_counts: Sequence[int], key: str = "test"
) -> dict[str, Any]:
    """summary.json, the confusion matrices beside it, and the plots of ``summary[key]``:
    ``per_class_accuracy.png`` and ``reliability.png``. summary.json is written last (atomically): once it
    exists, every file it names is in place. Returns ``{file name: confusion matrix}``."""
    matrices = split_off_confusion(summary)
    for name, matrix in matrices.items():
        write_npy(run_dir / name, np.asarray(matrix, dtype=np.int64))
    result = summary[key]
    title = run_plot_title(summary, key)
    plot_run_per_class(result, class_counts, run_dir / "per_class_accuracy.png", title)
    if result.get("calibration"):
        plot_reliability(result["calibration"], run_dir / "reliability.png", title)
    write_json(run_dir / "summary.json", summary)
    return matrices


def plot_run_per_class(result: dict[str, Any], class_counts: list[int], path: Path, title: str = "") -> None:
    """Per-class accuracy of one run against training count, titled with its balanced accuracy and
    ``title``: which split and which model (:func:`run_plot_title`)."""
    accuracy = [math.nan if r is None else r for r in result["per_class"]]
    heading = f"per-class accuracy (balanced {_fmt(result.get('balanced_acc'))}%)"
    if title:  # on one line while it fits the figure's width
        heading += (", " if len(heading) + len(title) < 80 else "\n") + title
    plot_per_class([Curve("", class_counts, accuracy)], path, heading)


def plot_reliability(calibration: dict[str, Any], path: Path, title: str = "") -> None:
    """Reliability diagrams, all classes and per many/medium/few group
    (:func:`lt_bench.plots.reliability_figure`): accuracy per confidence bin, its gap to the mean
    confidence, the share of samples per bin."""
    diagrams = {name: calibration[name] for name in ("all", *GROUPS)}
    plots.plot_reliability(diagrams, int(calibration["bins"]), path, title)


def run_plot_title(summary: dict[str, Any], key: str) -> str:
    """Which split and which model the plots of ``summary[key]`` show: ``test split, best val/top1 model
    (epoch 12)``, ``test split, final-epoch model (epoch 29)``, or after lt_bench.eval ``val split,
    checkpoint of epoch 12``."""
    if "checkpoint_epoch" in summary:  # lt_bench.eval: one checkpoint, evaluated on summary["split"]
        epoch = summary.get("checkpoint_epoch")
        return f"{key} split, checkpoint" + ("" if epoch is None else f" of epoch {epoch}")
    selected_by = summary.get("selected_by", "last")
    epoch = summary.get("best_epoch")
    at = "" if epoch is None else f" (epoch {epoch})"
    if key == "test" and selected_by != "last":
        return f"{key} split, best {selected_by} model{at}"
    if key in ("test", "test_last"):
        return f"test split, final-epoch model{at if key == 'test' else ''}"
    return f"{key} split"


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
