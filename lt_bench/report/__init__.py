"""``python -m lt_bench.report DIR``: mean ± std over seeds for every configuration in a sweep.

Finds every ``summary.json`` under DIR, reads each run's command-line overrides from the
``.hydra/overrides.yaml`` Hydra writes beside it (falling back to the resolved ``summary["config"]``),
groups the runs by the swept keys except ``seed`` and the execution-only keys (``ckpt_path``, ``logger``,
``trainer.devices``, ...: :data:`lt_bench.config_nodes.OPERATIONAL_KEYS`), and prints one row per group:
mean ± sample std (ddof=1) in percent, ``n`` runs, the best mean per column marked. Below it, a
significance test over the seeds every group shares: Wilcoxon signed-rank for two groups, Friedman plus
average ranks for three or more. Plots go to ``--out``: per-class accuracy against training count per
group, and a heat map of the first metric when exactly two keys are swept.

One job per module, each importing only the ones above it in this list:

- :mod:`~lt_bench.report.load`: reading run directories (summary.json, .hydra/overrides.yaml) into runs;
- :mod:`~lt_bench.report.group`: settings (:func:`setting_of`, :func:`setting_name`: the overrides that
  change the science) and runs grouped into settings over seeds;
- :mod:`~lt_bench.report.significance`: the tests across groups (:mod:`lt_bench.stats`);
- :mod:`~lt_bench.report.render`: the markdown / csv / LaTeX tables;
- :mod:`~lt_bench.report.plots`: the report's figures;
- :mod:`~lt_bench.report.cli`: :func:`build_report`, the argument parser and :func:`main`.

Everything except :func:`main` and the two ``plot_*`` functions is a pure function of loaded runs, so the
tables can be tested without files.
"""

from lt_bench.report.cli import build_parser, build_report, main
from lt_bench.report.group import (
    NOT_SWEPT,
    Group,
    check_keys,
    defines_setting,
    find_control,
    group_cells,
    group_name,
    group_runs,
    setting_name,
    setting_of,
    swept_keys,
)
from lt_bench.report.load import (
    METRICS,
    MISSING,
    RESULT_FIELDS,
    SPLITS,
    TEST_BEST,
    TEST_BEST_LABEL,
    ReportError,
    Run,
    canonical,
    check_metrics,
    load_runs,
    lookup,
    needed_fields,
    parse_overrides,
    split_result,
    split_title,
)
from lt_bench.report.plots import (
    MAX_CURVES,
    heatmap_grid,
    per_class_curve,
    plot_groups_per_class,
    plot_heatmap,
)
from lt_bench.report.render import FORMATS, format_cell, render_significance, render_table
from lt_bench.report.significance import MetricTest, per_block, significance

__all__ = [
    "FORMATS",
    "MAX_CURVES",
    "METRICS",
    "MISSING",
    "NOT_SWEPT",
    "RESULT_FIELDS",
    "SPLITS",
    "TEST_BEST",
    "TEST_BEST_LABEL",
    "Group",
    "MetricTest",
    "ReportError",
    "Run",
    "build_parser",
    "build_report",
    "canonical",
    "check_keys",
    "check_metrics",
    "defines_setting",
    "find_control",
    "format_cell",
    "group_cells",
    "group_name",
    "group_runs",
    "heatmap_grid",
    "load_runs",
    "lookup",
    "main",
    "needed_fields",
    "parse_overrides",
    "per_block",
    "per_class_curve",
    "plot_groups_per_class",
    "plot_heatmap",
    "render_significance",
    "render_table",
    "setting_name",
    "setting_of",
    "significance",
    "split_result",
    "split_title",
    "swept_keys",
]
