"""Run the jobs of a results table one by one, resumably, and keep each finished run's small outputs.

    python scripts/run_table.py scripts/tables/fashion.yaml [--only TABLE[,TABLE]] [--rows R,...]
        [--seeds S,...] [--values V,...] [--jobs N] [--stop-after SECONDS] [--list]

The YAML lists tables; each has shared overrides, seeds, optional swept values and its rows (name ->
overrides). A job is (table, row, sweep value, seed). A finished job is one whose
``results/<table>/<row>/<value>/seed<k>/summary.json`` exists: it is skipped, so the script can be
stopped at any point (or the machine lost) and started again. Checkpoints stay in a scratch folder
(``--scratch``, default /tmp/lt_bench_tables) and each job resumes there with ``ckpt_path=auto``; only
summary.json and the resolved config (.hydra/config.yaml, overrides.yaml) are copied under results/.
Runs use one torch thread each; ``--jobs 2`` runs two at a time (the brief's limit on 2 cores). Runners
started separately on the same table share it: a job another runner has taken (it holds the job's
``.run_table.lock`` for as long as its run lasts, start-up included), or whose run directory another lt_bench
run holds, is passed over ("busy"), so a second runner takes the jobs the first has not reached.

``--stop-after SECONDS`` starts no job once that many seconds have passed (the jobs running go on to
their end): a lease of fixed length, such as scripts/gpu_table.sh's GPU batch, ends with whole runs, and
the jobs not started are listed as ``left`` for the next call.

Only a finished run is collected: a ``summary.json`` whose ``status`` is ``diverged`` (or anything but
``finished``; summaries of lt_bench before the key have none and count as finished) stays in the scratch
folder, is reported as ``diverged`` (``--list`` too) and is run again only with ``--retry-diverged``
(afresh, ``overwrite=true``). The exit status is 1 when any job failed or diverged, 2 (one line) when the
command line or the table file is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = "summary.json"
# the runner's own lock in a job's run directory, held from before its lt_bench starts until after it ends:
# lt_bench takes .lt_bench.lock only once its imports are done, and a second runner must not start the job
# in between
RUNNER_LOCK = ".run_table.lock"


class TableError(Exception):
    """A problem with the command line or the table file: one line, exit status 2."""


def spec_of(path: Path) -> dict:
    """The tables of a YAML file, checked: each a mapping with ``seeds`` (integers) and ``rows`` (name ->
    list of overrides), optional ``common`` (overrides) and ``sweep`` (``key``, ``values``, ``label``)."""
    try:
        spec = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise TableError(
            f"{path} does not exist; pass a table file, e.g. scripts/tables/fashion.yaml"
        ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise TableError(f"{path} cannot be read as YAML: {' '.join(str(err).split())}") from None
    if not isinstance(spec, dict) or not spec:
        held = type(spec).__name__ if spec is not None else "nothing"
        raise TableError(
            f"{path} holds {held}, not tables: it maps each table name to its seeds and rows (see "
            "scripts/tables/fashion.yaml)"
        )
    for table, t in spec.items():
        where = f"{path}: table {table}"
        if not isinstance(t, dict):
            raise TableError(
                f"{where} is a {type(t).__name__}; give it seeds: [...] and rows: {{name: [...]}}"
            )
        rows = t.get("rows")
        if not isinstance(rows, dict) or not rows:
            raise TableError(f"{where} has no rows: give rows: {{name: [override, ...]}}")
        for row, overrides in rows.items():
            if not _strings(overrides):
                raise TableError(f"{where}, row {row}: give a list of overrides, e.g. [loss=ce]")
        seeds = t.get("seeds")
        if not isinstance(seeds, list) or not seeds or not all(_is_int(k) for k in seeds):
            raise TableError(f"{where}: seeds must be a list of integers, e.g. seeds: [0, 1, 2]")
        if not _strings(t.get("common", [])):
            raise TableError(f"{where}: common must be a list of overrides")
        sweep = t.get("sweep")
        if sweep is not None and (
            not isinstance(sweep, dict) or "key" not in sweep or not isinstance(sweep.get("values"), list)
        ):
            raise TableError(f"{where}: sweep must be {{key: KEY, values: [...]}}")
    return spec


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def status_of(summary: Path) -> tuple[str, str]:
    """``(state, reason)`` of a run's ``summary.json``: ``finished`` (``status: finished``, or no status:
    lt_bench before the key), ``diverged`` (any other status, with its reason), ``unreadable``."""
    try:
        content = json.loads(summary.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:
        return "unreadable", " ".join(str(err).split())
    if not isinstance(content, dict):
        return "unreadable", "not a JSON object"
    status = content.get("status", "finished")
    if status == "finished":
        return "finished", ""
    return "diverged", str(content.get("reason") or f"status: {status}")


def failed(line: str) -> bool:
    """Whether a job's line reports a job without a result."""
    return line.startswith(("FAIL ", "diverged "))


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
            raise TableError(
                f"--rows {','.join(sorted(unknown))} not in table {table}; its rows: {', '.join(t['rows'])}"
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


def run(
    job: Job,
    results: Path,
    scratch: Path,
    python: str,
    cwd: Path,
    retry_diverged: bool = False,
    start_by: float | None = None,
) -> str:
    """Run, collect or pass over one job; the line that says which (:func:`failed` tells a job without a
    result). Only a finished run is collected; a diverged one runs again, afresh, with ``retry_diverged``.
    A job that would start after ``start_by`` (a ``time.time()``) is ``left`` for a later call."""
    done = results / job.name
    if (done / SUMMARY).exists():
        state, reason = status_of(done / SUMMARY)
        if state == "finished":
            return f"skip {job.name}"
        if not retry_diverged:  # collected by an older runner: no result, however it got there
            return f"diverged {job.name}: {reason} ({done / SUMMARY}; --retry-diverged runs it again)"
    run_dir = scratch / job.name
    if start_by is not None and time.time() > start_by and not (run_dir / SUMMARY).exists():
        return f"left {job.name}: --stop-after has passed; the next call runs it"
    from lt_bench.rundir import RunDirInUse, held_elsewhere, locked  # torch: not before the command line

    busy = f"busy {job.name}: another runner has it"
    with contextlib.ExitStack() as held:
        try:  # several runners may share a table: the job is this runner's until its run has ended
            held.enter_context(locked(run_dir, RUNNER_LOCK))
        except RunDirInUse:
            return busy
        if held_elsewhere(run_dir) is not None:  # an lt_bench run started by hand in the job's directory
            return busy
        return _run_held(job, done, run_dir, python, cwd, retry_diverged, start_by)


def _run_held(
    job: Job, done: Path, run_dir: Path, python: str, cwd: Path, retry_diverged: bool, start_by: float | None
) -> str:
    """:func:`run` once this runner holds the job: the run directory's state is read only now, so a job
    another runner has just finished is collected, never started again."""
    retry = False
    if (run_dir / SUMMARY).exists():  # summary.json is written last, atomically
        state, reason = status_of(run_dir / SUMMARY)
        if state == "finished":
            _collect(run_dir, done)
            return f"collected {job.name}"
        if not retry_diverged:
            return f"diverged {job.name}: {reason} ({run_dir / SUMMARY}; --retry-diverged runs it again)"
        retry = True
    command = [
        python,
        "-m",
        "lt_bench",
        *job.overrides,
        f"hydra.run.dir={run_dir}",
        # a diverged run starts over (lt_bench removes its outputs); any other continues where it stopped
        "overwrite=true" if retry else "ckpt_path=auto",
        "trainer.enable_progress_bar=false",
        "print_table=false",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    started = time.time()
    with open(run_dir / "runner.log", "a") as log:
        code = subprocess.call(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    state, reason = status_of(run_dir / SUMMARY) if (run_dir / SUMMARY).exists() else ("absent", "")
    if state == "diverged":
        return f"diverged {job.name}: {reason} (exit {code}; --retry-diverged runs it again)"
    if code != 0 or state != "finished":
        return f"FAIL {job.name} (exit {code}; see {run_dir / 'runner.log'})"
    _collect(run_dir, done)
    return f"done {job.name} in {time.time() - started:.0f} s"


def state_of(job: Job, results: Path, scratch: Path) -> str:
    """``done``, ``diverged`` or ``todo``, for ``--list``."""
    for summary in (results / job.name / SUMMARY, scratch / job.name / SUMMARY):
        if summary.exists():
            state, _ = status_of(summary)
            if state == "finished":
                return "done" if summary.is_relative_to(results) else "todo"  # not collected yet
            return "diverged"
    return "todo"


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
    parser.add_argument("--jobs", default="1", help="jobs run at a time (>= 1)")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/lt_bench_tables"))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--cwd", type=Path, default=ROOT, help="checkout whose lt_bench runs the jobs")
    parser.add_argument(
        "--stop-after", default=None, help="start no job after this many seconds (running ones finish)"
    )
    parser.add_argument("--list", action="store_true", help="print the jobs and whether each is done")
    parser.add_argument(
        "--retry-diverged", action="store_true", help="run the diverged jobs again, afresh (overwrite=true)"
    )
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except TableError as err:
        print(f"run_table: error: {err}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    started = time.time()
    try:
        workers = int(args.jobs)
        seeds = {int(k) for k in args.seeds.split(",")} if args.seeds else None
    except ValueError:
        raise TableError(
            f"--jobs {args.jobs} / --seeds {args.seeds}: give integers (--jobs 2, --seeds 0,1,2)"
        ) from None
    if workers < 1:
        raise TableError(f"--jobs {workers}: run at least one job at a time (--jobs 1)")
    start_by = None
    if args.stop_after is not None:
        try:
            start_by = started + float(args.stop_after)
        except ValueError:
            raise TableError(f"--stop-after {args.stop_after}: give seconds, e.g. --stop-after 420") from None
        if not start_by > started:  # also nan
            raise TableError(f"--stop-after {args.stop_after}: give a positive number of seconds")
    spec = spec_of(args.spec)
    only = set(args.only.split(",")) if args.only else None
    unknown = sorted((only or set()) - set(spec))
    if unknown:
        raise TableError(
            f"--only {','.join(unknown)}: no such table in {args.spec}; its tables: {', '.join(spec)}"
        )
    jobs = jobs_of(
        spec,
        only,
        set(args.rows.split(",")) if args.rows else None,
        seeds,
        set(args.values.split(",")) if args.values else None,
    )
    if args.list:
        for job in jobs:
            print(f"{state_of(job, args.results, args.scratch)} {job.name}: {' '.join(job.overrides)}")
        return 0
    lines = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        options = (args.results, args.scratch, args.python, args.cwd, args.retry_diverged, start_by)
        for line in pool.map(lambda j: run(j, *options), jobs):
            print(line, flush=True)
            lines.append(line)
    left = sum(line.startswith("left ") for line in lines)
    if left:
        when = f"--stop-after {args.stop_after}s"
        print(f"run_table: {left} of {len(lines)} jobs left for the next call ({when})")
    bad = [line.split()[1] for line in lines if failed(line)]
    if bad:
        print(f"run_table: {len(bad)} of {len(lines)} jobs have no result: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
