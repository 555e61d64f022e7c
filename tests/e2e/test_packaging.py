"""A non-editable install works: build the wheel, install it into a fresh venv outside the checkout, and
train one epoch with the ``lt-bench`` console script from another directory.

The fresh venv sees the dependencies of the test's own environment through a ``.pth`` line (installing
torch again would take minutes and a network), but not this checkout: the editable install's import hook
lives in a ``.pth`` file of the test venv's site-packages, which a path line does not execute, and the
test checks that ``lt_bench`` is imported from the fresh venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import FAST, ROOT

pytestmark = pytest.mark.slow


def _run(*command: str | Path, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def test_wheel_installs_and_trains_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        dist,
        ROOT,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("lt_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lt_bench/conf/config.yaml" in names
    assert all(
        any(n.startswith(f"lt_bench/conf/{g}/") for n in names) for g in ("loss", "experiment", "hydra")
    )

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (purelib / "test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # the test venv's pip installs into the fresh one; no index is consulted
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=tmp_path,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONWARNINGS": "ignore"}
    where = _run(
        venv / "bin" / "python", "-c", "import lt_bench; print(lt_bench.__file__)", cwd=elsewhere, env=env
    )
    assert where.stdout.strip().startswith(str(venv)), where.stdout
    _run(
        venv / "bin" / "lt-bench",
        *FAST,  # the preset ships with the package (conf/debug/tiny.yaml)
        "trainer.max_epochs=1",
        "hydra.run.dir=run",
        cwd=elsewhere,
        env=env,
    )
    assert (elsewhere / "run" / "summary.json").exists()
    assert (elsewhere / "run" / "lt_bench.log").read_text().strip()
