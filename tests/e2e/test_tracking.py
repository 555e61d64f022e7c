"""The researcher's tracking loop, end to end (issue 28): a sweep's W&B runs grouped by setting with both
seeds in each group, the learning rate every epoch, the plots as images, a model artifact per run, and the
selected and final models' test figures under distinct keys; TensorBoard's HPARAMS entry and images;
``logger=[...]`` lists and ``logger=none``.

W&B stays offline: no key, an empty HOME and WANDB_DIR, stdin closed (a prompt would fail, not wait); the
runs are read back from their ``.wandb`` files (:mod:`tests.e2e.wandb_records`).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.wandb_records import offline_runs
from tests.helpers import ROOT

pytestmark = pytest.mark.slow

# one epoch of two batches on the embedded data; a validation split so that a model is selected and both
# the final and the selected model are tested; schedule=drw so that schedule.png is drawn
TINY = ["debug=tiny", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "dataset.val_fraction=0.1",
        "schedule=drw"]  # fmt: skip
PLOTS = ("per_class_accuracy", "reliability", "schedule")


def offline_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "NETRC"}
    home.mkdir(parents=True, exist_ok=True)
    return {**env, "HOME": str(home), "WANDB_MODE": "offline", "WANDB_DIR": str(home),
            "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # fmt: skip


def lt_bench(*args: str, home: Path, timeout: float = 600, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lt_bench", *args], cwd=cwd, env=offline_env(home), capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [{k: v for k, v in row.items() if v} for row in csv.DictReader(f)]


# -- the must-show: a 2 x 2 sweep on W&B -----------------------------------------------------------
@pytest.fixture(scope="module")
def wandb_sweep(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """``--multirun loss=ce,la seed=0,1 logger=wandb logger.log_model=true``: one process, four jobs (the key
    is in conf/logger/wandb.yaml, so `+logger.log_model` is refused: "drop the +")."""
    root = tmp_path_factory.mktemp("tracking")
    sweep = root / "loss_sweep"
    result = lt_bench(
        "--multirun", "loss=ce,la", "seed=0,1", "logger=wandb", "logger.log_model=true", *TINY,
        f"hydra.sweep.dir={sweep}", home=root / "home",
    )  # fmt: skip
    return result, sweep


def test_a_sweep_gives_one_wandb_group_per_setting_holding_every_seed(wandb_sweep):
    result, sweep = wandb_sweep
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {job: offline_runs(sweep / str(job)) for job in range(4)}
    assert all(len(r) == 1 for r in runs.values()), runs  # one W&B run per job
    runs = {job: r[0] for job, r in runs.items()}
    groups: dict[str, set[str]] = {}
    for run in runs.values():
        groups.setdefault(run.group, set()).add(run.name)
        assert run.job_type == "train"
        assert "sweep=loss_sweep" in run.tags and "loss=" + run.config["loss.name"] in run.tags
        assert "seed" not in run.group and run.name == f"{run.group}, seed={run.config['seed']}"
    assert len(groups) == 2  # one group per loss ...
    for group, names in groups.items():
        assert ("loss=ce" in group) != ("loss=la" in group)
        assert {name.rsplit("seed=", 1)[1] for name in names} == {"0", "1"}  # ... holding both seeds
    # what the report groups by is what W&B groups by
    assert all(run.group.startswith("dataset.val_fraction=0.1, debug=tiny, loss=") for run in runs.values())


def test_every_run_logs_the_learning_rate_plots_files_and_a_model_artifact(wandb_sweep):
    result, sweep = wandb_sweep
    assert result.returncode == 0, result.stderr[-3000:]
    for job in range(4):
        (run,) = offline_runs(sweep / str(job))
        # the learning rate, every epoch (one epoch here: the warm-up's first factor of optimizer.lr)
        assert run.column("lr") == [pytest.approx(0.1 / 5)]
        # the run's plots as images
        for plot in PLOTS:
            assert run.summary[f"plots/{plot}/_type"] == "image-file"
            assert (run.path.parent / "files" / run.summary[f"plots/{plot}/path"]).is_file()
        # summary.json and the .hydra files saved with the run
        assert {"summary.json", ".hydra/config.yaml", ".hydra/overrides.yaml"} <= set(run.files)
        saved = json.loads((run.path.parent / "files" / "summary.json").read_text())
        assert saved["test"]["balanced_acc"] == run.summary["final/test/balanced_acc"]
        # one per-class table (the bar chart's), not two
        tables = list((run.path.parent / "files" / "media" / "table" / "final").glob("per_class*.table.json"))
        assert len(tables) == 1
        # logger.log_model=true: the selected and the last checkpoints as model artifacts
        models = [a for a in run.artifacts if a["type"] == "model"]
        assert models and all(a["files"] == ["model.ckpt"] for a in models)
        assert any("best" in a["aliases"] for a in models)


def test_the_selected_and_the_final_models_test_figures_have_distinct_keys(wandb_sweep):
    result, sweep = wandb_sweep
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = sweep / "0"
    summary = json.loads((run_dir / "summary.json").read_text())
    (run,) = offline_runs(run_dir)
    # W&B history: the final epoch's model under test_last/, the selected one under test/, once each
    assert run.column("test_last/balanced_acc") == [pytest.approx(summary["test_last"]["balanced_acc"])]
    assert run.column("test/balanced_acc") == [pytest.approx(summary["test"]["balanced_acc"])]
    # metrics.csv: the same two rows, and the learning rate as a column of the epoch's row
    rows = metrics_rows(run_dir)
    last = [r for r in rows if "test_last/balanced_acc" in r]
    selected = [r for r in rows if "test/balanced_acc" in r]
    assert len(last) == len(selected) == 1 and last[0] is not selected[0]
    assert not any(k.startswith("test/") for k in last[0])
    assert float(selected[0]["test/balanced_acc"]) == pytest.approx(summary["test"]["balanced_acc"])
    assert [float(r["lr"]) for r in rows if "lr" in r] == [pytest.approx(0.02)]


# -- TensorBoard, lists, none --------------------------------------------------------------------------------
def test_tensorboard_gets_hparams_against_the_final_figures_and_the_plots(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    run_dir = tmp_path / "run"
    result = lt_bench("logger=[csv,tensorboard]", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}",
                      home=tmp_path / "home")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "metrics.csv").is_file() and not (run_dir / "wandb").exists()
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    hparams = events.PluginTagToContent("hparams")
    session = metadata.parse_session_start_info_plugin_data(hparams[metadata.SESSION_START_INFO_TAG])
    assert session.hparams["loss.name"].string_value == "ce"
    assert session.hparams["schedule.name"].string_value == "drw"
    assert session.hparams["trainer.max_epochs"].number_value == 2
    experiment = metadata.parse_experiment_plugin_data(hparams[metadata.EXPERIMENT_TAG])
    assert "final/test/balanced_acc" in {m.name.tag for m in experiment.metric_infos}
    summary = json.loads((run_dir / "summary.json").read_text())
    (value,) = events.Scalars("final/test/balanced_acc")
    assert value.value == pytest.approx(summary["test"]["balanced_acc"])
    assert set(events.Tags()["images"]) == {f"plots/{p}" for p in PLOTS}
    assert len(events.Scalars("lr")) == 2  # every epoch
    assert len(events.Scalars("test/top1")) == len(events.Scalars("test_last/top1")) == 1
    stored = (run_dir / "tensorboard" / "hparams.yaml").read_text()  # the configuration beside the events
    assert "loss.name: ce" in stored


def test_logger_none_writes_no_logs_and_still_the_summary(tmp_path):
    run_dir = tmp_path / "run"
    result = lt_bench("logger=none", *TINY, f"hydra.run.dir={run_dir}", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "summary.json").is_file() and (run_dir / "per_class_accuracy.png").is_file()
    assert not any((run_dir / name).exists() for name in ("metrics.csv", "tensorboard", "wandb"))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["logger=null"], "logger=null: a config group takes an option name, not null"),
        (["logger=[none,wandb]"], "logger=none means no logger at all, so it does not combine with wandb"),
        (["logger=wandb", "logger.log_model=sometimes"], "logger.log_model='sometimes' is not a choice"),
    ],
)
def test_a_logger_that_cannot_be_built_is_one_line_before_anything_is_written(args, needle, tmp_path):
    run_dir = tmp_path / "run"
    result = lt_bench(*args, *TINY, f"hydra.run.dir={run_dir}", home=tmp_path / "home", timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("lt_bench: error: ") and needle in line
    assert not (run_dir / "summary.json").exists() and not (run_dir / "metrics.csv").exists()
