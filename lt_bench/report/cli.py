"""``python -m lt_bench.report DIR``: the command line. :func:`build_report` puts the pieces together
(load -> group -> significance -> render); :func:`main` prints the tables, writes them and the figures to
``--out``, and reports a problem with the input as one line (exit status 2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from lt_bench.report.group import Group, check_keys, find_control, group_runs, swept_keys
from lt_bench.report.load import (
    METRICS,
    SPLITS,
    TEST_BEST,
    ReportError,
    canonical,
    check_metrics,
    load_runs,
    split_title,
)
from lt_bench.report.plots import plot_groups_per_class, plot_heatmap
from lt_bench.report.render import FORMATS, caption, render_significance, render_table
from lt_bench.report.significance import significance


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
        note = (
            f"{split_title(split)}: each run's epoch with the best test top-1 (summary.json "
            "test_best_epoch), chosen on the test set as the CIFAR code bases report it; the honest "
            "figures are --split test (selected on validation, or the final epoch) and test_last"
        )
        table = f"{caption(note, fmt)}\n\n{table}"
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
