"""The worked examples in examples/ run from another directory, with the package untouched: a loss and a
dataset source registered by the user's own module (``plugins=[...]``), their YAML found through
``hydra.searchpath``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers import FAST, ROOT

EXAMPLES = ROOT / "examples"


def _write_npz(path, classes=4, per_class=30, test_per_class=5, size=12):
    rng = np.random.default_rng(0)

    def split(n):
        labels = np.repeat(np.arange(classes), n)
        # each class a different brightness: learnable in one epoch
        images = (labels[:, None, None] * 60 + rng.integers(0, 20, (len(labels), size, size))).astype(
            np.uint8
        )
        return images, labels

    (tri, trl), (tei, tel) = split(per_class), split(test_per_class)
    np.savez(path, train_images=tri, train_labels=trl, test_images=tei, test_labels=tel)


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES), "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable,
        "-m",
        "lt_bench",
        *FAST,
        "plugins=[lt_bench_examples]",
        f"hydra.searchpath=[file://{EXAMPLES / 'conf'}]",
        *args,
    ]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_plugin_loss_and_npz_dataset_train_from_another_directory(tmp_path):
    _write_npz(tmp_path / "toy.npz")
    result = _cli(
        "loss=poly1",
        "loss.epsilon=2.0",
        "dataset=npz_example",
        "dataset.path=toy.npz",
        "trainer.max_epochs=1",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["loss"] == {"name": "poly1", "epsilon": 2.0}
    # exp profile, IF 10, 4 classes: int(30 * 10^(-j/3)) = 30, 13, 6, 3
    assert summary["class_counts"] == [30, 13, 6, 3]
    assert summary["test"]["n"] == 20


def test_plugin_dataset_without_its_path_is_one_line(tmp_path):
    result = _cli("dataset=npz_example", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and "path" in lines[0], result.stderr


def test_poly1_by_hand():
    sys.path.insert(0, str(EXAMPLES))
    try:
        from lt_bench_examples import Poly1Loss
    finally:
        sys.path.remove(str(EXAMPLES))
    # two equal logits: p_y = 1/2, CE = ln 2; Poly-1 adds epsilon (1 - 1/2)
    loss = Poly1Loss([1, 1], epsilon=1.0)(torch.zeros(1, 2, dtype=torch.float64), torch.tensor([0]))
    assert loss.item() == pytest.approx(math.log(2) + 0.5)
