"""The tracking loop's pieces in process (issue 28): which loggers ``logger=`` builds, the W&B identity of a
run (group = setting), the test prefix of the final and the selected model, the learning rate's keys, the
post-hoc table of an evaluation and its W&B run (offline), Hydra's refusals as one line with the closest
option or key, a plug-in with a wrong constructor, and search ranges that follow the run length."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from lt_bench.config import register
from lt_bench.errors import ConfigError, hydra_error_line
from lt_bench.loggers import (
    ModelTestPrefix,
    log_eval,
    log_model_of,
    logger_names,
    posthoc_columns,
    posthoc_rows,
    run_identity,
    run_tags,
    tensorboard_hparams,
)
from lt_bench.registry import Registry
from lt_bench.startup import check
from tests.helpers import CONF, make_config


# -- which loggers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ([], ["csv"]),
        (["logger=tensorboard"], ["csv", "tensorboard"]),
        (["logger=wandb"], ["csv", "wandb"]),  # csv is the file of record: always written ...
        (["logger=[csv,wandb]"], ["csv", "wandb"]),
        (["logger=[wandb,tensorboard]"], ["csv", "tensorboard", "wandb"]),
        (["logger=none"], []),  # ... unless logger=none
    ],
)
def test_logger_lists_compose_validate_and_build_in_order(overrides, names):
    cfg = make_config(*overrides)
    check(cfg)  # a list's merged keys (wandb's project, ...) are known keys
    assert logger_names(cfg.logger) == names


def test_a_misspelt_key_of_a_logger_list_is_still_refused():
    with pytest.raises(ConfigError, match="logger.projct: logger=tensorboard has no such key"):
        check(make_config("logger=[wandb,tensorboard]", "+logger.projct=x"))


def test_logger_none_does_not_combine_and_an_old_config_without_use_reads_its_name():
    with pytest.raises(ConfigError, match="logger=none means no logger at all"):
        logger_names(make_config("logger=[none,wandb]").logger)
    assert logger_names({"name": "tensorboard"}) == ["csv", "tensorboard"]  # a config stored before `use`
    with pytest.raises(ConfigError, match="logger='mlflow' is not known"):
        logger_names({"name": "mlflow"})


def test_log_model_takes_lightnings_three_values():
    assert log_model_of(make_config("logger=wandb").logger) is False
    assert log_model_of(make_config("logger=wandb", "logger.log_model=true").logger) is True
    assert log_model_of(make_config("logger=wandb", "logger.log_model=all").logger) == "all"
    with pytest.raises(ConfigError, match="logger.log_model='best' is not a choice"):
        log_model_of(make_config("logger=wandb", "logger.log_model=best").logger)


# -- identity ------------------------------------------------------------------------------------------------
@pytest.fixture
def in_a_multirun():
    """This process seen as job ``loss=la seed=1`` of a sweep in /runs/loss_ablation."""
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        overrides = ["hydra.mode=MULTIRUN", "hydra.sweep.dir=/runs/loss_ablation", "loss=la", "seed=1",
                     "logger=wandb", "trainer.devices=1", "schedule.e0=3"]  # fmt: skip
        hydra_cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(hydra_cfg)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = None  # other tests run outside Hydra


def test_the_group_is_the_setting_without_seed_and_execution_only_keys(in_a_multirun):
    cfg = make_config("logger=wandb", "seed=1")
    group, name = run_identity(cfg)
    assert group == "loss=la, schedule.e0=3"  # no seed, no logger, no trainer.devices
    assert name == "loss=la, schedule.e0=3, seed=1"
    assert run_tags(cfg)[-1] == "sweep=loss_ablation"
    # the same setting from another sweep (or a resumed run) joins the same group
    assert run_identity(cfg, ["schedule.e0=3", "seed=4", "loss=la", "ckpt_path=auto"])[0] == group
    assert run_identity(make_config("logger=wandb", "logger.group=mine"))[0] == "mine"


def test_a_run_without_overrides_is_in_the_defaults_group_and_names_stay_within_wandbs_limit():
    cfg = make_config("logger=wandb")
    assert run_identity(cfg, []) == ("defaults", "defaults, seed=0")
    long = [f"+x{i}={'v' * 20}" for i in range(10)]
    group, name = run_identity(cfg, long)
    assert len(group) <= 128 and len(name) <= 128 and group != name


# -- the test prefix and the learning rate -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("selects", "ckpt_path", "prefix"),
    [(True, None, "test_last"), (True, "best-epoch=003.ckpt", "test"), (False, None, "test")],
)
def test_the_final_models_test_is_test_last_when_a_selected_model_is_tested_after_it(
    selects, ckpt_path, prefix
):
    module = SimpleNamespace(test_prefix="test")
    ModelTestPrefix(selects_model=selects).on_test_start(SimpleNamespace(ckpt_path=ckpt_path), module)
    assert module.test_prefix == prefix


def test_the_learning_rate_is_logged_per_method_group():
    import torch

    from lt_bench.methods.base import LongTailModule

    logged = {}
    optimizer = torch.optim.SGD(
        [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1, "method_group": 0},
         {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1, "method_group": 0},  # no-decay split
         {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.01, "method_group": 1}], lr=0.1,
    )  # fmt: skip
    fake = SimpleNamespace(optimizers=lambda: optimizer, log_dict=lambda values, **kw: logged.update(values))
    LongTailModule._log_learning_rates(fake)
    assert logged == {"lr": 0.1, "lr/group1": 0.01}


def test_tensorboard_hparams_are_flat_scalars_and_text():
    flat = tensorboard_hparams({"loss": {"name": "la", "tau": 1.0}, "plugins": [], "ckpt_path": None})
    assert flat == {"loss.name": "la", "loss.tau": 1.0, "plugins": "[]", "ckpt_path": "None"}


# -- evaluation on W&B ---------------------------------------------------------------------------------------
FIGURES = {"top1": 0.5, "balanced_acc": 0.4, "many": 0.9, "medium": 0.4, "few": 0.1, "gmean": 0.3}
POSTHOC = {
    "select_by": "balanced_acc",
    "selected_on": "val",
    "la": {
        "rows": [{"tau": 0.0, "val": {**FIGURES, "n": 30}, "test": {**FIGURES, "n": 300}},
                 {"tau": 1.0, "val": {**FIGURES, "balanced_acc": 0.6, "n": 30},
                  "test": {**FIGURES, "balanced_acc": 0.55, "n": 300}}],
        "selected_tau": 1.0,
    },
}  # fmt: skip
EVAL_SUMMARY = {
    "split": "test",
    "test": {**FIGURES, "per_class": [0.9, 0.5, 0.1], "n": 300},
    "class_counts": [400, 40, 4],
    "checkpoint": "/runs/la/checkpoints/best-epoch=001.ckpt",
    "posthoc": POSTHOC,
}


def test_the_posthoc_table_has_one_row_per_adjustment_and_tau():
    columns = posthoc_columns(POSTHOC, "test")
    assert columns[:4] == ["adjustment", "tau", "selected", "test/top1"] and columns[-1] == "val/balanced_acc"
    rows = posthoc_rows(POSTHOC, "test")
    assert [r[:3] for r in rows] == [["la", 0.0, False], ["la", 1.0, True]]
    assert rows[1][columns.index("test/balanced_acc")] == 0.55 and rows[1][-1] == 0.6
    unselected = {**POSTHOC, "selected_on": None}
    assert len(posthoc_rows(unselected, "test")[0]) == len(posthoc_columns(unselected, "test"))


def test_eval_logs_nothing_without_wandb(tmp_path):
    assert log_eval(make_config(), EVAL_SUMMARY, tmp_path) is False
    assert not (tmp_path / "wandb").exists()


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("WANDB_")] + ["NETRC"]:
        monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(home))
    yield
    import wandb

    wandb.teardown()  # the service process and wandb's process-wide state end with the test


def test_eval_is_a_wandb_run_of_job_type_eval_in_the_training_runs_group(tmp_path, offline_wandb):
    import wandb

    from tests.e2e.wandb_records import offline_runs

    train_dir, eval_dir = tmp_path / "train", tmp_path / "eval"
    (train_dir / ".hydra").mkdir(parents=True)
    (train_dir / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(["loss=la", "seed=1", "logger=wandb"])
    )
    eval_dir.mkdir()
    (eval_dir / "summary.json").write_text(json.dumps(EVAL_SUMMARY))
    cfg = make_config("loss=la", "seed=1", "logger=wandb")  # the stored config, as eval runs it

    assert log_eval(cfg, EVAL_SUMMARY, eval_dir, train_dir) is True
    assert wandb.run is None  # finished
    (run,) = offline_runs(eval_dir)
    assert (run.group, run.name, run.job_type) == ("loss=la", "loss=la, seed=1", "eval")
    assert run.config["evaluated_run_dir"] == str(train_dir)
    assert run.summary["eval/test/balanced_acc"] == 0.4 and run.summary["eval/split"] == "test"
    (table,) = (run.path.parent / "files" / "media" / "table" / "eval").glob("posthoc_*.table.json")
    data = json.loads(table.read_text())
    assert data["columns"] == posthoc_columns(POSTHOC, "test")
    assert data["data"] == posthoc_rows(POSTHOC, "test")
    assert "summary.json" in run.files


# -- Hydra's refusals, one line ------------------------------------------------------------------------------
def refusal(*overrides: str) -> str | None:
    register()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            compose("config", overrides=list(overrides))
    except Exception as err:  # noqa: BLE001 - what Hydra raises is the point
        return hydra_error_line(err, list(overrides))
    raise AssertionError(f"{overrides} composed")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("loss=ldan", "loss=ldan: loss has no option 'ldan'; did you mean ldam? (options: asl, "),
        (
            "trainer.max_epoch=3",
            "trainer.max_epoch: no such key in trainer; did you mean trainer.max_epochs?",
        ),
        ("los=ce", "los: no such key; did you mean loss?"),
        ("+hparams_search=phase_alpa", "did you mean phase_alpha?"),
        (
            "hydra/launcher=joblib_cp",
            "hydra/launcher=joblib_cp: hydra/launcher has no option 'joblib_cp'; did you mean joblib_cpu?",
        ),  # fmt: skip
        ("logger=null", "logger=null: a config group takes an option name, not null"),
        ("+trainer.max_epochs=3", "+trainer.max_epochs: trainer.max_epochs exists already; drop the '+'"),
        ("dataset.imbalance_factor=abc", "could not be converted to Float"),
        ("trainer.max_epochs=[1", "cannot parse 'trainer.max_epochs=[1'"),
    ],
)
def test_hydra_refusals_become_one_line_with_the_closest_option_or_key(override, expected):
    line = refusal(override)
    assert line is not None and expected in line and "\n" not in line


def test_other_exceptions_are_left_to_hydra():
    assert hydra_error_line(RuntimeError("a bug")) is None
    assert hydra_error_line(ValueError("No trials are completed yet.")).startswith("no trial of the search")


# -- a plug-in with a constructor lt_bench cannot call -------------------------------------------------------
def test_a_plugin_registered_with_a_wrong_constructor_is_refused_naming_the_signature():
    methods = Registry("method")

    class TwoArguments:
        def __init__(self, cfg, info) -> None: ...

    with pytest.raises(ConfigError) as refused:
        methods.register("two")(TwoArguments)
    message = str(refused.value)
    assert "method 'two'" in message and "TwoArguments(cfg, info)" in message
    assert message.endswith("give it the signature __init__(self, cfg, info, schedule)")
    assert "two" not in methods

    class Fine:
        def __init__(self, cfg, info, schedule, extra=1) -> None: ...

    assert methods.register("fine")(Fine) is Fine
    with pytest.raises(ConfigError, match=r"give it the signature \(in_dim, num_classes"):
        Registry("head").register("h")(lambda in_dim: None)
    with pytest.raises(ConfigError, match=r"give it the signature \(in_channels"):
        Registry("backbone").register("b")(lambda channels=3: None)


# -- search ranges that follow the run ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("epochs", "e0", "e1"), [(30, (0, 15), (15, 27)), (3, (0, 1), (1, 2)), (200, (0, 100), (100, 180))]
)
def test_the_ppw_search_ranges_are_fractions_of_the_run(epochs, e0, e1):
    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config", overrides=["+hparams_search=ppw_e0_e1_rho", f"trainer.max_epochs={epochs}"],
            return_hydra_config=True,
        )  # fmt: skip
    params = cfg.hydra.sweeper.params
    assert params["schedule.e0"] == f"int(interval({e0[0]}, {e0[1]}))"
    assert params["schedule.e1"] == f"int(interval({e1[0]}, {e1[1]}))"
    for a, b in ((e0[0], e1[0]), (e0[1], e1[1]), (e0[1], e1[0])):  # the corners are runs lt_bench accepts
        check(make_config("+hparams_search=ppw_e0_e1_rho", f"trainer.max_epochs={epochs}",
                          f"schedule.e0={a}", f"schedule.e1={b}", fast=False))  # fmt: skip


def test_documented_files_exist():
    assert Path(CONF, "logger", "none.yaml").is_file()
