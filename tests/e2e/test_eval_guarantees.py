"""``python -m lt_bench.eval`` with training's guarantees, as a user runs it (real processes), on one tiny
training run shared by the module:

- it writes beside the evaluated run, in a folder of its own (``RUN/eval/SPLIT-DATE_TIME``), and never over
  a training run's files: ``hydra.run.dir=RUN`` is refused before anything is written, the run's files
  keep their bytes (issue 29, items 1 and 4);
- it is refused while a training holds the evaluated run's directory, and while another process holds
  its own folder; a folder that already holds an evaluation is refused: two evaluations never mix (item 3);
- it never scores training images as held-out ones: an override that redraws the splits is refused,
  another dataset of the same classes is allowed and stated (item 5);
- a refused ``overwrite=true`` leaves the finished run byte-identical (item 2);
- no ``ckpt=``, an unwritable folder: one line, no traceback (item 10); SIGTERM to the process and its
  group, as GNU ``timeout`` sends it: one line, 143 (item 9; the other signal cases are in
  tests/faults/test_eval_signals.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lt_bench.errors import ConfigError
from lt_bench.rundir import LOCK
from tests.helpers import CONF, FAST, ROOT, make_config

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
TRAINED = ["dataset.test_per_class=20"]  # tiny: 2 epochs, no validation split (val_fraction 0)

# what a running lt_bench holds (lt_bench.rundir.locked), without importing torch in the holder
HOLD = """
import fcntl, os, sys, time
os.makedirs(sys.argv[1], exist_ok=True)
fd = os.open(os.path.join(sys.argv[1], sys.argv[2]), os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.pwrite(fd, b"%d\\n" % os.getpid(), 0)
print("held", flush=True)
time.sleep(120)
"""


def run(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV)


def one_line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The refusal's line: exit ``code``, no traceback, nothing else on stderr."""
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("lt_bench: error: "), line
    return line


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (logs aside: they are appended to; and the lock, which
    holds its last holder's PID)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(".log") and p.name != LOCK
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    result = run("lt_bench", *FAST, *TRAINED, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.fixture
def holder():
    """Start a process that holds a folder's lock; ended after the test."""
    started: list[subprocess.Popen] = []

    def hold(folder: Path) -> int:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder), LOCK], stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process.pid

    yield hold
    for process in started:
        process.kill()
        process.wait()


# -- 1 and 4: beside the run, never over it ------------------------------------------------------------------
def test_eval_writes_beside_the_run_and_never_over_it(trained):
    before = snapshot(trained)
    files = set(os.listdir(trained))
    # the command of the report: a rejected eval into the run's own directory
    line = one_line(run("lt_bench.eval", f"ckpt={trained}", "split=bogus", f"hydra.run.dir={trained}"))
    print(f"\n{line}")
    assert f"hydra.run.dir={trained} holds a training run (checkpoints/, summary.json, metrics.csv)" in line
    assert "leave hydra.run.dir out" in line
    assert snapshot(trained) == before and set(os.listdir(trained)) == files  # not even a log or a lock
    overrides = yaml.safe_load((trained / ".hydra" / "overrides.yaml").read_text())
    assert overrides == [*FAST, *TRAINED]  # the training run's record, not split=bogus

    # by default: a folder of its own beside the run, RUN/eval/test-DATE_TIME
    result = run("lt_bench.eval", f"ckpt={trained}")
    assert result.returncode == 0, result.stderr[-3000:]
    (out,) = (trained / "eval").iterdir()
    print(f"evaluated into {out.relative_to(trained.parent)}")
    assert out.name.startswith("test-") and len(out.name) == len("test-2026-01-01_12-00-00")
    summary = json.loads((out / "summary.json").read_text())
    training = json.loads((trained / "summary.json").read_text())
    assert summary["test"]["top1"] == training["test"]["top1"]
    assert summary["dataset"] == {"evaluated": "mnist_lt", "trained_on": "mnist_lt", "same_as_training": True}
    # its own .hydra/, written with its summary; the run's keep their bytes
    assert yaml.safe_load((out / ".hydra" / "overrides.yaml").read_text()) == [f"ckpt={trained}"]
    assert snapshot(trained) == {**before, **{f"eval/{k}": v for k, v in snapshot(trained / "eval").items()}}


# -- 3: two evaluations never mix --------------------------------------------------------------------------
def test_a_folder_that_holds_an_evaluation_is_refused(trained, tmp_path):
    first = next((trained / "eval").iterdir(), None) if (trained / "eval").exists() else None
    if first is None:  # run alone: make the first evaluation here
        first = tmp_path / "first"
        assert run("lt_bench.eval", f"ckpt={trained}", f"hydra.run.dir={first}").returncode == 0
    before = snapshot(first)
    line = one_line(run("lt_bench.eval", f"ckpt={trained}", "split=train", f"hydra.run.dir={first}"))
    print(f"\n{line}")
    assert f"hydra.run.dir={first} already holds files (.hydra, confusion_test.npy" in line
    assert "each evaluation writes into a folder of its own" in line
    assert snapshot(first) == before


# the locks, with a real holder process: with `make faults` (the suite's budget), as the other busy-directory
# cases are
@pytest.mark.faults
def test_eval_is_refused_while_a_training_holds_the_run_or_another_holds_its_folder(
    trained, tmp_path, holder
):
    pid = holder(trained)  # as a training still running there holds it
    line = one_line(run("lt_bench.eval", f"ckpt={trained / 'checkpoints' / 'last.ckpt'}"))
    print(f"\n{line}")
    assert f"{trained} is in use by a running lt_bench process (PID {pid})" in line

    busy = tmp_path / "busy"
    pid = holder(busy)  # another evaluation running there
    line = one_line(run("lt_bench.eval", f"ckpt={trained}", f"hydra.run.dir={busy}"))
    print(line)
    assert f"{busy} is in use by another lt_bench run (PID {pid})" in line
    assert sorted(os.listdir(busy)) == [LOCK, "lt_bench_eval.log"]


# -- 10: one line ------------------------------------------------------------------------------------------
def test_eval_without_ckpt_or_into_an_unwritable_folder_is_one_line(trained, tmp_path):
    out = tmp_path / "out"
    line = one_line(run("lt_bench.eval", f"hydra.run.dir={out}"))
    assert line.startswith("lt_bench: error: ckpt= is missing: name the checkpoint or run directory")
    assert not out.exists()  # refused before Hydra made the folder, its log or .hydra/
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a folder under a file cannot be made, whoever runs the test (root included)
    line = one_line(run("lt_bench.eval", f"ckpt={trained}", f"hydra.run.dir={blocker / 'eval'}"), code=1)
    assert line.startswith(
        f"lt_bench: error: cannot write hydra.run.dir={blocker / 'eval'} (Not a directory)"
    )


# -- 9: the quick signal case ------------------------------------------------------------------------------
def test_eval_sigterm_from_timeout_is_one_line_143(trained, tmp_path):
    """SIGTERM to the process and then to its group (GNU timeout's way): counted once, one line, 143."""
    from tests.faults.test_eval_signals import HOLD_ENV, PLUGIN, signal_when_held

    out, marker = tmp_path / "eval", tmp_path / "held"
    process = subprocess.Popen(
        [sys.executable, "-m", "lt_bench.eval", f"ckpt={trained}", f"hydra.run.dir={out}", PLUGIN],
        cwd=ROOT, env={**ENV, HOLD_ENV: str(marker)}, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    code, stderr = signal_when_held(process, marker, group_too=True)  # as GNU timeout sends it
    assert code == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    (line,) = [x for x in stderr.splitlines() if x.startswith("lt_bench: error:")]
    print(f"\n{line}")
    assert line.startswith("lt_bench: error: stopped by SIGTERM during the evaluation; no summary.json")
    assert not (out / "summary.json").exists() and not (out / ".hydra").exists()


# -- 5: the splits hold the training run's images ----------------------------------------------------------
def evaluate_in_process(out: Path, *overrides: str) -> dict:
    from hydra import compose, initialize_config_dir

    from lt_bench.eval import evaluate, register

    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=list(overrides))
    return evaluate(cfg, list(overrides), out)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["split=val", "dataset.val_fraction=0.3"], "dataset.val_fraction=0.3 (training: 0.0)"),
        (["posthoc.la=[0,1]", "dataset.val_fraction=0.3"], "dataset.val_fraction=0.3"),
        (["seed=1"], "seed=1 (training: 0; with dataset.subset_seed null it draws the data)"),
        (["dataset.subset_seed=1"], "dataset.subset_seed=1 (training: None)"),
        (["dataset.imbalance_factor=10"], "dataset.imbalance_factor=10.0 (training: 100.0)"),
        (["dataset.profile=step"], "dataset.profile=step (training: exp)"),
        (["dataset.quantity_ratio=0.5"], "dataset.quantity_ratio=0.5"),
        (["dataset.test_per_class=50"], "dataset.test_per_class=50 (training: 20)"),
    ],
)
def test_overrides_that_redraw_the_splits_are_refused(trained, tmp_path, overrides, named):
    with pytest.raises(ConfigError) as refused:
        evaluate_in_process(tmp_path / "out", f"ckpt={trained}", *overrides)
    message = str(refused.value)
    assert message.startswith(named) and "would change which images the splits hold" in message
    assert not (tmp_path / "out" / "summary.json").exists()


def test_another_dataset_of_the_same_classes_is_evaluated_and_stated(trained, tmp_path):
    shape = ["dataset.num_classes=10", "dataset.image_size=28", "dataset.channels=1"]
    summary = evaluate_in_process(tmp_path / "out", f"ckpt={trained}", "dataset=synthetic", *shape)
    assert summary["dataset"] == {
        "evaluated": "synthetic",
        "trained_on": "mnist_lt",
        "same_as_training": False,
    }
    # a seed that leaves the data seed as it was (dataset.subset_seed fixed) changes no image: allowed
    from lt_bench.data.datamodule import split_changes

    trained_cfg = make_config("dataset.subset_seed=0").dataset
    assert split_changes(trained_cfg, 0, trained_cfg, 5) == []


# -- 2: a refused overwrite=true removes nothing -----------------------------------------------------------
@pytest.mark.parametrize(
    "refused",
    [
        ["dataset.drop_last=true", "dataset.batch_size=5000"],  # an epoch without a batch
        ["trainer.limit_train_batches=0.0001"],  # rounds to no batch
        ["dataset.batch_size=1"],  # BatchNorm would see a batch of one
    ],
)
def test_a_refused_overwrite_leaves_the_finished_run_byte_identical(trained, tmp_path, refused):
    """In-process (the command's train(); the CLI's refusal path is the one above): the checks that need
    the data and the trainer come before anything of the finished run is removed."""
    from lt_bench.train import train

    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir, ignore=shutil.ignore_patterns("eval"))
    before = snapshot(run_dir)
    assert {"summary.json", "metrics.csv", "checkpoints/last.ckpt", ".hydra/overrides.yaml"} <= set(before)
    with pytest.raises(ConfigError, match="batch"):
        train(make_config(*TRAINED, "overwrite=true", *refused), run_dir)
    assert snapshot(run_dir) == before
