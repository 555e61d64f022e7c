"""``python -m lt_bench.eval``: a checkpoint evaluated again gives exactly the training run's test figures
(every method family, 1 and 2 gloo processes); overrides change only what they name; exports, post-hoc
sweeps, clear errors; run files honour the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from lt_bench.errors import ConfigError
from lt_bench.train import train
from tests.helpers import (
    CONF,
    FAST,
    ROOT,
    cli_env,
    compose_eval,
    evaluate_in_process,
    make_config,
    read_summary,
    run_cli,
    skip_plots,
)

# every figure of a result; "confusion" is the name of the .npy file beside summary.json
RESULT_KEYS = {
    "top1", "balanced_acc", "many", "medium", "few", "gmean", "top5", "ece", "nll", "per_class", "n",
    "calibration", "confusion",
}  # fmt: skip
METHODS = {
    "standard": ["dataset.val_fraction=0.2"],  # with model selection: a best and a last checkpoint
    "phase": ["method=phase"],  # max_epochs=2: schedule.e0 = int(0.8 * 2) = 1, so epoch 1 is stage 2
    "arconvl": ["method=arconvl"],  # prototype head with radii
    "ldam": ["loss=ldam"],  # cosine head: logits are s * cos
}


def run_eval(*args: str, run_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m lt_bench.eval ARGS`` as a user types it."""
    command = [sys.executable, "-m", "lt_bench.eval", f"hydra.run.dir={run_dir}", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=cli_env())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 2-epoch training run per method, made on first use and shared by the tests of this module (in
    process, without the training run's figures: the tests here look at the evaluation's)."""
    runs: dict[str, Path] = {}

    def get(method: str) -> Path:
        if method not in runs:
            run_dir = tmp_path_factory.mktemp(method) / "run"
            with pytest.MonkeyPatch.context() as monkeypatch:
                skip_plots(monkeypatch)
                train(make_config(*METHODS[method], "dataset.test_per_class=30"), run_dir)
            runs[method] = run_dir
        return runs[method]

    return get


# -- configuration ----------------------------------------------------------------------------------------
def test_eval_defaults_mirror_the_training_defaults():
    training = yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
    evaluation = yaml.safe_load((CONF / "eval.yaml").read_text())["defaults"]
    assert training[0] == "lt_bench_schema" and evaluation[0] == "lt_bench_eval_schema"
    assert evaluation[1:] == training[1:]  # every training group can be named on the eval command line
    from lt_bench.eval import CONFIG_GROUPS, EVAL_KEYS

    groups = [next(iter(d)) for d in training if isinstance(d, dict) and "override" not in next(iter(d))]
    assert set(CONFIG_GROUPS) == set(groups) - {"experiment", "debug"}
    assert EVAL_KEYS == ("ckpt", "split", "save", "posthoc", "confusion")


def test_overrides_change_only_what_they_name():
    from lt_bench.eval import apply_overrides

    stored = OmegaConf.to_container(compose_eval("ckpt=x", *FAST), resolve=True)
    for key in ("ckpt", "split", "save", "posthoc", "confusion"):
        stored.pop(key)
    stored["dataset"]["imbalance_factor"] = 10.0  # what the run was trained with
    stored["trainer"]["max_epochs"] = 7
    overrides = ["ckpt=x", "split=val", "dataset.root=/data", "trainer.devices=3", "posthoc.la=[0,1]"]
    cfg = apply_overrides(OmegaConf.create(stored), compose_eval(*overrides), overrides)
    assert cfg.dataset.root == "/data" and cfg.trainer.devices == 3  # named: changed
    assert cfg.dataset.imbalance_factor == 10.0 and cfg.trainer.max_epochs == 7  # not named: kept
    assert "ckpt" not in cfg and "posthoc" not in cfg
    # a group replaces its whole node, as composing it would
    overrides = ["ckpt=x", "dataset=digits_lt"]
    cfg = apply_overrides(OmegaConf.create(stored), compose_eval(*overrides), overrides)
    assert cfg.dataset.source == "digits_lt" and cfg.trainer.max_epochs == 7
    with pytest.raises(ConfigError, match="experiment="):
        apply_overrides(OmegaConf.create(stored), compose_eval("ckpt=x"), ["experiment=phase"])


# -- the training run's figures, again --------------------------------------------------------------------
@pytest.mark.slow
# the suite keeps one method; the others run with `make test-heavy` (the suite's 10-minute budget)
@pytest.mark.parametrize(
    "method", [m if m == "standard" else pytest.param(m, marks=pytest.mark.heavy) for m in METHODS]
)
def test_evaluating_the_checkpoint_gives_the_training_runs_test_figures(method, trained, tmp_path):
    run_dir = trained(method)
    training = read_summary(run_dir)
    checkpoints = {"last.ckpt": "test_last"}
    if method == "standard":  # the run directory means its selected model, as summary["test"]
        assert training["selected_by"] != "last"
        checkpoints = {"": "test", "last.ckpt": "test_last"}
    for name, key in checkpoints.items():
        ckpt = run_dir / "checkpoints" / name if name else run_dir
        eval_dir = tmp_path / f"eval_{key}"
        result = run_eval(f"ckpt={ckpt}", "print_table=true", run_dir=eval_dir)
        assert result.returncode == 0, result.stderr[-3000:]
        evaluated = read_summary(eval_dir)
        assert set(evaluated["test"]) == set(training[key]) == RESULT_KEYS
        assert evaluated["test"] == {**training[key], "confusion": "confusion_test.npy"}
        expected = np.load(run_dir / training[key]["confusion"])
        assert np.array_equal(np.load(eval_dir / "confusion_test.npy"), expected)
        assert "balanced_acc" in result.stdout and "nll" in result.stdout  # the results table
        assert (eval_dir / "reliability.png").exists() and (eval_dir / "per_class_accuracy.png").exists()
    if method == "phase":
        state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        assert bool(state["stage2_entered"])  # the figures above are stage 2's


@pytest.mark.slow
def test_validation_split_and_exports(trained, tmp_path):
    run_dir = trained("standard")
    training = read_summary(run_dir)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    # split=val: the final epoch's validation figures, exactly
    # (each evaluation writes into a folder of its own: this one under tmp_path/val)
    summary = evaluate_in_process(tmp_path / "val", f"ckpt={ckpt}", "split=val")
    assert {k: v for k, v in summary["val"].items() if k != "confusion"} == {
        k: v for k, v in training["val"].items() if k != "confusion"
    }
    # exports and post-hoc sweeps; tau chosen on the validation split
    overrides = [f"ckpt={ckpt}", "save=[logits,features]", "posthoc.la=[0,1,2]", "posthoc.tau_norm=[0,1]"]
    summary = evaluate_in_process(tmp_path, *overrides)
    eval_dir = tmp_path / "eval"
    with np.load(eval_dir / "outputs_test.npz") as f:
        logits, features, targets = f["logits"], f["features"], f["targets"]
        assert (
            logits.shape == (300, 10)
            and features.shape[0] == 300
            and f["indices"].tolist() == list(range(300))
        )
        assert f["head_weight"].shape == (10, features.shape[1]) and str(f["head"]) == "linear"
        assert f["class_counts"].tolist() == training["class_counts"]
    assert float((logits.argmax(1) == targets).mean()) == pytest.approx(training["test_last"]["top1"])
    posthoc = summary["posthoc"]
    assert posthoc["selected_on"] == "val" and posthoc["la"]["selected_tau"] in (0.0, 1.0, 2.0)
    la0 = posthoc["la"]["rows"][0]
    assert la0["tau"] == 0.0  # tau = 0 is the model as trained
    for key in ("top1", "balanced_acc", "top5", "gmean"):
        assert la0["test"][key] == training["test_last"][key]
        assert la0["val"][key] == training["val"][key]
    assert set(posthoc["tau_norm"]["rows"][1]) == {"tau", "val", "test"}
    assert summary["outputs"] == "outputs_test.npz" and read_summary(eval_dir)["posthoc"] == posthoc


@pytest.mark.slow
def test_data_that_does_not_fit_the_checkpoint_fails_with_one_line(trained, tmp_path):
    ckpt = trained("ldam") / "checkpoints" / "last.ckpt"
    result = run_eval(f"ckpt={ckpt}", "dataset=synthetic", "dataset.num_classes=5", run_dir=tmp_path / "a")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("lt_bench: error:")]
    assert "trained on 10 classes" in line and "has 5" in line
    # 8x8 digits into a 28x28 convnet: the weights cannot fit, and the message says which
    with pytest.raises(ConfigError, match="does not fit the model.*backbone.dense.weight"):
        evaluate_in_process(tmp_path, f"ckpt={ckpt}", "dataset=digits_lt")
    with pytest.raises(ConfigError, match="no validation split"):
        evaluate_in_process(tmp_path, f"ckpt={ckpt}", "split=val")
    with pytest.raises(ConfigError, match="cosine head"):
        evaluate_in_process(tmp_path, f"ckpt={ckpt}", "posthoc.tau_norm=[1]")
    with pytest.raises(ConfigError, match="does not exist"):
        evaluate_in_process(tmp_path, f"ckpt={tmp_path / 'missing.ckpt'}")


@pytest.mark.slow
def test_run_files_honour_the_umask(trained):
    run_dir = trained("standard")
    mask = os.umask(0o022)
    os.umask(mask)
    for path in (
        run_dir / "summary.json",
        run_dir / "checkpoints" / "last.ckpt",
        run_dir / "confusion_test.npy",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


def test_atomic_write_gives_the_umask_mode(tmp_path):
    from lt_bench.atomic import atomic_write

    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "f.txt", lambda f: f.write("x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o640
    assert (tmp_path / "f.txt").read_text() == "x" and not list(tmp_path.glob(".f.txt.*"))


# -- two processes ------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.heavy
def test_two_gloo_processes_evaluate_exactly_as_the_two_process_training_run(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("trainer=ddp_cpu", "dataset.test_per_class=37", run_dir=run_dir, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    training = read_summary(run_dir)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    # the stored config says ddp_cpu: two processes again, each image once (370, an odd shard each)
    result = run_eval(f"ckpt={ckpt}", "save=[logits]", run_dir=tmp_path / "ddp", timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    two = read_summary(tmp_path / "ddp")
    assert two["test"] == {**training["test"], "confusion": "confusion_test.npy"}
    # one process: every count-based figure is the same; the float sums differ only in summation order
    result = run_eval(f"ckpt={ckpt}", "trainer=default", "trainer.accelerator=cpu", "save=[logits]",
                      run_dir=tmp_path / "one")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    one = read_summary(tmp_path / "one")
    for key in ("top1", "balanced_acc", "many", "medium", "few", "gmean", "top5", "per_class", "n"):
        assert one["test"][key] == two["test"][key], key
    assert one["test"]["n"] == 370
    assert one["test"]["nll"] == pytest.approx(two["test"]["nll"], rel=1e-9)
    assert one["test"]["ece"] == pytest.approx(two["test"]["ece"], rel=1e-9)
    # the 2-process export is gathered into split order: the same rows as one process's
    with (
        np.load(tmp_path / "ddp" / "outputs_test.npz") as a,
        np.load(tmp_path / "one" / "outputs_test.npz") as b,
    ):
        assert np.array_equal(a["targets"], b["targets"]) and len(a["targets"]) == 370
        np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-5, atol=1e-5)
