"""``lt_bench.report`` and ``lt_bench.stats``: statistics against hand-computed numbers and scipy, tables
from fake sweep directories (summary.json + .hydra/overrides.yaml as Hydra and train.py write them)."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats as sps

from lt_bench import report
from lt_bench.report import (
    Group,
    Run,
    build_report,
    canonical,
    group_runs,
    heatmap_grid,
    load_runs,
    main,
    parse_overrides,
    per_class_curve,
    swept_keys,
)
from lt_bench.stats import (
    average_ranks,
    best_indices,
    compare_groups,
    friedman,
    matched_blocks,
    mean_std,
    wilcoxon_signed_rank,
)
from tests.helpers import ROOT

COUNTS = [400, 100, 10]


def write_run(
    root: Path,
    name: str,
    overrides: list[str] | None,
    top1: float,
    seed: int = 0,
    per_class: list[float] | None = None,
    config: dict | None = None,
    **metrics: float,
) -> Path:
    """A run directory as train.py + Hydra leave it (only the parts the report reads)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    result = {"top1": top1, "balanced_acc": metrics.get("balanced_acc", top1), "many": 0.9, "medium": 0.5}
    result.update(few=metrics.get("few", 0.1), gmean=metrics.get("gmean", 0.3))
    result.update(per_class=per_class or [0.9, 0.5, 0.1], n=300, confusion=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    summary = {
        "class_counts": COUNTS,
        "seed": seed,
        "test": result,
        "test_last": result,
        "epochs": 1,
        "config": config or {"seed": seed, "loss": {"name": "ce"}, "schedule": {"e0": 5, "rho": 5.0}},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    if overrides is not None:
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return run_dir


@pytest.fixture
def two_losses(tmp_path: Path) -> Path:
    """loss=ce vs loss=la over seeds 0, 1, 2 (top-1 in fractions, as summary.json holds them)."""
    values = {"ce": [0.80, 0.84, 0.82], "la": [0.85, 0.86, 0.90]}
    job = 0
    for loss, tops in values.items():
        for seed, top1 in enumerate(tops):
            write_run(
                tmp_path, str(job), [f"loss={loss}", f"seed={seed}", "trainer.max_epochs=1"], top1, seed
            )
            job += 1
    return tmp_path


# -- statistics ----------------------------------------------------------------------------------------
def test_mean_std_is_the_sample_std_by_hand():
    # deviations -0.02, +0.02, 0: sum of squares 0.0008, / (n - 1) = 0.0004, sqrt = 0.02
    result = mean_std([0.80, 0.84, 0.82])
    assert result.mean == pytest.approx(0.82)
    assert result.std == pytest.approx(0.02)
    assert result.n == 3
    values = [71.3, 69.9, 72.4, 70.0]
    assert mean_std(values).std == pytest.approx(statistics.stdev(values))


def test_mean_std_leaves_out_missing_values_and_has_no_std_for_one():
    assert mean_std([None, 0.5, float("nan"), 0.7]).n == 2
    one = mean_std([0.5])
    assert one.mean == 0.5 and math.isnan(one.std) and one.n == 1
    assert mean_std([]).n == 0 and math.isnan(mean_std([]).mean)


def test_best_indices_marks_every_tie_and_ignores_nan():
    assert best_indices([0.1, 0.3, 0.3, float("nan")]) == {1, 2}
    assert best_indices([2.0, 1.0, 1.0], higher_is_better=False) == {1, 2}
    assert best_indices([float("nan")]) == set()


def test_wilcoxon_matches_the_exact_distribution_by_hand():
    # |d| ranks 1..6, the only negative difference has rank 2: W- = 2, W+ = 19, statistic = min = 2.
    # Rank-sum subsets <= 2 out of 2^6: {}, {1}, {2} -> one-sided 3/64, two-sided 6/64.
    a = [1.0, 0.0, 3.0, 4.0, 5.0, 6.0]
    b = [0.0, 2.0, 0.0, 0.0, 0.0, 0.0]
    result = wilcoxon_signed_rank(a, b)
    assert result.statistic == 2
    assert result.p == pytest.approx(6 / 64)
    assert result.n == 6 and result.note == ""
    reference = sps.wilcoxon(a, b)
    assert (result.statistic, result.p) == pytest.approx((reference.statistic, reference.pvalue))


def test_wilcoxon_on_few_seeds_says_p_cannot_be_small():
    result = wilcoxon_signed_rank([0.9, 0.8, 0.85], [0.7, 0.6, 0.65])
    assert result.p == pytest.approx(0.25)  # all three differences positive: 2 / 2^3
    assert "only 3 non-zero pairs" in result.note and "0.25" in result.note


def test_wilcoxon_with_identical_or_tied_pairs():
    same = wilcoxon_signed_rank([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same.statistic is None and same.p is None and "identical" in same.note
    tied = wilcoxon_signed_rank([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert "1 tied pair(s) dropped" in tied.note
    assert tied.p == pytest.approx(2 / 64)  # six positive non-zero differences remain
    empty = wilcoxon_signed_rank([], [])
    assert empty.p is None and "no seed" in empty.note


def test_friedman_and_average_ranks_by_hand():
    # group A best, B second, C third on every one of 4 seeds: rank sums 4, 8, 12;
    # chi2 = 12 / (n k (k+1)) * sum R^2 - 3 n (k+1) = 12/48 * 224 - 48 = 8; df = 2 -> p = exp(-8/2)
    blocks = [[0.9, 0.8, 0.7], [0.85, 0.8, 0.6], [0.95, 0.9, 0.1], [0.7, 0.65, 0.6]]
    result = friedman(blocks)
    assert result.statistic == pytest.approx(8.0)
    assert result.p == pytest.approx(math.exp(-4.0))
    assert "chi-square approximation" in result.note  # 4 seeds: the approximation is only a guide
    columns = list(zip(*blocks, strict=True))
    assert result.p == pytest.approx(sps.friedmanchisquare(*columns).pvalue)
    assert average_ranks(blocks) == [1.0, 2.0, 3.0]
    assert average_ranks([[0.9, 0.9, 0.8]]) == [1.5, 1.5, 3.0]
    assert average_ranks([[0.9, 0.9, 0.8]], higher_is_better=False) == [2.5, 2.5, 1.0]


def test_friedman_degenerate_inputs_give_a_note_not_an_error():
    assert "tie" in friedman([[0.5, 0.5, 0.5], [0.7, 0.7, 0.7]]).note
    assert "at least 2 seeds" in friedman([[0.5, 0.6, 0.7]]).note
    assert compare_groups([], 3).p is None
    assert compare_groups([[1.0]], 1).test == "none"
    with pytest.raises(ValueError):
        friedman([[0.1, 0.2]])


def test_matched_blocks_keeps_only_seeds_every_group_has():
    seeds, blocks = matched_blocks([{0: 1.0, 1: 2.0, 2: 3.0}, {1: 5.0, 2: 6.0, 3: 7.0, 0: None}])
    assert seeds == [1, 2]
    assert blocks == [[2.0, 5.0], [3.0, 6.0]]


# -- reading and grouping ------------------------------------------------------------------------------
def test_parse_overrides_handles_hydra_prefixes():
    parsed = parse_overrides(["loss=la", "+loss.gamma=2", "++seed=3", "~loss.tau", "hydra.verbose=true"])
    assert parsed == {"loss": "la", "loss.gamma": "2", "seed": "3"}


def test_canonical_spells_equal_values_alike():
    assert canonical("5") == canonical(5) == canonical(5.0) == "5"
    assert canonical("1e-4") == canonical(0.0001)
    assert canonical({"name": "ldam", "s": 30}) == "ldam"
    assert canonical("'abc'") == "abc" and canonical("True") == "true" and canonical(None) == "null"


def test_default_grouping_is_the_varying_overrides_without_seed(two_losses):
    runs, warnings = load_runs(two_losses)
    assert len(runs) == 6 and warnings == []
    assert swept_keys(runs) == ["loss"]  # seed averaged over, trainer.max_epochs=1 the same everywhere
    groups = group_runs(runs, ["loss"])
    assert [g.label for g in groups] == [("ce",), ("la",)]
    assert sorted(r.seed for r in groups[1].runs) == ["0", "1", "2"]


def test_execution_only_keys_do_not_split_a_configuration(tmp_path):
    """A resumed run (ckpt_path, another logger, devices, progress bar, workers) is in its configuration's
    group; a key that changes the result still splits."""
    write_run(tmp_path, "fresh", ["loss=ce", "seed=0"], 0.80)
    resumed = [
        "loss=ce",
        "seed=1",
        "ckpt_path=auto",
        "trainer.enable_progress_bar=false",
        "print_table=false",
        "logger=wandb",
        "+logger.tags=[a]",
        "dataset.num_workers=0",
        "trainer.devices=2",
        "overwrite=true",
        "hydra.run.dir=x",
    ]
    write_run(tmp_path, "resumed", resumed, 0.82, seed=1)
    write_run(tmp_path, "other", ["loss=la", "seed=0"], 0.85)
    runs, _ = load_runs(tmp_path)
    assert swept_keys(runs) == ["loss"]
    groups = group_runs(runs, swept_keys(runs))
    assert [(g.label, len(g.runs)) for g in groups] == [(("ce",), 2), (("la",), 1)]
    # also when the keys come from the resolved configs (no overrides files)
    for i, (path, top1) in enumerate([("a", None), ("b", "PATH")]):
        config = {"seed": 0, "ckpt_path": top1, "trainer": {"devices": i + 1}, "logger": {"name": "csv"}}
        write_run(tmp_path / "configs", path, None, 0.5, config=config)
    assert swept_keys(load_runs(tmp_path / "configs")[0]) == []


def test_values_missing_from_overrides_come_from_the_resolved_config(tmp_path):
    write_run(tmp_path, "a", ["schedule.rho=1"], 0.5)
    write_run(tmp_path, "b", [], 0.6)  # default rho 5.0 in summary["config"]
    write_run(tmp_path, "c", None, 0.7, config={"seed": 0, "schedule": {"rho": 5}})  # no overrides file
    runs, _ = load_runs(tmp_path)
    assert swept_keys(runs) == ["schedule.rho"]
    groups = group_runs(runs, ["schedule.rho"])
    assert [(g.label, len(g.runs)) for g in groups] == [(("1",), 1), (("5",), 2)]


def test_numbers_sort_numerically(tmp_path):
    for i, e0 in enumerate([10, 5, 100]):
        write_run(tmp_path, str(i), [f"schedule.e0={e0}"], 0.5)
    runs, _ = load_runs(tmp_path)
    assert [g.label for g in group_runs(runs, ["schedule.e0"])] == [("5",), ("10",), ("100",)]


# -- tables --------------------------------------------------------------------------------------------
def test_markdown_table_shows_mean_std_n_and_bolds_the_best(two_losses):
    table, tests, groups, keys, _ = build_report(two_losses, ["top1", "gmean"], fmt="md")
    lines = table.splitlines()
    assert lines[0] == "| loss | n | top1 | gmean |"
    # ce: 82.00 ± 2.00; la: mean 87.00, deviations -2, -1, 3 -> sum sq 14 / 2 = 7 -> std sqrt(7) = 2.65
    assert lines[2] == "| ce | 3 | 82.00 ± 2.00 | **30.00 ± 0.00** |"
    assert lines[3] == "| la | 3 | **87.00 ± 2.65** | **30.00 ± 0.00** |"
    assert "Wilcoxon" in tests and "loss=ce vs loss=la" in tests
    # la beats ce on all 3 seeds: exact two-sided p = 2 / 2^3
    top1_row = next(line for line in tests.splitlines() if line.startswith("| top1"))
    assert "| 0.25 |" in top1_row and "| 3 |" in top1_row
    gmean_row = next(line for line in tests.splitlines() if line.startswith("| gmean"))
    assert "identical" in gmean_row


def test_csv_table_keeps_numbers_parseable_and_stars_the_best(two_losses):
    table, *_ = build_report(two_losses, ["top1"], fmt="csv")
    assert table.splitlines() == ["loss,n,top1_mean,top1_std", "ce,3,82.00,2.00", "la,3,87.00*,2.65"]


def test_tex_table_uses_textbf_and_pm(two_losses):
    table, tests, *_ = build_report(two_losses, ["top1"], fmt="tex")
    assert r"\textbf{87.00 $\pm$ 2.65}" in table
    assert r"82.00 $\pm$ 2.00 \\" in table
    assert table.startswith(r"\begin{tabular}{lrr}") and r"\bottomrule" in table
    assert r"top1" in tests


def test_three_groups_get_friedman_and_average_ranks(tmp_path):
    tops = {"ce": [0.70, 0.72, 0.71, 0.69], "la": [0.80, 0.81, 0.79, 0.82], "ldam": [0.75, 0.74, 0.76, 0.77]}
    for loss, values in tops.items():
        for seed, v in enumerate(values):
            write_run(tmp_path, f"{loss}{seed}", [f"loss={loss}", f"seed={seed}"], v, seed)
    _, tests, groups, _, _ = build_report(tmp_path, ["top1"], fmt="md")
    assert "Friedman" in tests
    # ranks per seed: la 1, ldam 2, ce 3 every time -> chi2 = 12/(4*3*4) * (12^2 + 4^2 + 8^2) - 48 = 8
    top1_row = next(line for line in tests.splitlines() if line.startswith("| top1"))
    assert "| 8 |" in top1_row and f"| {math.exp(-4):.3g} |" in top1_row
    assert "| ce | 3.00 |" in tests and "| la | **1.00** |" in tests and "| ldam | 2.00 |" in tests


def test_duplicate_seeds_in_a_group_are_averaged_for_the_tests(tmp_path):
    # --by loss while schedule.rho also varies: two runs per seed in each group
    for loss, base in (("ce", 0.5), ("la", 0.6)):
        for rho in (1, 5):
            for seed in range(2):
                write_run(
                    tmp_path,
                    f"{loss}{rho}{seed}",
                    [f"loss={loss}", f"schedule.rho={rho}", f"seed={seed}"],
                    base + 0.01 * rho + 0.001 * seed,
                    seed,
                )
    runs, _ = load_runs(tmp_path)
    groups = group_runs(runs, ["loss"])
    assert report.per_block(groups[0], "top1", "test") == pytest.approx({"0": 53.0, "1": 53.1})
    table, *_ = build_report(tmp_path, ["top1"], by=["loss"])
    assert "| ce | 4 |" in table


def test_missing_values_show_their_own_n(tmp_path):
    write_run(tmp_path, "a", ["loss=ce", "seed=0"], 0.5, few=None)
    write_run(tmp_path, "b", ["loss=ce", "seed=1"], 0.6, few=0.2)
    table, *_ = build_report(tmp_path, ["top1", "few"], by=["loss"])
    assert "| ce | 2 | 55.00 ± 7.07 | 20.00 (n=1) |" in table


# -- plots ---------------------------------------------------------------------------------------------
def test_per_class_curve_is_the_mean_over_runs(tmp_path):
    write_run(tmp_path, "a", ["seed=0"], 0.5, per_class=[1.0, 0.5, 0.0])
    write_run(tmp_path, "b", ["seed=1"], 0.5, per_class=[0.8, 0.3, 0.2])
    runs, _ = load_runs(tmp_path)
    counts, recalls = per_class_curve(Group(("all",), runs), "test")
    assert counts == COUNTS
    assert recalls == pytest.approx([0.9, 0.4, 0.1])


def test_heatmap_grid_places_group_means_by_hand(tmp_path):
    for i, (e0, e1, top1) in enumerate([(0, 5, 0.5), (0, 10, 0.6), (2, 10, 0.8), (2, 10, 0.7)]):
        write_run(tmp_path, str(i), [f"schedule.e0={e0}", f"schedule.e1={e1}", f"seed={i}"], top1, i)
    runs, _ = load_runs(tmp_path)
    keys = swept_keys(runs)
    assert keys == ["schedule.e0", "schedule.e1"]
    rows, cols, grid = heatmap_grid(group_runs(runs, keys), "top1", "test")
    assert (rows, cols) == (["0", "2"], ["5", "10"])
    assert grid[0] == pytest.approx([50.0, 60.0])
    assert math.isnan(grid[1][0]) and grid[1][1] == pytest.approx(75.0)


def test_main_writes_tables_and_plots_including_the_heat_map(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for i, (e0, e1) in enumerate([(0, 5), (0, 10), (2, 5), (2, 10)]):
        write_run(sweep, str(i), [f"schedule.e0={e0}", f"schedule.e1={e1}"], 0.5 + 0.05 * i)
    out = tmp_path / "out"
    assert main([str(sweep), "--metric", "balanced_acc,top1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| schedule.e0 | schedule.e1 | n | balanced_acc | top1 |" in printed
    for name in ("report.md", "significance.md", "per_class_vs_count.png", "heatmap_balanced_acc.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "report.md").read_text().strip() in printed


def test_one_key_gives_no_heat_map(two_losses, capsys):
    assert main([str(two_losses), "--format", "csv"]) == 0
    assert (two_losses / "report.csv").exists() and (two_losses / "per_class_vs_count.png").exists()
    assert not list(two_losses.glob("heatmap_*.png"))


# -- errors --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--metric", "top5"], "unknown metric(s): top5"),
        (["--by", "loss.nonsense"], "--by key(s) not found in any run: loss.nonsense"),
        (["--split", "val"], "has a 'val' result"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(two_losses, capsys, args, needle):
    assert main([str(two_losses), *args, "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.startswith("lt_bench.report: error:") and "\n" not in err


def test_command_line_without_summaries_exits_2_without_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    stderr = {}
    for target in ("empty", "nowhere"):
        result = subprocess.run(
            [sys.executable, "-m", "lt_bench.report", str(tmp_path / target)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        stderr[target] = result.stderr
    assert "no summary.json found" in stderr["empty"]


def test_unreadable_summary_is_skipped_with_a_warning(two_losses):
    bad = two_losses / "broken"
    bad.mkdir()
    (bad / "summary.json").write_text("{not json")
    runs, warnings = load_runs(two_losses)
    assert len(runs) == 6 and len(warnings) == 1 and "broken" in warnings[0]


def test_a_diverged_run_is_skipped_with_its_reason(two_losses):
    """lt_bench.train records a diverged run as status: diverged; it has no figures to average."""
    diverged = two_losses / "diverged"
    diverged.mkdir()
    (diverged / "summary.json").write_text('{"status": "diverged", "reason": "loss nan at epoch 2"}')
    runs, warnings = load_runs(two_losses)
    expected = f"skipped {diverged / 'summary.json'}: diverged (loss nan at epoch 2)"
    assert len(runs) == 6 and warnings == [expected]


def test_run_value_ignores_unresolved_interpolations():
    run = Run(
        Path("."),
        {"schedule.e0": "${lt.epoch:0.5,${trainer.max_epochs}}"},
        {"config": {"schedule": {"e0": 15}}},
    )
    assert run.value("schedule.e0") == "15"


def test_friedman_over_settings_then_holm_against_the_control(tmp_path, capsys):
    """ARConvL's protocol: methods ranked over imbalance factors (blocks), Holm against the proposed one."""
    tops = {"arconvl": [0.90, 0.85, 0.80], "la": [0.88, 0.86, 0.78], "ce": [0.85, 0.80, 0.75]}
    job = 0
    for method, values in tops.items():
        for q, top1 in zip((10, 50, 100), values, strict=True):
            for seed in (0, 1):
                overrides = [f"method={method}", f"dataset.imbalance_factor={q}", f"seed={seed}"]
                write_run(tmp_path, str(job), overrides, top1 + 0.001 * seed, seed)
                job += 1
    code = report.main(
        [
            str(tmp_path),
            "--metric",
            "top1",
            "--block-by",
            "dataset.imbalance_factor",
            "--control",
            "method=arconvl",
            "--no-plots",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Friedman test over matched values of dataset.imbalance_factor" in out
    # ranks over the 3 settings: arconvl (1, 2, 1) = 1.33, la (2, 1, 2) = 1.67, ce 3
    assert "Holm post-hoc test vs method=arconvl on top1" in out
    assert "| method=ce | +1.67 |" in out and "| method=la | +0.33 |" in out
    assert "Holm" in (tmp_path / "significance.md").read_text()


# -- settings and the package's layers -----------------------------------------------------------------
def test_setting_of_keeps_the_overrides_that_change_the_science():
    lines = ["loss=la", "seed=1", "logger=wandb", "+trainer.devices=2", "optimizer.lr=0.10", "~foo"]
    assert report.setting_of(lines) == ("loss=la", "optimizer.lr=0.1")
    # every seed, a resumed run (ckpt_path) and another order give the same setting
    again = ["optimizer.lr=0.1", "ckpt_path=last.ckpt", "seed=2", "loss=la"]
    assert report.setting_of(again) == report.setting_of(lines)
    assert report.setting_of({"loss": "ce", "seed": "0"}) == ("loss=ce",)
    assert report.setting_name(lines) == "loss=la, optimizer.lr=0.1"
    assert report.setting_name(["seed=3", "trainer.devices=4"]) == "defaults"


def test_report_modules_import_only_the_ones_below_them():
    """load -> group -> significance -> render -> plots -> cli: no cycle inside lt_bench.report, no pyplot."""
    import ast

    order = ["load", "group", "significance", "render", "plots", "cli"]
    package = ROOT / "lt_bench" / "report"
    for position, name in enumerate(order):
        tree = ast.parse((package / f"{name}.py").read_text())
        modules = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        modules |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        imported = {m.rsplit(".", 1)[-1] for m in modules if m.startswith("lt_bench.report.")}
        assert imported <= set(order[:position]), (name, imported)
        assert not any("pyplot" in m for m in modules), name
