"""``python -m benchmarks.bench --quick`` (``make bench``) runs end to end and prints every section, the
ARConvL one with ``--arconvl``, the RIDE one with ``--ride``; timings are not checked."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers import CONF, ROOT, cli_env

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
        env=cli_env(),
    )


@pytest.fixture(scope="module")
def quick_bench() -> subprocess.CompletedProcess:
    """``make bench ARGS='--arconvl --ride'`` at its quickest, on the CPU (run once for the module)."""
    return run_bench("--device", "cpu", "--arconvl", "--ride")


def test_quick_bench_prints_every_section_and_ends_with_the_ratio(quick_bench):
    result = quick_bench
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


def test_ride_bench_section_prints_sizes_step_times_and_ratios(quick_bench):
    """The RIDE section (``--ride``; ``python -m benchmarks.ride`` prints it alone)."""
    from benchmarks.bench import parse_args

    assert parse_args(["--ride", "--quick"]).ride and not parse_args(["--quick"]).ride
    result = quick_bench
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("RIDE")]
    steps = {line.split()[1] for line in lines if "ms/step" in line}
    assert steps == {"resnet32", "ride_resnet32"}
    assert any("770,896 parameters" in line for line in lines)  # 3 experts at 24/48 channels, 10 classes
    ratio = (
        r"RIDE ride_resnet32 / resnet32: parameters 1\.66x, MACs 1\.46x, "
        r"step time \d+\.\d\dx \(paired by round\)"
    )
    assert any(re.fullmatch(ratio, line) for line in lines), lines


def test_bench_rejects_variant_lists_without_the_compared_pair(capsys):
    # the command line's own check (benchmarks.cli.parse_args), before anything is built
    from benchmarks.bench import parse_args

    with pytest.raises(SystemExit) as exit_:
        parse_args(["--quick", "--variants", "tensor"])
    assert exit_.value.code == 2 and "--variants needs pil and lt_bench" in capsys.readouterr().err
