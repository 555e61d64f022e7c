"""scripts/run_table.py and scripts/fashion_tables.py never count a run without a result: a diverged job fails
the pass (exit 1), is never collected into results/, is listed as ``diverged`` and runs again only with
``--retry-diverged``; the tables name the runs they leave out. A wrong command line or table file is one
line, exit 2, no traceback (issue 29, items 7 and 10)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


run_table = load("run_table")
fashion_tables = load("fashion_tables")

TABLE = "t:\n  seeds: [0]\n  rows:\n    ce: [loss=ce]\n"
JOB = "t/ce/all/seed0"
# stands in for `python -m lt_bench ...`: the run diverges, unless it starts over (overwrite=true)
FAKE_PYTHON = """#!/bin/sh
for a in "$@"; do
  case $a in hydra.run.dir=*) dir=${a#hydra.run.dir=};; overwrite=true) again=1;; esac
done
mkdir -p "$dir/.hydra" && echo "- loss=ce" > "$dir/.hydra/overrides.yaml"
if [ -n "$again" ]; then
  echo '{"status": "finished", "test": {"top1": 0.5}}' > "$dir/summary.json"; exit 0
fi
echo '{"status": "diverged", "reason": "loss nan at epoch 1"}' > "$dir/summary.json"
exit 2
"""


@pytest.fixture
def table(tmp_path: Path):
    spec = tmp_path / "table.yaml"
    spec.write_text(TABLE)
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    paths = ["--results", str(tmp_path / "results"), "--scratch", str(tmp_path / "scratch")]

    def main(*args: str) -> int:
        return run_table.main([str(spec), *paths, "--python", str(python), *args])

    return main, tmp_path


def test_a_diverged_job_fails_the_pass_and_is_never_collected(table, capsys):
    main, root = table
    collected = root / "results" / JOB / "summary.json"
    assert main() == 1  # the first pass: the job diverges
    out, err = capsys.readouterr()
    assert out.startswith(f"diverged {JOB}: loss nan at epoch 1 (exit 2; --retry-diverged runs it again)")
    assert f"1 of 1 jobs have no result: {JOB}" in err
    assert main() == 1  # the second pass finds its summary: still no result, not collected
    out, _ = capsys.readouterr()
    assert out.startswith(f"diverged {JOB}: loss nan at epoch 1 ({root / 'scratch' / JOB / 'summary.json'}")
    assert not collected.exists()
    assert main("--list") == 0
    assert capsys.readouterr().out.startswith(f"diverged {JOB}: loss=ce seed=0")
    assert main("--retry-diverged") == 0  # afresh: overwrite=true, no ckpt_path=auto
    assert capsys.readouterr().out.startswith(f"done {JOB}")
    assert json.loads(collected.read_text())["status"] == "finished"
    assert main("--list") == 0
    assert capsys.readouterr().out.startswith(f"done {JOB}")


def test_a_diverged_summary_an_older_runner_collected_is_no_result(table, capsys):
    main, root = table
    collected = root / "results" / JOB / "summary.json"
    collected.parent.mkdir(parents=True)
    collected.write_text('{"status": "diverged", "reason": "loss nan at epoch 3"}')
    assert main("--list") == 0
    assert capsys.readouterr().out.startswith(f"diverged {JOB}")
    assert main() == 1
    assert capsys.readouterr().out.startswith(f"diverged {JOB}: loss nan at epoch 3 ({collected}")


def test_the_tables_name_the_runs_they_leave_out(tmp_path):
    folder = tmp_path / "fashion_lt" / "ce" / "all"
    for seed, summary in enumerate(
        [
            {"status": "finished", "test_last": {"balanced_acc": 0.8}},
            {"test_last": {"balanced_acc": 0.6}},  # before the status key: finished
            {"status": "diverged", "reason": "loss nan at epoch 2", "test_last": {"balanced_acc": 0.1}},
        ]
    ):
        (folder / f"seed{seed}").mkdir(parents=True)
        (folder / f"seed{seed}" / "summary.json").write_text(json.dumps(summary))
    (folder / "seed3").mkdir()
    (folder / "seed3" / "summary.json").write_bytes(b"\xff\xfe{")
    text = fashion_tables.render(tmp_path)
    assert "| CE | 2 | 70.0 ± 14.1 |" in text  # the two finished seeds only
    assert (
        "Runs left out of these tables (no finished result): "
        "`fashion_lt/ce/all/seed2/summary.json` (diverged: loss nan at epoch 2); "
        "`fashion_lt/ce/all/seed3/summary.json` (unreadable (" in text
    )


@pytest.mark.parametrize(
    ("content", "args", "says"),
    [
        (None, [], "does not exist; pass a table file"),
        ("t: {rows: [", [], "cannot be read as YAML"),
        ("- a\n- b\n", [], "holds list, not tables"),
        ("t:\n  seeds: [0]\n", [], "table t has no rows"),
        (TABLE, ["--jobs", "0"], "--jobs 0: run at least one job at a time"),
        (TABLE, ["--seeds", "x"], "--seeds x: give integers"),
        (TABLE, ["--stop-after", "soon"], "--stop-after soon: give seconds"),
        (TABLE, ["--stop-after", "0"], "--stop-after 0: give a positive number of seconds"),
        (TABLE, ["--only", "nope"], "--only nope: no such table"),
    ],
)
def test_a_wrong_table_or_command_line_is_one_line(tmp_path, content, args, says):
    spec = tmp_path / "table.yaml"
    if content is not None:
        spec.write_text(content)
    command = [sys.executable, str(ROOT / "scripts" / "run_table.py"), str(spec), *args,
               "--results", str(tmp_path / "r"), "--scratch", str(tmp_path / "s")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("run_table: error: ") and says in line, line
    assert not (tmp_path / "s").exists()  # nothing ran
