"""Fashion-MNIST found without dataset.root, a clear line when it is absent, and one short real-data
smoke test that runs only where the real files are installed (`make data`)."""

from __future__ import annotations

import pytest

from lt_bench.data import sources
from lt_bench.data.loaders import idx
from lt_bench.errors import ConfigError
from tests.helpers import read_summary, run_cli

REAL = idx.DEBIAN_FASHION_MNIST
needs_real_data = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"the real Fashion-MNIST is not installed in {REAL} (run `make data`)"
)


def test_missing_fashion_mnist_names_both_ways_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(ConfigError) as err:
        sources.SOURCES.get("fashion_mnist")(root=None)
    message = str(err.value)
    assert "\n" not in message and "make data" in message and "dataset.root=DIR" in message


@pytest.mark.real_data
@needs_real_data
def test_real_fashion_mnist_trains_a_few_batches_without_a_root(tmp_path):
    result = run_cli(
        "dataset=fashion_mnist",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=0.02",
        run_dir=tmp_path / "run",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(tmp_path / "run")
    assert summary["config"]["dataset"]["root"] is None
    assert summary["test"]["n"] == 10_000  # the official balanced t10k set
    assert summary["class_counts"][0] == 6000 and summary["class_counts"][-1] == 60  # exp, IF 100
