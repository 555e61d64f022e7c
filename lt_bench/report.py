"""``python -m lt_bench.report DIR``: mean ± std over seeds for every configuration in a sweep.

Finds every ``summary.json`` under DIR, reads each run's command-line overrides from the
``.hydra/overrides.yaml`` Hydra writes beside it (falling back to the resolved ``summary["config"]``),
groups the runs by the swept keys except ``seed`` and the execution-only keys (``ckpt_path``, ``logger``,
``trainer.devices``, ...: :data:`lt_bench.config_nodes.OPERATIONAL_KEYS`), and prints one row per group: mean ±
sample std (ddof=1) in percent, ``n`` runs, the best mean per column marked. Below it, a significance test
over the seeds every group shares: Wilcoxon signed-rank for two groups, Friedman plus average ranks for
three or more. Plots go to ``--out``: per-class accuracy against training count per group, and a heat map of
the first metric when exactly two keys are swept.

Everything except :func:`main` and the two ``plot_*`` functions is a pure function of loaded runs, so the
tables can be tested without files.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lt_bench.config_nodes import flatten_config, is_operational
from lt_bench.plots import Curve, plot_per_class
from lt_bench.stats import (
    MeanStd,
    PosthocRow,
    TestResult,
    average_ranks,
    best_indices,
    compare_groups,
    holm_vs_control,
    matched_blocks,
)
from lt_bench.stats import mean_std as _mean_std

METRICS = ("top1", "balanced_acc", "many", "medium", "few", "gmean")
SPLITS = ("test", "test_last", "val", "test_best")
# test_best reads summary.json's test_best_epoch (trainer.track_test_best=true): each run's epoch with the
# best *test* top-1, the figure the CIFAR code bases report. The report labels it wherever it shows it.
TEST_BEST = "test_best"
TEST_BEST_LABEL = "test-selected (optimistic)"
FORMATS = ("md", "csv", "tex")
# The seed is what we average over; the execution-only keys (lt_bench.config_nodes.OPERATIONAL_KEYS: ckpt_path,
# logger, trainer.devices, hydra.*, ...) never define a configuration either, so a resumed or re-logged
# run stays in its configuration's group.
NOT_SWEPT = ("seed",)
MAX_CURVES = 10  # more lines than this make the per-class plot unreadable
MISSING = "—"


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


@dataclass
class Group:
    """Runs that share every grouping key; ``label`` holds the keys' values in order."""

    label: tuple[str, ...]
    runs: list[Run] = field(default_factory=list)


# -- reading -------------------------------------------------------------------------------------------
def split_result(summary: dict[str, Any], split: str) -> dict[str, Any] | None:
    if split == TEST_BEST:
        record = summary.get("test_best_epoch")
        result = record.get("result") if isinstance(record, dict) else None
    else:
        result = summary.get(split)
    return result if isinstance(result, dict) else None


# what the report reads of a result: its figures and per-class recalls (plotted against class_counts)
RESULT_FIELDS = (*METRICS, "per_class", "n")


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


# -- grouping ------------------------------------------------------------------------------------------
def swept_keys(runs: Sequence[Run]) -> list[str]:
    """Keys whose value differs across runs, minus the seed and the execution-only keys
    (:func:`lt_bench.config_nodes.is_operational`), in command-line order.

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
    science = [k for k in candidates if k not in NOT_SWEPT and not is_operational(k)]
    return [k for k in science if len({r.value(k) for r in runs}) > 1]


def _sort_key(value: str | None) -> tuple[int, float, str]:
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
    return sorted(groups.values(), key=lambda g: [_sort_key(None if v == MISSING else v) for v in g.label])


def check_keys(runs: Sequence[Run], keys: Sequence[str]) -> None:
    """Every ``--by`` key must be known to some run (as an override or in its config)."""
    unknown = [k for k in keys if all(r.value(k) is None for r in runs)]
    if unknown:
        known = sorted({k for r in runs for k in r.overrides})
        hint = f"; overridden keys here: {', '.join(known)}" if known else ""
        raise ReportError(f"--by key(s) not found in any run: {', '.join(unknown)}{hint}")


def check_metrics(metrics: Sequence[str]) -> None:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ReportError(
            f"unknown metric(s): {', '.join(unknown) or '(none given)'}; choose from {', '.join(METRICS)}"
        )


# -- statistics over groups ----------------------------------------------------------------------------
def group_cells(group: Group, metrics: Sequence[str], split: str) -> dict[str, MeanStd]:
    """Mean ± std in percent of each metric over the group's runs."""
    cells = {}
    for metric in metrics:
        values = [run.metric(split, metric) for run in group.runs]
        cells[metric] = _mean_std([None if v is None else 100.0 * v for v in values])
    return cells


def per_block(group: Group, metric: str, split: str, block_by: str | None = None) -> dict[str, float | None]:
    """``block -> value`` (percent), a block being a seed, or with ``block_by`` a value of that key (a data
    set, an imbalance factor: ARConvL's protocol ranks methods over data sets). Runs that share a block
    are averaged so each block is one value."""
    values: dict[str, list[float]] = {}
    for run in group.runs:
        value = run.metric(split, metric)
        if value is not None:
            block = run.seed if block_by is None else run.value(block_by)
            values.setdefault(block, []).append(100.0 * value)
    return {block: math.fsum(v) / len(v) for block, v in values.items()}


@dataclass
class MetricTest:
    metric: str
    result: TestResult
    ranks: list[float] | None  # average rank per group (1 = best), three or more groups only
    posthoc: list[PosthocRow] | None = None  # Holm against the control group, when one is chosen


def find_control(groups: Sequence[Group], keys: Sequence[str], control: str) -> int:
    """Index of the group named ``control``: its ``key=value, ...`` name or its values joined by commas."""
    for i, g in enumerate(groups):
        if control in (group_name(keys, g.label), ",".join(g.label)):
            return i
    names = "; ".join(group_name(keys, g.label) for g in groups)
    raise ReportError(f"--control {control!r} matches no group; the groups are: {names}")


def significance(
    groups: Sequence[Group],
    metrics: Sequence[str],
    split: str,
    block_by: str | None = None,
    control: int | None = None,
) -> list[MetricTest]:
    """One test per metric across the blocks every group shares; Holm vs ``control`` after Friedman."""
    tests = []
    for metric in metrics:
        _, blocks = matched_blocks([per_block(g, metric, split, block_by) for g in groups])
        result = compare_groups(blocks, len(groups))
        ranks = average_ranks(blocks) if len(groups) >= 3 and blocks else None
        posthoc = holm_vs_control(blocks, control) if control is not None and blocks else None
        tests.append(MetricTest(metric, result, ranks, posthoc))
    return tests


# -- rendering -----------------------------------------------------------------------------------------
def format_cell(cell: MeanStd, runs: int) -> str:
    if cell.n == 0:
        return MISSING
    text = f"{cell.mean:.2f}" if cell.n < 2 else f"{cell.mean:.2f} ± {cell.std:.2f}"
    return text if cell.n == runs else f"{text} (n={cell.n})"


def _fmt_number(value: float | None, digits: int = 4) -> str:
    return MISSING if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _tex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(char, repl)
    return text.replace("±", r"$\pm$").replace(MISSING, "--")


def _table(header: list[str], rows: list[list[str]], bold: list[set[int]], fmt: str, align: str) -> str:
    """A table in ``fmt``; ``bold[i]`` are the cells of row i to emphasise; ``align`` is l/r per column."""
    if fmt == "md":
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---:" if a == "r" else "---" for a in align),
        ]
        lines[-1] += "|"
        for row, marks in zip(rows, bold, strict=True):
            cells = [f"**{c}**" if i in marks else c for i, c in enumerate(row)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)
    if fmt == "tex":
        lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(map(_tex_escape, header)) + r" \\"]
        lines.append(r"\midrule")
        for row, marks in zip(rows, bold, strict=True):
            cells = [
                rf"\textbf{{{_tex_escape(c)}}}" if i in marks else _tex_escape(c) for i, c in enumerate(row)
            ]
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row, marks in zip(rows, bold, strict=True):
        writer.writerow([f"{c}*" if i in marks else c for i, c in enumerate(row)])
    return buffer.getvalue().rstrip("\n")


def render_table(
    groups: Sequence[Group], keys: Sequence[str], metrics: Sequence[str], split: str, fmt: str
) -> str:
    """The main table: one row per group, best mean per metric column marked."""
    all_cells = [group_cells(g, metrics, split) for g in groups]
    # with a single group there is nothing to be best against
    best = {m: best_indices([c[m].mean for c in all_cells]) if len(groups) > 1 else set() for m in metrics}
    label_header = list(keys) or ["runs"]
    labels = [list(g.label) or ["all"] for g in groups]
    if fmt == "csv":
        # numbers stay parseable: one column for the mean (starred when best), one for the std
        header = [*label_header, "n"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
        rows, bold = [], []
        for i, (label, g, cells) in enumerate(zip(labels, groups, all_cells, strict=True)):
            row = [*label, str(len(g.runs))]
            marks = set()
            for m in metrics:
                c = cells[m]
                if i in best[m]:
                    marks.add(len(row))
                row += [_fmt_csv(c.mean), _fmt_csv(c.std)]
            rows.append(row)
            bold.append(marks)
        return _table(header, rows, bold, "csv", "")
    header = [*label_header, "n", *metrics]
    offset = len(label_header) + 1
    rows = [
        [*label, str(len(g.runs)), *(format_cell(cells[m], len(g.runs)) for m in metrics)]
        for label, g, cells in zip(labels, groups, all_cells, strict=True)
    ]
    bold = [{offset + j for j, m in enumerate(metrics) if i in best[m]} for i in range(len(groups))]
    align = "l" * len(label_header) + "r" * (1 + len(metrics))
    return _table(header, rows, bold, fmt, align)


def _fmt_csv(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.2f}"


def group_name(keys: Sequence[str], label: Sequence[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, label, strict=True)) if keys else "all runs"


def render_significance(
    groups: Sequence[Group],
    keys: Sequence[str],
    tests: Sequence[MetricTest],
    fmt: str,
    blocks: str = "seeds",
) -> str:
    """The tests per metric, for three or more groups the average rank of each group per metric, and the
    Holm post-hoc comparison with the control group when one was chosen."""
    if len(groups) < 2:
        return ""
    if len(groups) == 2:
        a, b = (group_name(keys, g.label) for g in groups)
        title = f"Wilcoxon signed-rank test (two-sided) over matched {blocks}: {a} vs {b}"
    else:
        title = f"Friedman test over matched {blocks} ({len(groups)} groups)"
    header = ["metric", "statistic", "p", "seeds", "note"]
    rows = [
        [
            t.metric,
            _fmt_number(t.result.statistic),
            _fmt_number(t.result.p, 3),
            str(t.result.n),
            t.result.note,
        ]
        for t in tests
    ]
    parts = [_caption(title, fmt), _table(header, rows, [set()] * len(rows), fmt, "lrrrl")]
    ranked = [t for t in tests if t.ranks is not None]
    if ranked:
        label_header = list(keys) or ["runs"]
        offset = len(label_header)
        best = {t.metric: best_indices(t.ranks or [], higher_is_better=False) for t in ranked}
        rank_rows = [
            [*g.label, *(f"{t.ranks[i]:.2f}" for t in ranked if t.ranks is not None)]
            for i, g in enumerate(groups)
        ]
        bold = [{offset + j for j, t in enumerate(ranked) if i in best[t.metric]} for i in range(len(groups))]
        align = "l" * offset + "r" * len(ranked)
        parts += [
            _caption(f"Average rank over matched {blocks} (1 = best)", fmt),
            _table([*label_header, *(t.metric for t in ranked)], rank_rows, bold, fmt, align),
        ]
    for t in tests:
        if t.posthoc:
            control = next(i for i in range(len(groups)) if i not in {r.group for r in t.posthoc})
            header = ["group", "rank diff", "z", "p", "p (Holm)", "at 0.05"]
            rows = [
                [
                    group_name(keys, groups[r.group].label),
                    f"{r.rank_difference:+.2f}",
                    f"{r.z:.3f}",
                    _fmt_number(r.p, 3),
                    _fmt_number(r.p_holm, 3),
                    "differs" if r.p_holm <= 0.05 else "—",
                ]
                for r in t.posthoc
            ]
            caption = (
                f"Holm post-hoc test vs {group_name(keys, groups[control].label)} on {t.metric} "
                f"(Demšar's rank z over {blocks}; rank diff > 0: the control ranks better)"
            )
            parts += [_caption(caption, fmt), _table(header, rows, [set()] * len(rows), fmt, "lrrrrl")]
    return "\n\n".join(parts)


def _caption(text: str, fmt: str) -> str:
    return {"md": f"**{text}**", "tex": f"% {text}", "csv": f"# {text}"}[fmt]


# -- plots ---------------------------------------------------------------------------------------------
def per_class_curve(group: Group, split: str) -> tuple[list[float], list[float]]:
    """(training count, mean recall over the group's runs) per class, NaN where no run has a value."""
    counts: list[list[float]] = []
    recalls: list[list[float]] = []
    for run in group.runs:
        result = run.result(split)
        class_counts = run.summary.get("class_counts")
        if not isinstance(result, dict) or not result.get("per_class") or not class_counts:
            continue
        counts.append([float(c) for c in class_counts])
        recalls.append([math.nan if r is None else float(r) for r in result["per_class"]])
    if not counts:
        return [], []
    n_classes = len(counts[0])

    def nanmean(column: list[float]) -> float:
        finite = [v for v in column if math.isfinite(v)]
        return math.fsum(finite) / len(finite) if finite else math.nan

    mean_counts = [nanmean([c[j] for c in counts if len(c) == n_classes]) for j in range(n_classes)]
    mean_recalls = [nanmean([r[j] for r in recalls if len(r) == n_classes]) for j in range(n_classes)]
    return mean_counts, mean_recalls


def heatmap_grid(
    groups: Sequence[Group], metric: str, split: str
) -> tuple[list[str], list[str], list[list[float]]]:
    """Rows = values of the first key, columns = values of the second, cells = mean metric (percent)."""
    rows = sorted({g.label[0] for g in groups}, key=_sort_key)
    cols = sorted({g.label[1] for g in groups}, key=_sort_key)
    grid = [[math.nan] * len(cols) for _ in rows]
    for g in groups:
        grid[rows.index(g.label[0])][cols.index(g.label[1])] = group_cells(g, [metric], split)[metric].mean
    return rows, cols, grid


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_groups_per_class(
    groups: Sequence[Group], keys: Sequence[str], split: str, metric: str, path: Path
) -> None:
    """Per-class recall against training count, one line per group (the best MAX_CURVES by ``metric``)."""
    chosen = list(groups)
    title = f"per-class {split_title(split)} accuracy vs training count (mean over seeds)"
    if len(chosen) > MAX_CURVES:
        chosen.sort(key=lambda g: -_nan_to(group_cells(g, [metric], split)[metric].mean, -1.0))
        chosen = chosen[:MAX_CURVES]
        title += f"\n{MAX_CURVES} best of {len(groups)} groups by {metric}"
    curves = [Curve(group_name(keys, g.label), *per_class_curve(g, split)) for g in chosen]
    plot_per_class([c for c in curves if c.counts], path, title)


def _nan_to(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def plot_heatmap(groups: Sequence[Group], keys: Sequence[str], metric: str, split: str, path: Path) -> None:
    """Mean ``metric`` over seeds for every pair of values of the two swept keys."""
    import numpy as np

    plt = _pyplot()
    rows, cols, grid = heatmap_grid(groups, metric, split)
    data = np.ma.masked_invalid(np.asarray(grid, dtype=float))
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 2.5, 0.8 * len(rows) + 2))
    image = ax.imshow(data, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(keys[1])
    ax.set_ylabel(keys[0])
    finite = data.compressed()
    middle = float(finite.mean()) if finite.size else 0.0
    for i in range(len(rows)):
        for j in range(len(cols)):
            if math.isfinite(grid[i][j]):
                color = "black" if grid[i][j] > middle else "white"
                ax.text(j, i, f"{grid[i][j]:.1f}", ha="center", va="center", fontsize=8, color=color)
    fig.colorbar(image, ax=ax, label=f"{metric} (%)")
    ax.set_title(f"{split_title(split)} {metric} (%), mean over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- command line --------------------------------------------------------------------------------------
def _optuna_line(root: Path) -> str | None:
    """The Optuna sweeper's best trial, when ``root`` is its sweep directory."""
    path = root / "optimization_results.yaml"
    if not path.exists():
        return None
    try:
        result = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return None
    params = ", ".join(f"{k}={canonical(v)}" for k, v in (result.get("best_params") or {}).items())
    return f"optuna best value {result.get('best_value')} with {params}"


def build_report(
    root: Path,
    metrics: Sequence[str] = METRICS,
    by: Sequence[str] | None = None,
    fmt: str = "md",
    split: str = "test",
    block_by: str | None = None,
    control: str | None = None,
) -> tuple[str, str, list[Group], list[str], list[str]]:
    """(main table, significance text, groups, grouping keys, warnings) for the runs under ``root``."""
    check_metrics(metrics)
    if fmt not in FORMATS:
        raise ReportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if split not in SPLITS:
        raise ReportError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    runs, warnings = load_runs(root)
    if not any(r.result(split) is not None for r in runs):
        raise ReportError(
            f"no run under {root} has a {split!r} result (val exists only with dataset.val_fraction > 0, "
            "test_best only with trainer.track_test_best=true)"
        )
    if by is None:
        keys = [k for k in swept_keys(runs) if k != block_by]
    else:
        keys = list(by)
        check_keys(runs, keys)
    if block_by is not None:
        check_keys(runs, [block_by])
        if block_by in keys:
            raise ReportError(f"--block-by {block_by} cannot also group the runs (--by); drop it from --by")
    groups = group_runs(runs, keys)
    table = render_table(groups, keys, metrics, split, fmt)
    if split == TEST_BEST:  # never shown unlabelled: the caption travels with the table into report.*
        caption = (
            f"{split_title(split)}: each run's epoch with the best test top-1 (summary.json "
            "test_best_epoch), chosen on the test set as the CIFAR code bases report it; the honest "
            "figures are --split test (selected on validation, or the final epoch) and test_last"
        )
        table = f"{_caption(caption, fmt)}\n\n{table}"
    control_index = None if control is None else find_control(groups, keys, control)
    tests = significance(groups, metrics, split, block_by, control_index)
    blocks = "seeds" if block_by is None else f"values of {block_by} (mean over seeds)"
    return table, render_significance(groups, keys, tests, fmt, blocks), groups, keys, warnings


def _split_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lt_bench.report",
        description="Mean ± std over seeds per configuration of a run or sweep directory, "
        "with Wilcoxon/Friedman tests and plots.",
    )
    parser.add_argument(
        "dir", type=Path, help="run or sweep directory (searched recursively for summary.json)"
    )
    parser.add_argument(
        "--metric",
        default=",".join(METRICS),
        help=f"comma-separated metrics; the first drives the heat map (default {','.join(METRICS)})",
    )
    parser.add_argument(
        "--by", default=None, help="comma-separated keys to group by (default: every swept key except seed)"
    )
    parser.add_argument("--format", default="md", choices=FORMATS, help="table format (default md)")
    parser.add_argument(
        "--split",
        default="test",
        choices=SPLITS,
        help="which result of summary.json: test (selected model, default), test_last (final epoch), val, "
        "test_best (each run's best test epoch: test-selected, so optimistic; trainer.track_test_best=true)",
    )
    parser.add_argument(
        "--block-by",
        default=None,
        help="key whose values are the blocks of the Friedman test (default: seeds), e.g. "
        "dataset.imbalance_factor to rank methods over settings as ARConvL does",
    )
    parser.add_argument(
        "--control",
        default=None,
        help="group to compare every other group with (Holm post-hoc after Friedman), e.g. method=arconvl",
    )
    parser.add_argument("--out", type=Path, default=None, help="where tables and plots go (default: DIR)")
    parser.add_argument("--no-plots", action="store_true", help="write tables only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    metrics = _split_list(args.metric) or []
    try:
        table, tests, groups, keys, warnings = build_report(
            args.dir, metrics, _split_list(args.by), args.format, args.split, args.block_by, args.control
        )
        for line in warnings:
            print(f"lt_bench.report: warning: {line}", file=sys.stderr)
        print(table)
        if tests:
            print()
            print(tests)
        optuna = _optuna_line(args.dir)
        if optuna:
            print(f"\n{optuna}", file=sys.stderr)
        out = args.out or args.dir
        try:
            out.mkdir(parents=True, exist_ok=True)
            written = [out / f"report.{args.format}"]
            written[0].write_text(table + "\n")
            if tests:
                written.append(out / f"significance.{args.format}")
                written[-1].write_text(tests + "\n")
            if not args.no_plots:
                written.append(out / "per_class_vs_count.png")
                plot_groups_per_class(groups, keys, args.split, metrics[0], written[-1])
                if len(keys) == 2:
                    written.append(out / f"heatmap_{metrics[0]}.png")
                    plot_heatmap(groups, keys, metrics[0], args.split, written[-1])
        except OSError as err:
            raise ReportError(f"cannot write to {out}: {err.strerror or err}") from None
        print(f"\nwrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    except ReportError as err:
        print(f"lt_bench.report: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
