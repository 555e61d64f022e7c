"""Reading runs: every ``summary.json`` under a directory, with the command-line overrides from the
``.hydra/overrides.yaml`` Hydra writes beside it, into :class:`Run` objects; and one spelling per value
(:func:`canonical`), so runs written by overrides and by resolved configs compare equal.

The bottom of :mod:`lt_bench.report`: it imports nothing from the package.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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


def canonical(value: Any) -> str:
    """One spelling per value, so ``5``, ``5.0`` and ``"5"`` from overrides and configs group together."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            return text[1:-1]  # a quoted override value is the string itself
        for number in (int, float):  # float() also reads 1e-4, which YAML 1.1 would keep as text
            try:
                return canonical(number(text))
            except ValueError:
                pass
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered
        return "null" if lowered in ("null", "none", "~") else text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dict):
        # a config group node (e.g. ``loss``) is known by its option name
        return str(value["name"]) if "name" in value else json.dumps(value, sort_keys=True)
    if value is None:
        return "null"
    return str(value)


def lookup(config: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted key in a nested dict."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def parse_overrides(lines: Sequence[str]) -> dict[str, str]:
    """Hydra override strings -> ``{key: value}`` in command-line order.

    ``+key=v`` and ``++key=v`` add or force a key and count as ``key``; deletions (``~key``) carry no value
    and are skipped; ``hydra.*`` overrides are bookkeeping, not configuration.
    """
    parsed: dict[str, str] = {}
    for line in lines:
        text = str(line).strip()
        if not text or text.startswith("~") or "=" not in text:
            continue
        key, value = text.split("=", 1)
        key = key.lstrip("+").strip()
        if key.startswith("hydra.") or key.startswith("hydra/"):
            continue
        parsed[key] = value.strip()
    return parsed


def load_runs(root: Path) -> tuple[list[Run], list[str]]:
    """Every run under ``root`` with a readable summary; also the warnings for the ones skipped."""
    if not root.exists():
        raise ReportError(f"{root} does not exist; pass a run or sweep directory (e.g. multirun/DATE/TIME)")
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory; pass the run or sweep directory that holds it")
    runs: list[Run] = []
    warnings: list[str] = []
    for path in sorted(root.rglob("summary.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            warnings.append(f"skipped {path}: {err}")
            continue
        if not isinstance(summary, dict):
            warnings.append(f"skipped {path}: not a JSON object")
            continue
        if summary.get("status") == "diverged":  # a missing status: finished (summaries before it)
            warnings.append(f"skipped {path}: diverged ({summary.get('reason', 'no reason recorded')})")
            continue
        overrides_file = path.parent / ".hydra" / "overrides.yaml"
        overrides: dict[str, str] = {}
        if overrides_file.exists():
            try:
                overrides = parse_overrides(yaml.safe_load(overrides_file.read_text()) or [])
            except yaml.YAMLError as err:
                warnings.append(f"ignored {overrides_file}: {err}")
        runs.append(Run(path.parent, overrides, needed_fields(summary)))
    if not runs:
        raise ReportError(
            f"no summary.json found under {root}; point it at a run or sweep directory "
            "(e.g. `python -m lt_bench --multirun loss=ce,la seed=0,1,2` writes multirun/DATE/TIME)"
        )
    return runs, warnings


def check_metrics(metrics: Sequence[str]) -> None:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ReportError(
            f"unknown metric(s): {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRICS)}"
        )
