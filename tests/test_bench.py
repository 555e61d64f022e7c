"""``python -m benchmarks.bench --quick`` (``make bench``) runs end to end and prints every section, the
ARConvL one with ``--arconvl``; timings are not checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import CONF, ROOT

pytestmark = pytest.mark.slow


def run_bench(
    *args: str, module: str = "benchmarks.bench", timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m benchmarks.bench --quick ARGS`` as a user runs it, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", module, "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def test_quick_bench_prints_every_section_and_ends_with_the_ratio():
    result = run_bench("--device", "cpu", "--arconvl")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert re.fullmatch(r"lt_bench / plain-loop throughput ratio: \d+\.\d\d", lines[-1]), lines[-1]
    tags = {" ".join(line.split()[:2]) for line in lines if line.startswith(("THROUGHPUT", "LOSS"))}
    for variant in ("pil", "tensor", "lt_bench", "lt_bench_cl", "lt_bench_bf16"):
        assert f"THROUGHPUT {variant}" in tags
    for loss in (path.stem for path in (CONF / "loss").glob("*.yaml")):
        assert f"LOSS {loss}" in tags
    assert sum(line.startswith("PHASE") for line in lines) == 3
    assert any(line.startswith("RATIO lt_bench / plain loop on the same tensor pipeline") for line in lines)
    steps = {tuple(line.split()[1:3]) for line in lines if line.startswith("ARCONVL") and "ms/step" in line}
    assert steps == {(m, p) for m in ("ce", "arconvl") for p in ("fp32", "bf16_cl")}
    ratio = (
        r"ARCONVL arconvl / ce step cost \(paired by round\): "
        r"fp32 \d+\.\d\d, bf16-mixed \+ channels_last \d+\.\d\d"
    )
    assert any(re.fullmatch(ratio, line) for line in lines), [x for x in lines if x.startswith("ARCONVL")]


def test_bench_rejects_variant_lists_without_the_compared_pair():
    result = run_bench("--variants", "tensor", timeout=120)
    assert result.returncode == 2 and "--variants needs pil and lt_bench" in result.stderr
