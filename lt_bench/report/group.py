"""Settings: which overrides change the science, and runs grouped into settings over seeds.

A *setting* is what a run computes apart from its seed: its overrides minus ``seed`` and the
execution-only keys (``ckpt_path``, ``logger``, ``trainer.devices``, ``hydra.*``, ...:
:data:`lt_bench.config_nodes.OPERATIONAL_KEYS`), so a resumed or re-logged run stays in its setting.
:func:`setting_of` / :func:`setting_name` give one run's setting from its override list (what a W&B group
can be named by); :func:`swept_keys` and :func:`group_runs` group a sweep's runs by the keys that differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lt_bench.config_nodes import (  # noqa: F401  (setting_of, setting_name: re-exported, the report's API)
    NOT_SWEPT,
    canonical,
    defines_setting,
    flatten_config,
    setting_name,
    setting_of,
)
from lt_bench.report.load import MISSING, ReportError, Run
from lt_bench.stats import MeanStd
from lt_bench.stats import mean_std as _mean_std


@dataclass
class Group:
    """Runs that share every grouping key; ``label`` holds the keys' values in order."""

    label: tuple[str, ...]
    runs: list[Run] = field(default_factory=list)


def swept_keys(runs: Sequence[Run]) -> list[str]:
    """Keys whose value differs across runs, minus the seed and the execution-only keys
    (:func:`defines_setting`), in command-line order.

    Candidates are the override keys; when no run has an overrides file, every key of the resolved config.
    """
    candidates: list[str] = []
    for run in runs:
        for key in run.overrides:
            if key not in candidates:
                candidates.append(key)
    if not candidates:
        for run in runs:
            for key in flatten_config(run.summary.get("config") or {}):
                if key not in candidates:
                    candidates.append(key)
    science = [k for k in candidates if defines_setting(k)]
    return [k for k in science if len({r.value(k) for r in runs}) > 1]


def sort_key(value: str | None) -> tuple[int, float, str]:
    """Values ordered numbers first (numerically), then text, then missing."""
    if value is None:
        return (2, 0.0, "")
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def group_runs(runs: Sequence[Run], keys: Sequence[str]) -> list[Group]:
    """Runs grouped by their values of ``keys``, groups ordered by those values (numbers numerically)."""
    groups: dict[tuple[str, ...], Group] = {}
    for run in runs:
        label = tuple(run.value(k) or MISSING for k in keys)
        groups.setdefault(label, Group(label)).runs.append(run)
    return sorted(groups.values(), key=lambda g: [sort_key(None if v == MISSING else v) for v in g.label])


def check_keys(runs: Sequence[Run], keys: Sequence[str]) -> None:
    """Every ``--by`` key must be known to some run (as an override or in its config)."""
    unknown = [k for k in keys if all(r.value(k) is None for r in runs)]
    if unknown:
        known = sorted({k for r in runs for k in r.overrides})
        hint = f"; overridden keys here: {', '.join(known)}" if known else ""
        raise ReportError(f"--by key(s) not found in any run: {', '.join(unknown)}{hint}")


def group_name(keys: Sequence[str], label: Sequence[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, label, strict=True)) if keys else "all runs"


def find_control(groups: Sequence[Group], keys: Sequence[str], control: str) -> int:
    """Index of the group named ``control``: its ``key=value, ...`` name or its values joined by commas."""
    for i, g in enumerate(groups):
        if control in (group_name(keys, g.label), ",".join(g.label)):
            return i
    names = "; ".join(group_name(keys, g.label) for g in groups)
    raise ReportError(f"--control {control!r} matches no group; the groups are: {names}")


def group_cells(group: Group, metrics: Sequence[str], split: str) -> dict[str, MeanStd]:
    """Mean ± std in percent of each metric over the group's runs."""
    cells = {}
    for metric in metrics:
        values = [run.metric(split, metric) for run in group.runs]
        cells[metric] = _mean_std([None if v is None else 100.0 * v for v in values])
    return cells
