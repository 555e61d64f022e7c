"""examples/wandb_sweep.yaml: the command ``wandb agent`` runs for a trial is a command line lt_bench takes.

The command is expanded as wandb 0.31's agent expands it (``wandb/wandb_agent.py``, ``Agent._command_run``,
with ``wandb.sdk.launch.sweeps.utils``'s ``create_sweep_command`` and ``create_sweep_command_args``), then
the part after ``python -m lt_bench`` is composed and checked in process. W&B's default ``${args}`` form
(``--schedule.e0=2``) is what the CLI refuses, as docs/sweeps.md says.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from lt_bench.startup import check, compose
from tests.helpers import ROOT

SWEEP_FILE = ROOT / "examples" / "wandb_sweep.yaml"


def agent_command(sweep: dict, values: dict) -> list[str]:
    """The command line the agent starts for a trial with parameter ``values`` (its non-function branch)."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    command = {"args": {k: {"value": v} for k, v in values.items()}, "program": sweep.get("program")}
    sweep_command = sweep_utils.create_sweep_command(sweep.get("command"))
    sweep_vars = sweep_utils.create_sweep_command_args(command)
    sweep_vars.update(interpreter=["python"], program=[command["program"]], env=["/usr/bin/env"])
    expanded: list[str] = []
    for c in map(str, sweep_command):
        if c.startswith("${") and c.endswith("}"):
            expanded += sweep_vars.get(c[2:-1]) or []
        else:
            expanded.append(c)
    return expanded


@pytest.fixture(scope="module")
def sweep() -> dict:
    return yaml.safe_load(SWEEP_FILE.read_text())


def test_the_agents_command_is_python_dash_m_lt_bench_with_hydra_overrides(sweep):
    command = agent_command(sweep, {"schedule.e0": 2, "schedule.e1": 20, "schedule.rho": 3.5, "seed": 0})
    assert command[:4] == ["/usr/bin/env", "python", "-m", "lt_bench"]
    assert command[-4:] == ["schedule.e0=2", "schedule.e1=20", "schedule.rho=3.5", "seed=0"]
    cfg = compose(command[4:])
    check(cfg)
    assert (cfg.schedule.name, cfg.schedule.e0, cfg.schedule.e1, cfg.schedule.rho) == ("ppw", 2, 20, 3.5)
    assert cfg.logger.name == "wandb" and cfg.dataset.val_fraction == 0.1 and cfg.seed == 0


def test_every_corner_of_the_sweeps_space_is_a_run_lt_bench_accepts(sweep):
    space = sweep["parameters"]
    e0, e1 = space["schedule.e0"], space["schedule.e1"]
    assert sweep["metric"] == {"name": "final/best_val", "goal": "maximize"}  # what log_final summarises
    for a, b in ((e0["min"], e1["min"]), (e0["max"], e1["max"]), (e0["max"], e1["min"])):
        for rho in (space["schedule.rho"]["min"], space["schedule.rho"]["max"]):
            values = {"schedule.e0": a, "schedule.e1": b, "schedule.rho": rho}
            check(compose(agent_command(sweep, values)[4:]))


def test_wandbs_default_args_form_is_refused_by_the_cli(sweep):
    default = agent_command({**sweep, "command": None}, {"schedule.e0": 2})
    assert default[-1] == "--schedule.e0=2"  # ${args}: what the docs warn about
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "lt_bench", "--schedule.e0=2"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0 and "unrecognized arguments: --schedule.e0=2" in result.stderr
