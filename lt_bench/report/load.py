"""Reading runs: every ``summary.json`` under a directory, with the command-line overrides from the
``.hydra/overrides.yaml`` Hydra writes beside it, into :class:`Run` objects; and one spelling per value
(:func:`canonical`), so runs written by overrides and by resolved configs compare equal.

The bottom of :mod:`lt_bench.report`: of the package it imports only the leaf :mod:`lt_bench.config_nodes`
(where :func:`canonical` and :func:`parse_overrides` live, shared with the loggers' W&B groups).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lt_bench.config_nodes import canonical, parse_overrides  # noqa: F401  (re-exported)

METRICS = ("top1", "balanced_acc", "many", "medium", "few", "gmean")
SPLITS = ("test", "test_last", "val", "test_best")
# test_best reads summary.json's test_best_epoch (trainer.track_test_best=true): each run's epoch with the
# best *test* top-1, the figure the CIFAR code bases report. The report labels it wherever it shows it.
TEST_BEST = "test_best"
TEST_BEST_LABEL = "test-selected (optimistic)"
MISSING = "—"
# what the report reads of a result: its figures and per-class recalls (plotted against class_counts)
RESULT_FIELDS = (*METRICS, "per_class", "n")


class ReportError(Exception):
    """A problem with the input that the user can fix; reported as one line, exit status 2."""


@dataclass
class Run:
    """One finished run: where it is, what was overridden, what it wrote."""

    path: Path
    overrides: dict[str, str]
    summary: dict[str, Any]

    @property
    def seed(self) -> Any:
        if "seed" in self.overrides:
            return canonical(self.overrides["seed"])
        for source in (self.summary, self.summary.get("config") or {}):
            if source.get("seed") is not None:
                return canonical(source["seed"])
        return "0"

    def value(self, key: str) -> str | None:
        """The run's value of ``key`` as text: its override, else the resolved config, else None."""
        raw = self.overrides.get(key)
        if raw is not None and "${" not in raw:  # an interpolation means nothing until resolved
            return canonical(raw)
        found, value = lookup(self.summary.get("config") or {}, key)
        return canonical(value) if found else None

    def result(self, split: str) -> dict[str, Any] | None:
        """The run's result for ``split``: ``summary[split]``, or for ``test_best`` the result of
        ``summary["test_best_epoch"]``."""
        return split_result(self.summary, split)

    def metric(self, split: str, name: str) -> float | None:
        result = self.result(split)
        if not isinstance(result, dict):
            return None
        value = result.get(name)
        if value is None or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        return float(value)


def split_result(summary: dict[str, Any], split: str) -> dict[str, Any] | None:
    if split == TEST_BEST:
        record = summary.get("test_best_epoch")
        result = record.get("result") if isinstance(record, dict) else None
    else:
        result = summary.get(split)
    return result if isinstance(result, dict) else None


def needed_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """The parts of a summary the report reads: ``config``, ``seed``, ``class_counts`` and, of every
    result (``test``, ``test_last``, ``val``, ``test_best_epoch``'s), :data:`RESULT_FIELDS` only. A sweep
    holds many runs; their calibration bins, and the C x C confusion lists of summaries written before the
    matrices moved to ``confusion_<split>.npy``, are dropped as each file is read."""

    def result_only(result: Any) -> Any:
        return {k: result[k] for k in RESULT_FIELDS if k in result} if isinstance(result, dict) else result

    kept: dict[str, Any] = {k: summary[k] for k in ("config", "seed", "class_counts") if k in summary}
    for split in SPLITS:
        if split in summary:
            kept[split] = result_only(summary[split])
    record = summary.get("test_best_epoch")
    if isinstance(record, dict):
        kept["test_best_epoch"] = {**record, "result": result_only(record.get("result"))}
    return kept


def split_title(split: str) -> str:
    """How a table or plot names ``split``: test_best always with its label."""
    return f"{TEST_BEST} — {TEST_BEST_LABEL}" if split == TEST_BEST else split


def lookup(config: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted key in a nested dict."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def is_evaluation(summary: dict[str, Any]) -> bool:
    """Whether a summary is an evaluation's (``python -m lt_bench.eval``: ``split`` and ``checkpoint``), which
    lies beside its run (``RUN/eval/SPLIT-DATE_TIME/``) and is no run of its own."""
    return "split" in summary and "checkpoint" in summary


def _number_list(value: Any, allow_none: bool) -> bool:
    return isinstance(value, list) and all(
        (v is None and allow_none) or (isinstance(v, int | float) and not isinstance(v, bool)) for v in value
    )


def malformed(summary: dict[str, Any]) -> str | None:
    """Why the report cannot use a summary's figures (a per-class list or class counts that are not
    numbers), or None."""
    if "class_counts" in summary and not _number_list(summary["class_counts"], allow_none=False):
        return "class_counts is not a list of numbers"
    for split in SPLITS:
        result = split_result(summary, split)
        if result is not None and "per_class" in result and not _number_list(result["per_class"], True):
            return f"{split} per_class is not a list of numbers"
    return None


def read_overrides(path: Path) -> tuple[dict[str, str], str | None]:
    """The overrides in a ``.hydra/overrides.yaml`` (none when there is no file), and why the file was
    ignored, if it was: not UTF-8, not YAML, not a list of overrides."""
    if not path.exists():
        return {}, None
    try:
        lines = yaml.safe_load(path.read_bytes().decode("utf-8")) or []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        return {}, " ".join(str(err).split())
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        return {}, f"not a list of overrides (it holds {type(lines).__name__} {str(lines)[:40]!r})"
    return parse_overrides(lines), None


def load_runs(root: Path) -> tuple[list[Run], list[str]]:
    """Every run under ``root`` with a readable summary; also the warnings for the ones skipped.
    Evaluations' summaries (``RUN/eval/...``) are not runs: they are counted in one warning."""
    if not root.exists():
        raise ReportError(f"{root} does not exist; pass a run or sweep directory (e.g. multirun/DATE/TIME)")
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory; pass the run or sweep directory that holds it")
    runs: list[Run] = []
    warnings: list[str] = []
    evaluations = 0
    for path in sorted(root.rglob("summary.json")):
        try:
            summary = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, ValueError) as err:  # ValueError: not UTF-8, or not JSON
            warnings.append(f"skipped {path}: {' '.join(str(err).split())}")
            continue
        if not isinstance(summary, dict):
            warnings.append(f"skipped {path}: not a JSON object")
            continue
        if is_evaluation(summary):
            evaluations += 1
            continue
        if summary.get("status") == "diverged":  # a missing status: finished (summaries before it)
            warnings.append(f"skipped {path}: diverged ({summary.get('reason', 'no reason recorded')})")
            continue
        problem = malformed(summary)
        if problem is not None:
            warnings.append(f"skipped {path}: {problem}")
            continue
        overrides_file = path.parent / ".hydra" / "overrides.yaml"
        overrides, ignored = read_overrides(overrides_file)
        if ignored is not None:
            warnings.append(f"ignored {overrides_file}: {ignored}; the run's resolved config is used")
        runs.append(Run(path.parent, overrides, needed_fields(summary)))
    if evaluations:
        warnings.append(
            f"left out {evaluations} evaluation summar{'y' if evaluations == 1 else 'ies'} "
            "(python -m lt_bench.eval, RUN/eval/...): they are not training runs"
        )
    if not runs:
        notes = [w for w in warnings if w.startswith(("skipped ", "left out "))]
        found = (
            f"no summary.json of a training run could be used under {root} ({'; '.join(notes)})"
            if notes
            else f"no summary.json found under {root}"
        )
        raise ReportError(
            f"{found}; point it at a run or sweep directory (e.g. `python -m lt_bench --multirun "
            "loss=ce,la seed=0,1,2` writes multirun/DATE/TIME)"
        )
    return runs, warnings


def check_metrics(metrics: Sequence[str]) -> None:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ReportError(
            f"unknown metric(s): {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRICS)}"
        )
