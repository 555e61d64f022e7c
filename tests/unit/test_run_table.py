"""scripts/run_table.py: runners sharing a table pass over the jobs another process is running."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import time
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


# stands in for `python -m lt_bench ...`: a run of 1 s that finishes
ONE_SECOND_RUN = """#!/bin/sh
for a in "$@"; do case $a in hydra.run.dir=*) dir=${a#hydra.run.dir=};; esac; done
sleep 1
mkdir -p "$dir" && echo '{"status": "finished"}' > "$dir/summary.json"
"""


def test_stop_after_starts_no_job_late_and_lets_the_running_one_finish(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "table.yaml"
    spec.write_text("t:\n  seeds: [0, 1, 2]\n  rows:\n    ce: [loss=ce]\n")
    python = tmp_path / "python"
    python.write_text(ONE_SECOND_RUN)
    python.chmod(0o755)
    paths = ["--results", str(tmp_path / "results"), "--scratch", str(tmp_path / "scratch")]
    code = run_table.main([str(spec), *paths, "--python", str(python), "--stop-after", "0.5"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0  # a job left for later is no failure
    assert out[0].startswith("done t/ce/all/seed0 in ")  # started at once, ran past the 0.5 s to its end
    assert out[1:] == [
        "left t/ce/all/seed1: --stop-after has passed; the next call runs it",
        "left t/ce/all/seed2: --stop-after has passed; the next call runs it",
        "run_table: 2 of 3 jobs left for the next call (--stop-after 0.5s)",
    ]
    assert (tmp_path / "results/t/ce/all/seed0/summary.json").exists()
    assert not (tmp_path / "scratch/t/ce/all/seed1").exists()  # never started
    # the next call runs what was left
    assert run_table.main([str(spec), *paths, "--python", str(python)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "skip t/ce/all/seed0"
    assert (tmp_path / "results/t/ce/all/seed2/summary.json").exists()


def test_the_gpu_batch_packs_what_it_finished_and_collect_keeps_earlier_results(tmp_path: Path) -> None:
    """scripts/gpu_table.sh run / collect, on the CPU (ALLOW_CPU=1) with a stand-in for lt_bench."""
    spec = tmp_path / "table.yaml"
    spec.write_text("t:\n  seeds: [0, 1]\n  sweep: {key: k, values: [5, 7]}\n  rows:\n    ce: [loss=ce]\n")
    python = tmp_path / "python"
    # the script's python runs run_table.py too (this python does that); a job fails without the carried site
    to_run_table = f'case $1 in *run_table.py) exec {sys.executable} "$@";; esac\n'
    python.write_text(
        ONE_SECOND_RUN.replace("#!/bin/sh\n", "#!/bin/sh\n" + to_run_table).replace(
            "sleep 1", "case $PYTHONPATH in *gpu/site*) ;; *) exit 3;; esac"
        )
    )
    python.chmod(0o755)
    (tmp_path / "gpu" / "site").mkdir(parents=True)
    results = tmp_path / "results"
    (results / "t/ce/k5/seed1").mkdir(parents=True)  # a job finished before (on the CPU, say)
    (results / "t/ce/k5/seed1/summary.json").write_text('{"status": "finished", "mine": 1}')
    env = {**os.environ, "ALLOW_CPU": "1", "PY": str(python), "SPEC": str(spec), "ONLY": "t", "ROWS": "ce",
           "VALUES": "5", "SEEDS": "0,1", "RESULTS": str(results), "GPU_DIR": str(tmp_path / "gpu"),
           "OUT": str(tmp_path / "out"), "JOBS": "2"}  # fmt: skip
    script = str(ROOT / "scripts" / "gpu_table.sh")
    done = subprocess.run(["bash", script, "run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skip t/ce/k5/seed1" in done.stdout and "gpu_table: 1 finished jobs" in done.stdout
    with tarfile.open(tmp_path / "out" / "results.tgz") as archive:
        assert [m.name for m in archive.getmembers() if m.isfile()] == ["t/ce/k5/seed0/summary.json"]
    # collect into a results folder where seed0 is already finished too: nothing there is replaced
    mine = tmp_path / "mine"
    (mine / "t/ce/k5/seed0").mkdir(parents=True)
    (mine / "t/ce/k5/seed0/summary.json").write_text('{"status": "finished", "mine": 1}')
    env["RESULTS"] = str(mine)
    got = subprocess.run(
        ["bash", script, "collect", str(tmp_path / "out")], env=env, capture_output=True, text=True
    )
    assert got.returncode == 0, got.stderr
    assert json.loads((mine / "t/ce/k5/seed0/summary.json").read_text())["mine"] == 1


# stands in for `python -m lt_bench ...` during its start-up: it takes no lock for its first 3 s (lt_bench
# takes .lt_bench.lock only after its imports), then finishes
SLOW_START_RUN = ONE_SECOND_RUN.replace("sleep 1", "sleep 3")

TAKE_JOB = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("run_table", sys.argv[1])
run_table = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = run_table
spec.loader.exec_module(run_table)
job = run_table.Job("t", "row", "all", 0, ("seed=0",))
tmp = Path(sys.argv[2])
print(run_table.run(job, tmp / "results", tmp / "scratch", sys.argv[3], Path(sys.argv[4])), flush=True)
"""


def test_a_second_runner_passes_over_a_job_whose_run_is_still_starting(tmp_path: Path) -> None:
    # two runners reaching the same job together: the first has launched lt_bench, which holds nothing yet
    job = run_table.Job("t", "row", "all", 0, ("seed=0",))
    python = tmp_path / "python"
    python.write_text(SLOW_START_RUN)
    python.chmod(0o755)
    first = subprocess.Popen(
        [sys.executable, "-c", TAKE_JOB, str(ROOT / "scripts" / "run_table.py"), str(tmp_path), str(python),
         str(ROOT)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        runner_log = tmp_path / "scratch" / job.name / "runner.log"
        for _ in range(600):  # the first runner has started its run (its imports: slow on busy cores)
            if runner_log.exists():
                break
            time.sleep(0.05)
        assert runner_log.exists()
        # the second runner must not start it again (/bin/false would be a FAIL line)
        line = run_table.run(job, tmp_path / "results", tmp_path / "scratch", "/bin/false", ROOT)
        assert line == "busy t/row/all/seed0: another runner has it"
        assert first.stdout.readline().startswith("done t/row/all/seed0 in ")
    finally:
        first.kill()
        first.wait()
    # and once it has ended, a runner that finds it finished skips it
    line = run_table.run(job, tmp_path / "results", tmp_path / "scratch", "/bin/false", ROOT)
    assert line == "skip t/row/all/seed0"
