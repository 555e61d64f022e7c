"""The worked examples in examples/ run from another directory, with the package untouched: a loss and a
dataset source registered by the user's own module (``plugins=[...]``), their YAML found through
``hydra.searchpath``."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers import FAST, ROOT, compose_eval, read_summary

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
    summary = read_summary(tmp_path / "run")
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


def test_plugin_posthoc_adjustment_is_swept_like_the_built_ins():
    """examples' ``tau_norm_nobias``, registered from the user's module: hand-computed logits, swept by
    name through ``+posthoc.NAME=[...]``, and refused for a cosine head with the registry's one line."""
    from lt_bench.errors import ConfigError
    from lt_bench.metrics import LongTailMetrics
    from lt_bench.posthoc import POSTHOC, Predictions, check_head, sweep

    sys.path.insert(0, str(EXAMPLES))
    try:
        import lt_bench_examples  # noqa: F401 - registers the adjustment
    finally:
        sys.path.remove(str(EXAMPLES))
    assert "tau_norm_nobias" in POSTHOC
    # f = (1, 1), w_0 = (3, 4) (norm 5), w_1 = (0, 1), b = (0, 0.5): without the bias, at tau = 1,
    # (7/5, 1) -> class 0; the built-in tau_norm keeps b and gives (1.4, 1.5) -> class 1
    weight, bias = torch.tensor([[3.0, 4.0], [0.0, 1.0]]), torch.tensor([0.0, 0.5])
    outputs = Predictions(
        torch.tensor([[7.0, 1.5]]),
        torch.tensor([1]),
        torch.arange(1),
        [3, 1],
        features=torch.ones(1, 2),
        head="linear",
        head_weight=weight,
        head_bias=bias,
    )
    assert POSTHOC.get("tau_norm_nobias")(outputs, 1.0).tolist()[0] == pytest.approx([1.4, 1.0])

    def metric():
        return LongTailMetrics(2, [3, 1], many_threshold=2, few_threshold=2)

    report = sweep({"test": outputs}, {"tau_norm_nobias": [1], "tau_norm": [1]}, metric)
    assert report["tau_norm_nobias"]["rows"][0]["test"]["top1"] == 0.0
    assert report["tau_norm"]["rows"][0]["test"]["top1"] == 1.0
    with pytest.raises(ConfigError, match=r"posthoc.tau_norm_nobias needs a linear head.*posthoc.la"):
        check_head("tau_norm_nobias", "cosine")
    with pytest.raises(ConfigError, match="register it in lt_bench.posthoc.POSTHOC"):
        check_head("bogus", "linear")

    from lt_bench.eval import posthoc_taus

    cfg = compose_eval("ckpt=x", "+posthoc.tau_norm_nobias=[0,1]", "posthoc.la=[1]")
    assert posthoc_taus(cfg) == {"la": [1.0], "tau_norm_nobias": [0.0, 1.0]}
