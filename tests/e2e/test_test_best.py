"""``trainer.track_test_best``: the test-selected best epoch, reported apart, choosing nothing (issue 15A).

The CIFAR code bases (LDAM-DRW, PPL, KPS, DDC) report the best test top-1 over all epochs. lt_bench keeps
the selected (``test``) and final (``test_last``) figures and adds that one as ``test_best_epoch``,
labelled optimistic, in summary.json and in the report (``--split test_best``).
"""

from __future__ import annotations

import csv

import pytest
import torch

from lt_bench.report import TEST_BEST_LABEL as LABEL
from lt_bench.report import ReportError, build_report, main
from lt_bench.train import train
from tests.helpers import make_config, read_summary, run_cli, skip_plots

pytestmark = pytest.mark.slow

TINY = ["trainer.max_epochs=3", "dataset.val_fraction=0.2", "dataset.test_per_class=20"]
SCALARS = ("top1", "balanced_acc", "many", "medium", "few", "gmean")


def _per_epoch_test_top1(run_dir) -> dict[int, float]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return {
            int(r["epoch"]): float(r["test_epoch/top1"])
            for r in csv.DictReader(f)
            if r.get("test_epoch/top1")
        }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run with and without tracking (a validation split, so `test` is the val-selected model),
    in process, without the figures (no test here looks at them)."""
    root = tmp_path_factory.mktemp("test_best")
    tracked, plain = root / "tracked", root / "plain"
    with pytest.MonkeyPatch.context() as monkeypatch:
        skip_plots(monkeypatch)
        for run_dir, extra in ((tracked, ["trainer.track_test_best=true"]), (plain, [])):
            train(make_config(*TINY, *extra), run_dir)
    return tracked, plain


def test_summary_holds_the_test_selected_epoch_under_its_labelled_key(runs):
    tracked, plain = runs
    record = read_summary(tracked)["test_best_epoch"]
    assert record["note"].startswith("optimistic: ") and "selected on the test set" in record["note"]
    assert record["selected_by"] == "test/top1" and record["epochs_evaluated"] == 3
    assert set(SCALARS) <= set(record["result"]) and record["result"]["n"] == 200
    assert "test_best_epoch" not in read_summary(plain)
    # the record is the best of the per-epoch test passes (the earliest on a tie), as logged
    per_epoch = _per_epoch_test_top1(tracked)
    assert sorted(per_epoch) == [0, 1, 2]
    best = max(per_epoch.values())
    assert record["result"]["top1"] == pytest.approx(best, abs=1e-6)
    assert record["epoch"] == min(e for e, v in per_epoch.items() if v == best)


def test_tracking_changes_neither_the_selected_nor_the_final_result(runs):
    tracked, plain = map(read_summary, runs)
    for key in ("test", "test_last", "val", "best_epoch", "best_val", "selected_by", "class_counts"):
        assert tracked[key] == plain[key], key
    # the selected and the final model are among the epochs the record chose from
    assert tracked["test_best_epoch"]["result"]["top1"] >= max(
        tracked["test"]["top1"], tracked["test_last"]["top1"]
    )


def test_last_checkpoint_keeps_the_record_for_a_resume(runs):
    tracked, _ = runs
    checkpoint = torch.load(tracked / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    record = read_summary(tracked)["test_best_epoch"]
    assert checkpoint["lt_bench_test_best"]["epoch"] == record["epoch"]
    assert checkpoint["lt_bench_test_best"]["epochs_evaluated"] == 3


def test_report_shows_it_only_labelled(runs, tmp_path, capsys):
    tracked, _ = runs
    assert main([str(tracked), "--split", "test_best", "--no-plots", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    top1 = read_summary(tracked)["test_best_epoch"]["result"]["top1"]
    assert LABEL in printed and f"{100 * top1:.2f}" in printed
    assert LABEL in (tmp_path / "report.md").read_text()
    assert main([str(tracked), "--no-plots", "--out", str(tmp_path)]) == 0  # default: the selected model
    assert LABEL not in capsys.readouterr().out


def test_report_refuses_test_best_where_no_run_tracked_it(runs):
    _, plain = runs
    with pytest.raises(ReportError, match="track_test_best"):
        build_report(plain, split="test_best")


@pytest.mark.parametrize("fmt", ["md", "csv", "tex"])
def test_every_report_format_carries_the_label(runs, fmt):
    tracked, _ = runs
    table, *_ = build_report(tracked, metrics=["top1"], fmt=fmt, split="test_best")
    assert "optimistic" in table.splitlines()[0]


@pytest.mark.heavy
def test_a_resumed_run_continues_the_record(tmp_path):
    args = ["trainer.track_test_best=true", "dataset.test_per_class=10", "trainer.limit_train_batches=2"]
    first = run_cli(*args, "trainer.max_epochs=2", run_dir=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_cli(*args, "trainer.max_epochs=3", "ckpt_path=last", run_dir=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = read_summary(tmp_path)["test_best_epoch"]
    assert record["epochs_evaluated"] == 3
    per_epoch = _per_epoch_test_top1(tmp_path)  # the resumed run keeps the rows logged before
    assert sorted(per_epoch) == [0, 1, 2] and record["result"]["top1"] == pytest.approx(
        max(per_epoch.values())
    )


@pytest.mark.heavy
def test_two_processes_count_every_test_image_once(run_dir):
    """One epoch: the per-epoch pass (shards reduced over the ranks) must equal Lightning's test loop."""
    result = run_cli(
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.track_test_best=true",
        "dataset.test_per_class=37",  # 370 test images, an odd number per process shard
        run_dir=run_dir,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(run_dir)
    record, last = summary["test_best_epoch"]["result"], summary["test_last"]
    assert record["n"] == last["n"] == 370
    assert record["per_class"] == last["per_class"]
    assert all(record[k] == last[k] for k in SCALARS)
