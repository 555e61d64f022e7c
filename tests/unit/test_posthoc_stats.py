"""Holm–Bonferroni and the rank-based post-hoc test against a control, on hand-computed examples."""

import math

import pytest

from lt_bench import report
from lt_bench.stats import holm_adjust, holm_vs_control


def test_holm_adjusted_p_values_by_hand():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> monotone 0.06)
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_keeps_ties():
    assert holm_adjust([0.6, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]) == []


def test_rank_posthoc_against_control_by_hand():
    # 3 groups x 4 blocks, higher is better. Ranks per block: (1,2,3), (1,2,3), (1,3,2), (1,2,3)
    # -> average ranks 1, 2.25, 2.75; scale sqrt(k(k+1)/(6N)) = sqrt(12/24)
    blocks = [[90, 80, 70], [91, 81, 71], [92, 70, 82], [93, 83, 73]]
    rows = holm_vs_control(blocks, control=0)
    assert [r.group for r in rows] == [1, 2]
    assert [r.rank_difference for r in rows] == pytest.approx([1.25, 1.75])
    z1, z2 = 1.25 / math.sqrt(0.5), 1.75 / math.sqrt(0.5)
    assert [r.z for r in rows] == pytest.approx([z1, z2])
    p1, p2 = math.erfc(z1 / math.sqrt(2)), math.erfc(z2 / math.sqrt(2))  # 0.0771, 0.01333
    assert [r.p for r in rows] == pytest.approx([p1, p2])
    # Holm: the smaller p (group 2) x 2, the larger x 1 (and never below the previous)
    assert [r.p_holm for r in rows] == pytest.approx([max(p1, 2 * p2), 2 * p2])


def test_posthoc_rejects_a_control_outside_the_groups():
    with pytest.raises(ValueError, match="control index 3"):
        holm_vs_control([[1.0, 2.0, 3.0]], control=3)


def test_report_control_must_name_a_group():
    groups = [report.Group(("ce",)), report.Group(("la",))]
    assert report.find_control(groups, ["loss.name"], "loss.name=la") == 1
    assert report.find_control(groups, ["loss.name"], "ce") == 0
    with pytest.raises(report.ReportError, match="matches no group; the groups are: loss.name=ce"):
        report.find_control(groups, ["loss.name"], "arconvl")
