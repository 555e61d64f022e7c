"""scripts/run_table.py: runners sharing a table pass over the jobs another process is running."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from lt_bench.rundir import LOCK

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("run_table", ROOT / "scripts" / "run_table.py")
run_table = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = run_table  # dataclasses look their module up there
spec.loader.exec_module(run_table)

# what a running lt_bench holds (lt_bench.rundir.locked), without importing torch in the holder
HOLD = """
import fcntl, os, sys, time
os.makedirs(sys.argv[1], exist_ok=True)
fd = os.open(os.path.join(sys.argv[1], sys.argv[2]), os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_a_job_held_by_another_process_is_busy_and_launches_nothing(tmp_path: Path) -> None:
    job = run_table.Job("t", "row", "all", 0, ("seed=0",))
    run_dir = tmp_path / "scratch" / job.name
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir), LOCK], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        # a python that fails if called: a busy job must not start a run
        line = run_table.run(job, tmp_path / "results", tmp_path / "scratch", "/bin/false", ROOT)
        assert line == "busy t/row/all/seed0: another runner has it"
        assert not (run_dir / "runner.log").exists()
    finally:
        holder.kill()
        holder.wait()
    # once the holder is gone the job is taken (here it fails at once: /bin/false)
    line = run_table.run(job, tmp_path / "results", tmp_path / "scratch", "/bin/false", ROOT)
    assert line.startswith("FAIL t/row/all/seed0 (exit 1")
