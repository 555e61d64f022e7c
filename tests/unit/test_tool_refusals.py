"""The tools around training refuse in one line, without a traceback (issue 29, items 6, 9 and 10):
``python -m lt_bench.report`` on summaries or overrides it cannot read, ``plugins=[m]`` where m fails on
import, an optimizer key the chosen optimizer does not read; and the in-process pieces of the stop
signals: one signal delivered twice counts once, an evaluation stops at once, its final writes are not
cut."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lt_bench.config import validate
from lt_bench.errors import ConfigError, RunInterrupted
from lt_bench.registry import import_plugins
from lt_bench.signals import DUPLICATE_WINDOW_S, Repeats, StopAtOnce, StopOnSigterm
from tests.helpers import ROOT, make_config

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
RESULT = {"top1": 0.5, "balanced_acc": 0.5, "many": 0.5, "medium": 0.5, "few": 0.5, "gmean": 0.5}


def report(folder: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lt_bench.report", str(folder), "--no-plots"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=ENV)


def write_run(folder: Path, summary: bytes | dict, overrides: bytes | None = None) -> Path:
    folder.mkdir(parents=True)
    content = summary if isinstance(summary, bytes) else json.dumps(summary).encode()
    (folder / "summary.json").write_bytes(content)
    if overrides is not None:
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "overrides.yaml").write_bytes(overrides)
    return folder


# -- lt_bench.report -------------------------------------------------------------------------------------
def test_report_on_summaries_it_cannot_use_is_one_line(tmp_path):
    latin1 = write_run(tmp_path / "latin1", '{"test": {"top1": 0.5, "note": "caf\xe9"}}'.encode("latin-1"))
    letters = write_run(
        tmp_path / "letters", {"class_counts": [5, 1], "test": {**RESULT, "per_class": ["a", 1]}}
    )
    write_run(tmp_path / "run" / "eval" / "test-2026-01-01_12-00-00", {"split": "test", "checkpoint": "x"})
    result = report(tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"lt_bench.report: error: no summary.json of a training run could be used under {tmp_path}"
    )
    assert f"skipped {latin1 / 'summary.json'}: 'utf-8' codec can't decode" in line
    assert f"skipped {letters / 'summary.json'}: test per_class is not a list of numbers" in line
    assert "left out 1 evaluation summary" in line


def test_report_ignores_overrides_it_cannot_read_with_a_warning(tmp_path):
    good = {"class_counts": [5, 1], "seed": 0, "test": {**RESULT, "per_class": [0.5, 0.5]}}
    latin1 = write_run(tmp_path / "a", good, overrides="- loss=caf\xe9\n".encode("latin-1"))
    number = write_run(tmp_path / "b", {**good, "seed": 1}, overrides=b"5\n")
    result = report(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [x for x in result.stderr.splitlines() if x.startswith("lt_bench.report: warning:")]
    assert len(warnings) == 2, result.stderr
    assert warnings[0].startswith(
        f"lt_bench.report: warning: ignored {latin1 / '.hydra' / 'overrides.yaml'}: "
    )
    assert (
        f"ignored {number / '.hydra' / 'overrides.yaml'}: not a list of overrides (it holds int '5')"
        in (warnings[1])
    )


# -- plugins ----------------------------------------------------------------------------------------------
@pytest.fixture
def modules(tmp_path, monkeypatch):
    (tmp_path / "lt29_raises.py").write_text("x = 1\nraise ValueError('no\\nluck')\n")
    (tmp_path / "lt29_syntax.py").write_text("def f(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_plugin_that_fails_on_import_is_one_config_error(modules):
    with pytest.raises(ConfigError) as raised:
        import_plugins(["lt29_raises"])
    where = f"{modules / 'lt29_raises.py'}, line 2"
    assert str(raised.value) == (
        f"plugins: importing 'lt29_raises' raised ValueError: no luck ({where}); fix the module, or remove "
        "it from plugins"
    )
    with pytest.raises(ConfigError) as raised:
        import_plugins(["lt29_syntax"])
    assert str(raised.value).startswith("plugins: 'lt29_syntax' has a syntax error (")
    assert f"{modules / 'lt29_syntax.py'}, line 1); fix the module, or remove it from plugins" in str(
        raised.value
    )


@pytest.mark.slow
def test_a_plugin_that_raises_is_one_line_on_the_command_line(modules, tmp_path):
    command = [sys.executable, "-m", "lt_bench", "plugins=[lt29_raises]", f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(modules), str(ROOT)])}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("lt_bench: error: plugins: importing 'lt29_raises' raised ValueError: no luck")
    assert not (tmp_path / "run" / "summary.json").exists()


# -- optimizer keys ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer=adamw", "optimizer.nesterov=true"], "optimizer.nesterov=true is read by SGD only; "
         "optimizer=adamw ignores it: use optimizer=sgd (or optimizer=sam optimizer.base=sgd), or remove "
         "optimizer.nesterov"),
        (["optimizer=adamw", "optimizer.momentum=0"], "optimizer.momentum=0.0 is read by SGD only"),
        (["optimizer=sgd", "optimizer.betas=[0.8,0.9]"], "optimizer.betas=[0.8, 0.9] is read by AdamW only"),
        (["optimizer=sgd", "optimizer.eps=1e-6"], "optimizer.eps=1e-06 is read by AdamW only"),
        (["optimizer=sgd", "optimizer.rho=0.1"], "optimizer.rho=0.1 is read by SAM only; optimizer=sgd"),
        (["optimizer=adamw", "optimizer.base=adamw"], "optimizer.base=adamw is read by SAM only"),
        (["optimizer=sam", "optimizer.base=adamw", "optimizer.nesterov=true"],
         "optimizer.nesterov=true is read by SGD only; optimizer=sam optimizer.base=adamw ignores it"),
        (["optimizer=sgd", "optimizer.rho_after=0.1"],
         "optimizer.rho_after=0.1 is read by optimizer=sam only"),
    ],
)  # fmt: skip
def test_a_key_the_optimizer_does_not_read_is_refused(overrides, message):
    with pytest.raises(ConfigError) as refused:
        validate(make_config(*overrides))
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(
    "overrides",
    [
        ["optimizer=adamw"],
        ["optimizer=adamw", "optimizer.momentum=0.9", "optimizer.nesterov=false"],  # the defaults
        ["optimizer=sgd", "optimizer.momentum=0", "optimizer.betas=[0.9,0.999]"],
        ["optimizer=sam", "optimizer.base=adamw", "optimizer.betas=[0.8,0.9]", "optimizer.rho=0.1"],
        ["optimizer=sam", "optimizer.nesterov=true"],
    ],
)
def test_the_keys_an_optimizer_reads_and_defaults_pass(overrides):
    validate(make_config(*overrides))


# -- stop signals, in-process ----------------------------------------------------------------------------
def test_the_same_signal_again_within_the_window_is_a_repeat(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    repeats = Repeats()
    assert not repeats.is_repeat(signal.SIGTERM)
    now[0] += 0.001
    assert repeats.is_repeat(signal.SIGTERM)  # GNU timeout: to the process, then to its group
    assert not repeats.is_repeat(signal.SIGINT)  # another signal is a new request
    now[0] += DUPLICATE_WINDOW_S
    assert not repeats.is_repeat(signal.SIGINT)  # the same one, later: a new request


def test_training_counts_a_signal_delivered_twice_once(tmp_path, monkeypatch):
    stop = StopOnSigterm(tmp_path / "last.ckpt")
    forced: list[str] = []
    monkeypatch.setattr(stop, "_force_exit", lambda why, resume: forced.append(why))
    stop._on_stop_signal(signal.SIGTERM, 60.0, "cmd")
    stop._on_stop_signal(signal.SIGTERM, 60.0, "cmd")  # the group's copy
    assert stop._seen == 1 and not forced
    stop._deadline.cancel()


def test_an_evaluation_stops_at_once_on_a_real_signal_and_finishes_its_writes_first():
    # what SIGINT does before: Python's KeyboardInterrupt, or SIG_IGN where a shell started the suite in
    # the background (`cmd &` without job control ignores SIGINT in the child)
    sigint_before = signal.getsignal(signal.SIGINT)
    stop = StopAtOnce("the evaluation", "nothing written")
    with stop.installed(), pytest.raises(RunInterrupted) as stopped:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # the same request twice: one stop
        for _ in range(100):  # the handler raises in the main thread at the next bytecode
            time.sleep(0.01)
    assert stopped.value.exit_code == 143
    assert str(stopped.value) == "stopped by SIGTERM during the evaluation; nothing written"

    stop = StopAtOnce("the evaluation", "nothing written")
    written = []
    with stop.installed(), pytest.raises(RunInterrupted) as stopped:
        with stop.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            written.append("summary.json")  # the final writes are not cut
            stop.outcome = "the summary is complete"
    assert written == ["summary.json"] and stopped.value.exit_code == 130
    assert str(stopped.value) == "stopped by SIGINT during the evaluation; the summary is complete"
    assert signal.getsignal(signal.SIGINT) is sigint_before  # restored


# -- item 8: the report and eval pick the right runs and checkpoints -------------------------------------
def test_the_report_leaves_an_evaluations_summary_out_of_the_runs(tmp_path):
    from lt_bench.report.load import load_runs

    run = tmp_path / "run0"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"status": "finished", "seed": 0, "test": {"top1": 0.5}}))
    evaluation = run / "eval" / "test-2026-12-05_18-00-00"
    evaluation.mkdir(parents=True)
    summary = {"split": "test", "checkpoint": str(run / "checkpoints" / "last.ckpt"), "test": {"top1": 0.6}}
    (evaluation / "summary.json").write_text(json.dumps(summary))
    runs, warnings = load_runs(tmp_path)
    assert [r.path for r in runs] == [run]  # the evaluation is no run (nor a group of the Friedman test)
    assert any("left out 1 evaluation summary" in w for w in warnings)


def test_eval_of_a_run_directory_with_two_best_checkpoints_takes_the_selected_one_or_refuses(tmp_path):
    from lt_bench.eval import checkpoint_file

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("best-epoch=003.ckpt", "best-epoch=007.ckpt", "last.ckpt"):
        (folder / name).write_bytes(b"")
    with pytest.raises(ConfigError, match="holds 2 best checkpoints .* no summary.json names the selected"):
        checkpoint_file(str(tmp_path))  # never last.ckpt in silence
    (tmp_path / "summary.json").write_text(json.dumps({"best_epoch": 3}))
    assert checkpoint_file(str(tmp_path)) == folder / "best-epoch=003.ckpt"
