"""A command line Hydra refuses, or a plug-in lt_bench cannot call, is one ``lt_bench: error:`` line with
exit status 2, naming the closest valid option or key (or the signature expected), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def lt_bench(*args: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join(str(p) for p in (ROOT, extra_path) if p is not None)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lt_bench", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("lt_bench: error: ")
    return line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["loss=ldan"], "loss=ldan: loss has no option 'ldan'; did you mean ldam?"),
        (
            ["trainer.max_epoch=3"],
            "trainer.max_epoch: no such key in trainer; did you mean trainer.max_epochs?",
        ),
        (["--multirun", "loss=ce,ldan", "seed=0"], "did you mean ldam?"),  # a sweep's value, before any job
    ],
)
def test_a_misspelt_option_or_key_names_the_closest_one(args, needle, tmp_path):
    result = lt_bench(*args, "debug=tiny", f"hydra.run.dir={tmp_path / 'run'}",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)  # fmt: skip
    assert needle in one_line(result)
    assert not (tmp_path / "run" / "summary.json").exists()
    assert not list(tmp_path.glob("sweep/*/summary.json"))  # ce ran nothing: Hydra composes every job first


PLUGIN = """
from lt_bench.methods.base import LongTailModule
from lt_bench.methods.registry import METHODS


@METHODS.register("two_args")
class TwoArgs(LongTailModule):
    def __init__(self, cfg, info):
        super().__init__(cfg, info, None)
"""


def test_a_plugin_with_a_wrong_constructor_is_one_line_naming_the_expected_signature(tmp_path):
    (tmp_path / "bad_plugin.py").write_text(PLUGIN)
    result = lt_bench("plugins=[bad_plugin]", "debug=tiny", f"hydra.run.dir={tmp_path / 'run'}",
                      cwd=tmp_path, extra_path=tmp_path)  # fmt: skip
    line = one_line(result)
    assert "method 'two_args'" in line and "bad_plugin.TwoArgs(cfg, info)" in line
    assert "give it the signature __init__(self, cfg, info, schedule)" in line
