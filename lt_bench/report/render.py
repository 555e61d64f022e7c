"""The tables: the main table (mean ± std per group and metric, best mean marked) and the significance
tests, as markdown, csv or LaTeX (``tabular`` with booktabs rules)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from lt_bench.report.group import Group, group_cells, group_name
from lt_bench.report.load import MISSING
from lt_bench.report.significance import MetricTest
from lt_bench.stats import MeanStd, best_indices

FORMATS = ("md", "csv", "tex")


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
    parts = [caption(title, fmt), _table(header, rows, [set()] * len(rows), fmt, "lrrrl")]
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
            caption(f"Average rank over matched {blocks} (1 = best)", fmt),
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
            holm = (
                f"Holm post-hoc test vs {group_name(keys, groups[control].label)} on {t.metric} "
                f"(Demšar's rank z over {blocks}; rank diff > 0: the control ranks better)"
            )
            parts += [caption(holm, fmt), _table(header, rows, [set()] * len(rows), fmt, "lrrrrl")]
    return "\n\n".join(parts)


def caption(text: str, fmt: str) -> str:
    """A line above a table, as a comment where the format has one."""
    return {"md": f"**{text}**", "tex": f"% {text}", "csv": f"# {text}"}[fmt]
