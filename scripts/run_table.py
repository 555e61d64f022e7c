"""Run the jobs of a results table one by one, resumably, and keep each finished run's small outputs.

    python scripts/run_table.py scripts/tables/fashion.yaml [--only TABLE[,TABLE]] [--rows R,...]
        [--seeds S,...] [--values V,...] [--jobs N] [--list]

The YAML lists tables; each has shared overrides, seeds, optional swept values and its rows (name ->
overrides). A job is (table, row, sweep value, seed). A finished job is one whose
``results/<table>/<row>/<value>/seed<k>/summary.json`` exists: it is skipped, so the script can be
stopped at any point (or the machine lost) and started again. Checkpoints stay in a scratch folder
(``--scratch``, default /tmp/lt_bench_tables) and each job resumes there with ``ckpt_path=auto``; only
summary.json and the resolved config (.hydra/config.yaml, overrides.yaml) are copied under results/.
Runs use one torch thread each; ``--jobs 2`` runs two at a time (the brief's limit on 2 cores). Runners
started separately on the same table share it: a job whose run directory another run holds is passed
over ("busy"), so a second runner takes the jobs the first has not reached.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from lt_bench.rundir import RunDirInUse, locked

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Job:
    table: str
    row: str
    value: str  # the swept value's folder name ("all" when the table sweeps nothing)
    seed: int
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.table}/{self.row}/{self.value}/seed{self.seed}"


def jobs_of(
    spec: dict,
    only: set[str] | None,
    rows: set[str] | None = None,
    seeds: set[int] | None = None,
    values_: set[str] | None = None,
) -> list[Job]:
    """Every job of the named tables and rows, seed-major so that each row gets its first seed early."""
    jobs = []
    for table, t in spec.items():
        if only and table not in only:
            continue
        unknown = (rows or set()) - set(t["rows"]) if only else set()
        if unknown:
            raise SystemExit(
                f"error: --rows {','.join(sorted(unknown))} not in table {table}; "
                f"its rows: {', '.join(t['rows'])}"
            )
        key, values = t.get("sweep", {}).get("key"), t.get("sweep", {}).get("values", [None])
        for seed, value, (row, row_overrides) in itertools.product(t["seeds"], values, t["rows"].items()):
            if (
                (rows and row not in rows)
                or (seeds and seed not in seeds)
                or (values_ and str(value) not in values_)
            ):
                continue
            swept = [] if key is None else [f"{key}={value}"]
            overrides = (*t.get("common", []), *row_overrides, *swept, f"seed={seed}")
            # a folder name without '=': it goes into hydra.run.dir, where '=' would break the override
            folder = "all" if key is None else f"{t['sweep'].get('label', key.rsplit('.', 1)[-1])}{value}"
            jobs.append(Job(table, row, folder, seed, overrides))
    return jobs


def run(job: Job, results: Path, scratch: Path, python: str, cwd: Path) -> str:
    done = results / job.name
    if (done / "summary.json").exists():
        return f"skip {job.name}"
    run_dir = scratch / job.name
    if (run_dir / "summary.json").exists():  # finished (summary.json is written last, atomically)
        _collect(run_dir, done)
        return f"collected {job.name}"
    try:  # several runners may share a table: each takes the jobs no other one is running
        with locked(run_dir):
            pass
    except RunDirInUse:
        return f"busy {job.name}: another runner has it"
    command = [
        python,
        "-m",
        "lt_bench",
        *job.overrides,
        f"hydra.run.dir={run_dir}",
        "ckpt_path=auto",
        "trainer.enable_progress_bar=false",
        "print_table=false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    started = time.time()
    with open(run_dir / "runner.log", "a") as log:
        code = subprocess.call(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if code != 0 or not (run_dir / "summary.json").exists():
        return f"FAIL {job.name} (exit {code}; see {run_dir / 'runner.log'})"
    _collect(run_dir, done)
    return f"done {job.name} in {time.time() - started:.0f} s"


def _collect(run_dir: Path, done: Path) -> None:
    """Copy a finished run's small outputs (never checkpoints) into results/."""
    (done / ".hydra").mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "overrides.yaml"):
        if (run_dir / ".hydra" / name).exists():
            shutil.copy2(run_dir / ".hydra" / name, done / ".hydra" / name)
    shutil.copy2(run_dir / "summary.json", done / "summary.json")  # last: its presence marks the job done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--only", default=None, help="comma-separated tables to run")
    parser.add_argument("--rows", default=None, help="comma-separated rows to run (of the --only tables)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds to run")
    parser.add_argument("--values", default=None, help="comma-separated values of the swept key to run")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/lt_bench_tables"))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--cwd", type=Path, default=ROOT, help="checkout whose lt_bench runs the jobs")
    parser.add_argument("--list", action="store_true", help="print the jobs and whether each is done")
    args = parser.parse_args(argv)
    spec = yaml.safe_load(args.spec.read_text())
    jobs = jobs_of(
        spec,
        set(args.only.split(",")) if args.only else None,
        set(args.rows.split(",")) if args.rows else None,
        {int(k) for k in args.seeds.split(",")} if args.seeds else None,
        set(args.values.split(",")) if args.values else None,
    )
    if args.list:
        for job in jobs:
            state = "done" if (args.results / job.name / "summary.json").exists() else "todo"
            print(f"{state} {job.name}: {' '.join(job.overrides)}")
        return 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for line in pool.map(lambda j: run(j, args.results, args.scratch, args.python, args.cwd), jobs):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
