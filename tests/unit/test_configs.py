"""Every shipped config composes and validates; values that the recipes promise are what they set."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lt_bench.errors import ConfigError
from lt_bench.startup import check as validate  # the whole start-up check: values, then the method's own
from tests.helpers import CONF, make_config

EXPERIMENTS = sorted(p.stem for p in Path(CONF, "experiment").glob("*.yaml"))
GROUP_OPTIONS = [
    (group, p.stem)
    for group in ("dataset", "backbone", "loss", "schedule", "optimizer", "lr_schedule", "method", "logger")
    for p in sorted(Path(CONF, group).glob("*.yaml"))
]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_recipes_compose(name):
    cfg = make_config(f"experiment={name}", fast=False)
    validate(cfg)
    assert cfg.trainer.max_epochs >= 50


# options that change something at schedule.e0 need a schedule with a switch (schedule=none has none)
NEEDS_A_SWITCH = {("loss", "vs_tla"): ["schedule=two_stage"]}


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_group_option_composes(group, option):
    validate(make_config(f"{group}={option}", *NEEDS_A_SWITCH.get((group, option), [])))


def test_recipes_follow_the_papers():
    ppl = make_config("experiment=ppl_cri", "dataset=cifar10_lt", fast=False)
    assert (ppl.schedule.e0, ppl.schedule.e1, ppl.schedule.rho, ppl.loss.name) == (100, 160, 5.0, "cri")
    assert list(ppl.lr_schedule.milestones) == [160, 180] and list(ppl.lr_schedule.factors) == [0.1, 0.01]
    kps = make_config("experiment=kps_ga", fast=False)
    assert kps.schedule.e0 == 120 and kps.loss.after_e0.ga is True and kps.dataset.batch_size == 64
    vs = make_config("experiment=vs_tla_adrw_sam_cifar10_lt_if100", fast=False)
    assert (vs.schedule.e0, vs.schedule.delta, vs.optimizer.rho, vs.optimizer.rho_after) == (
        320,
        0.15,
        0.1,
        0.2,
    )
    drw = make_config("schedule=drw", "trainer.max_epochs=200")
    assert drw.schedule.e0 == drw.schedule.e1 == 160


@pytest.mark.parametrize(
    "override",
    ["dataset.imbalance_factor=0.5", "schedule.e0=5", "dataset.val_fraction=1.5", "optimizer.lr=0"],
)
def test_validate_rejects_bad_values(override):
    cfg = make_config("schedule=ppw", override)
    if override == "schedule.e0=5":
        OmegaConf.update(cfg, "schedule.e1", 2)
    with pytest.raises(ConfigError):
        validate(cfg)
