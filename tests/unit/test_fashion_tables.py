"""scripts/fashion_tables.py: docs/results.md's ARConvL table, its Friedman/Holm block and the
Fashion-MNIST-LT tables from results/ folders, written between the page's markers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("fashion_tables", ROOT / "scripts" / "fashion_tables.py")
fashion_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fashion_tables)


def write_runs(results: Path, row: str, q: int, gmeans: list[float]) -> None:
    for seed, g in enumerate(gmeans):
        folder = results / "arconvl_fashion" / row / f"q{q}" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({"test": {"gmean": g}}))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    # ARConvL first, LA second, CPL third at both q; Focal only at q = 100
    for q, (a, la, cpl) in {10: (0.885, 0.876, 0.866), 100: (0.83, 0.80, 0.75)}.items():
        write_runs(tmp_path, "arconvl_no_momentum", q, [a - 0.01, a + 0.01])
        write_runs(tmp_path, "la_no_momentum", q, [la])
        write_runs(tmp_path, "cpl_no_momentum", q, [cpl])
    write_runs(tmp_path, "focal_no_momentum", 100, [0.70])
    return tmp_path


def test_cells_show_mean_std_published_and_difference(results: Path) -> None:
    text = fashion_tables.arconvl_table(results)
    # ARConvL q = 10: (87.5, 89.5) -> 88.5 ± 1.4 against 88.5 ± 0.5; CPL q = 100: 75.0 against 75.1 ± 2.7
    assert "88.5 ± 1.4 (n=2) / 88.5 ± 0.5 (+0.0)" in text
    assert "75.0 (n=1) / 75.1 ± 2.7 (-0.1)" in text
    # Focal q = 100: 70.0 against 77.5 ± 2.2 is 7.5 away, more than two published std
    assert (
        "70.0 (n=1) / 77.5 ± 2.2 (-7.5) **!**" in text
        and "Focal (no momentum, unweighted (check)), q = 100" in text
    )


def test_friedman_and_holm_over_q_leave_out_methods_not_run_at_every_q(results: Path) -> None:
    text = fashion_tables.significance(results / "arconvl_fashion", [10, 100])
    # ranks 1 / 2 / 3 in both blocks (n = 2, k = 3): chi2 = 12n/(k(k+1)) * sum (R_j - 2)^2 = 2 * 2 = 4,
    # p = exp(-4/2) = 0.135; Holm: z = rank diff / sqrt(k(k+1)/(6n)) = 1 (LA), 2 (CPL),
    # p = 0.317, 0.0455; Holm: 2 * 0.0455 = 0.091, then max(0.317, 0.091) = 0.317
    assert "q = 10, 100" in text and "not run at each of these q: GCPL, Focal, CB, CB Focal" in text
    assert "statistic 4, p = 0.135" in text
    # the largest statistic with n = 2, k = 3 is n (k - 1) = 4: this case, every block ranking alike
    assert "With 2 blocks and 3 methods the smallest p this test can give is 0.135" in text
    assert "| LA | +1.00 | 1.00 | 0.317 | 0.317 |" in text
    assert "| CPL | +2.00 | 2.00 | 0.0455 | 0.091 |" in text


def test_a_q_value_not_every_method_has_run_yet_waits_instead_of_dropping_methods(results: Path) -> None:
    write_runs(results, "arconvl_no_momentum", 20, [0.86])  # q = 20 has begun: ARConvL's first seed alone
    write_runs(results, "la_no_momentum", 20, [0.85])
    text = fashion_tables.significance(results / "arconvl_fashion", [10, 20, 100])
    # q = 10 and 100 keep three methods; taking q = 20 in as well would keep two
    assert "Friedman over q = 10, 100 (" in text
    assert "left out until every method has run there: q = 20" in text
    assert "statistic 4, p = 0.135" in text


def test_significance_waits_for_two_q_values(results: Path) -> None:
    text = fashion_tables.significance(results / "arconvl_fashion", [100])
    assert text.startswith("Friedman/Holm over q: needs ARConvL and two other methods")


def write_lt_run(results: Path, table: str, row: str, seed: int, last: float, best: float | None) -> None:
    folder = results / table / row / "all" / f"seed{seed}"
    folder.mkdir(parents=True)
    summary = {"test_last": {"balanced_acc": last}}
    if best is not None:
        summary["test_best_epoch"] = {"epoch": 7, "result": {"balanced_acc": best}}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_long_table_shows_the_test_selected_epoch_and_judges_only_with_a_spread(tmp_path: Path) -> None:
    write_lt_run(tmp_path, "fashion_lt_long", "ce", 0, 0.878, 0.882)
    write_lt_run(tmp_path, "fashion_lt_long", "phase", 0, 0.886, 0.886)
    text = fashion_tables.fashion_lt_table(tmp_path, "fashion_lt_long", fashion_tables.FASHION_LT_LONG_ROWS)
    assert "test-selected epoch (optimistic)" in text.splitlines()[0]
    assert "| PHASE | 1 | 88.6 | — | — | — | — | 88.6 | +0.8, one seed: no spread to judge by |" in text
    # with two seeds each: PHASE 88.6 ± 0.0 against CE 87.85 ± 0.07 clears the spread (0.07)
    write_lt_run(tmp_path, "fashion_lt_long", "ce", 1, 0.879, None)
    write_lt_run(tmp_path, "fashion_lt_long", "phase", 1, 0.886, None)
    text = fashion_tables.fashion_lt_table(tmp_path, "fashion_lt_long", fashion_tables.FASHION_LT_LONG_ROWS)
    (phase,) = [line for line in text.splitlines() if line.startswith("| PHASE |")]
    assert phase.startswith("| PHASE | 2 | 88.6 ± 0.0 |") and phase.endswith("| yes |")


def test_length_table_judges_ce_and_la_at_both_lengths_by_the_seeds_spread(tmp_path: Path) -> None:
    # 30 epochs: CE 87.0 ± 0.14, LA 90.0 ± 0.14, PHASE 88.0 ± 0.14 -> beats CE (+1.0 > 0.28), not LA (-2.0)
    # 100 epochs: one PHASE seed only -> the margin, unjudged
    for seed, (ce, la, phase) in enumerate([(0.869, 0.899, 0.879), (0.871, 0.901, 0.881)]):
        write_lt_run(tmp_path, "fashion_lt", "ce", seed, ce, None)
        write_lt_run(tmp_path, "fashion_lt", "la", seed, la, None)
        write_lt_run(tmp_path, "fashion_lt", "phase", seed, phase, None)
        write_lt_run(tmp_path, "fashion_lt_long", "ce", seed, ce, None)
    write_lt_run(tmp_path, "fashion_lt_long", "phase", 0, 0.885, 0.887)
    text = fashion_tables.length_table(tmp_path)
    assert "beats CE | beats LA" in text.splitlines()[0] and "optimistic" in text.splitlines()[0]
    (phase,) = [line for line in text.splitlines() if line.startswith("| PHASE |")]
    cells = [c.strip() for c in phase.strip("|").split("|")]
    assert cells[1:4] == ["88.0 ± 0.1 (n=2)", "yes (+1.0)", "no (-2.0)"]
    assert cells[4:6] == ["88.5 (n=1)", "? (+1.5, one seed: no spread to judge by)"]
    assert cells[6] == "—" and cells[7] == "88.7"  # no LA run at 100 epochs; the test-selected epoch


def test_write_replaces_the_block_of_docs_results_md_and_nothing_else(results: Path, tmp_path: Path) -> None:
    # the default target is the repository's docs/results.md, which holds the block
    assert fashion_tables.RESULTS_PAGE == ROOT / "docs" / "results.md"
    assert fashion_tables.START in fashion_tables.RESULTS_PAGE.read_text(encoding="utf-8")
    page = tmp_path / "results.md"
    page.write_text(f"# Results\n\nbefore\n\n{fashion_tables.START}\nold\n{fashion_tables.END}\n\nafter\n")
    assert fashion_tables.main(["--results", str(results), "--write", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    head, rest = text.split(fashion_tables.START)
    block, tail = rest.split(fashion_tables.END)
    assert head == "# Results\n\nbefore\n\n" and tail == "\n\nafter\n"
    assert block == "\n" + fashion_tables.render(results) + "\n"
    # a page without the markers is left alone, with one line and status 2
    other = tmp_path / "other.md"
    other.write_text("no block\n")
    assert fashion_tables.main(["--results", str(results), "--write", str(other)]) == 2
    assert other.read_text() == "no block\n"


def test_cells_with_a_gpu_run_are_marked_and_the_runs_named(results: Path) -> None:
    folder = results / "arconvl_fashion" / "la_no_momentum" / "q10"
    for seed in (1, 2):
        (folder / f"seed{seed}").mkdir()
        (folder / f"seed{seed}" / "summary.json").write_text(
            json.dumps({"test": {"gmean": 0.876}, "hardware": {"device": "cuda", "name": "NVIDIA H100"}})
        )
    text = fashion_tables.render(results)
    # the mean is a float hair below 87.6: the difference prints +0.0, not -0.0
    assert "| LA | no momentum | — / 91.0 ± 0.2 | 87.6 ± 0.0 (n=3) † / 87.6 ± 0.3 (+0.0) |" in text
    assert text.count("†") == 2  # that cell and the note; the CPU cells are unmarked
    assert "`arconvl_fashion/la_no_momentum/q10` seeds 1, 2 (NVIDIA H100)." in text
    # a CPU run's record marks nothing
    (folder / "seed1" / "summary.json").write_text(
        json.dumps({"test": {"gmean": 0.876}, "hardware": {"device": "cpu", "name": "AMD EPYC"}})
    )
    assert "seed 2 (NVIDIA H100)." in fashion_tables.render(results)
