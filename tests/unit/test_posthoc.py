"""Post-hoc logit adjustment and tau-normalisation against hand-computed values on tiny saved outputs, the
tau sweep's selection rule, and LWS (the learned counterpart of tau-normalisation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lt_bench.errors import ConfigError
from lt_bench.metrics import LongTailMetrics
from lt_bench.posthoc import (
    Predictions,
    adjusted_logits,
    choose,
    load_predictions,
    logit_adjusted,
    save_predictions,
    sweep,
    tau_normalised_logits,
    tau_normalised_weight,
)

COUNTS = [3, 1]  # pi = (0.75, 0.25)
LOG_PI = (math.log(0.75), math.log(0.25))


def _outputs(logits, targets, **kw) -> Predictions:
    logits = torch.tensor(logits, dtype=torch.float32)
    return Predictions(logits, torch.tensor(targets), torch.arange(len(targets)), COUNTS, **kw)


def _metric() -> LongTailMetrics:
    return LongTailMetrics(2, COUNTS, many_threshold=2, few_threshold=2)


def test_logit_adjustment_hand_computed():
    # z - tau log pi: (1, 0.5) -> (1 - log 0.75, 0.5 - log 0.25) = (1.287682, 1.886294): the tail class wins
    z = torch.tensor([[1.0, 0.5]])
    adjusted = logit_adjusted(z, COUNTS, 1.0)
    assert adjusted.tolist()[0] == pytest.approx([1.287682072, 1.886294361])
    assert adjusted.argmax(1).item() == 1 and z.argmax(1).item() == 0
    assert logit_adjusted(z, COUNTS, 0.0).tolist() == [[1.0, 0.5]]  # tau = 0: the model as trained
    assert logit_adjusted(z, COUNTS, 2.0).tolist()[0] == pytest.approx(
        [1 - 2 * LOG_PI[0], 0.5 - 2 * LOG_PI[1]]
    )


def test_tau_normalisation_hand_computed():
    # w_0 = (3, 4) (norm 5), w_1 = (0, 1) (norm 1), b = (0, 0.5), f = (1, 1)
    weight, bias, f = (
        torch.tensor([[3.0, 4.0], [0.0, 1.0]]),
        torch.tensor([0.0, 0.5]),
        torch.tensor([[1.0, 1.0]]),
    )
    assert tau_normalised_weight(weight, 1.0).flatten().tolist() == pytest.approx([0.6, 0.8, 0.0, 1.0])
    assert tau_normalised_logits(f, weight, bias, 0.0).tolist() == [[7.0, 1.5]]  # the trained head
    assert tau_normalised_logits(f, weight, bias, 1.0).tolist()[0] == pytest.approx([1.4, 1.5])
    assert tau_normalised_logits(f, weight, bias, 0.5).tolist()[0] == pytest.approx([7 / math.sqrt(5), 1.5])


# the validation outputs: balanced accuracy 0.75 at tau 0, 1.0 at tau 1, 0.5 at tau 2 (worked out below)
#   (1, 0.5) y=1: tau 0 -> 0 (wrong), tau 1 -> (1.288, 1.886) 1 (right), tau 2 -> (1.575, 3.273) 1 (right)
#   (2, 0.5) y=0: tau 0 -> 0, tau 1 -> (2.288, 1.886) 0 (right), tau 2 -> (2.575, 3.273) 1 (wrong)
#   (0.2, -1) y=0: tau 0 -> 0, tau 1 -> (0.488, 0.386) 0 (right), tau 2 -> (0.775, 1.773) 1 (wrong)
#   (0, 1) y=1: always 1 (right)
VAL = ([[1.0, 0.5], [2.0, 0.5], [0.2, -1.0], [0.0, 1.0]], [1, 0, 0, 1])
# the test outputs prefer tau 2, which the sweep must not choose: (2, 0.5) y=1 is right only at tau 2
TEST = ([[2.0, 0.5]], [1])


def test_sweep_chooses_tau_on_validation_never_on_test(tmp_path):
    val, test = _outputs(*VAL), _outputs(*TEST)
    # through the saved files, as `python -m lt_bench.eval save=[logits]` writes them
    save_predictions(tmp_path / "val.npz", val, keep=["logits"])
    save_predictions(tmp_path / "test.npz", test, keep=["logits"])
    loaded = {"val": load_predictions(tmp_path / "val.npz"), "test": load_predictions(tmp_path / "test.npz")}
    report = sweep(loaded, {"la": [0, 1, 2]}, _metric, select_on="val", select_by="balanced_acc")
    rows = report["la"]["rows"]
    assert [r["tau"] for r in rows] == [0.0, 1.0, 2.0]
    assert [r["val"]["balanced_acc"] for r in rows] == [0.75, 1.0, 0.5]
    assert [r["val"]["top1"] for r in rows] == [0.75, 1.0, 0.5]
    assert [r["test"]["top1"] for r in rows] == [0.0, 0.0, 1.0]
    assert report["la"]["selected_tau"] == 1.0 and report["selected_on"] == "val"
    # without a validation split nothing is chosen: choosing on test would tune on it
    alone = sweep({"test": loaded["test"]}, {"la": [0, 1, 2]}, _metric, select_on="val")
    assert alone["la"]["selected_tau"] is None and alone["selected_on"] is None


def test_sweep_tau_norm_from_saved_features(tmp_path):
    # f = (1, 1) with w_0 = (3, 4), w_1 = (0, 1), b = (0, 0.5): class 0 at tau 0 and 0.5, class 1 at tau 1
    weight, bias = torch.tensor([[3.0, 4.0], [0.0, 1.0]]), torch.tensor([0.0, 0.5])
    outputs = _outputs(
        [[7.0, 1.5]], [1], features=torch.ones(1, 2), head="linear", head_weight=weight, head_bias=bias
    )
    save_predictions(tmp_path / "o.npz", outputs, keep=["logits", "features"])
    loaded = load_predictions(tmp_path / "o.npz")
    assert loaded.head == "linear" and torch.equal(loaded.head_weight, weight)
    report = sweep({"test": loaded}, {"tau_norm": [0, 0.5, 1]}, _metric)
    assert [r["test"]["top1"] for r in report["tau_norm"]["rows"]] == [0.0, 0.0, 1.0]
    assert adjusted_logits("tau_norm", loaded, 1.0).tolist()[0] == pytest.approx([1.4, 1.5])


def test_saved_outputs_file_layout(tmp_path):
    outputs = _outputs(*VAL, features=torch.zeros(4, 3), head="cosine", logit_scale=30.0)
    save_predictions(tmp_path / "o.npz", outputs, keep=["logits", "features"])
    with np.load(tmp_path / "o.npz") as f:
        assert sorted(f.files) == [
            "class_counts",
            "features",
            "head",
            "indices",
            "logit_scale",
            "logits",
            "targets",
        ]
        assert f["logits"].dtype == np.float32 and f["logits"].shape == (4, 2)
        assert f["targets"].dtype == np.int64 and f["indices"].tolist() == [0, 1, 2, 3]
        assert f["class_counts"].tolist() == COUNTS and str(f["head"]) == "cosine"
        assert float(f["logit_scale"]) == 30.0
    save_predictions(tmp_path / "t.npz", outputs, keep=[])  # targets and indices only
    assert load_predictions(tmp_path / "t.npz").logits is None


def test_adjustments_that_do_not_apply_fail_with_one_line():
    logits_only = _outputs(*VAL)
    for head, needle in (("cosine", "same cosines for every tau"), ("prototype", "class centres")):
        with pytest.raises(ConfigError, match=needle):
            adjusted_logits("tau_norm", _outputs(*VAL, head=head, features=torch.zeros(4, 2)), 1.0)
    with pytest.raises(ConfigError, match="save=\\[features\\]"):
        adjusted_logits("tau_norm", _outputs(*VAL, head="linear"), 1.0)
    with pytest.raises(ConfigError, match="save=\\[logits\\]"):
        adjusted_logits("la", Predictions(None, logits_only.targets, logits_only.indices, COUNTS), 1.0)
    with pytest.raises(ConfigError, match="finite"):
        sweep({"test": logits_only}, {"la": [float("nan")]}, _metric)
    with pytest.raises(ConfigError, match="select_by"):
        sweep({"test": logits_only}, {"la": [1]}, _metric, select_by="accuracy")


def test_choose_maximises_or_minimises_and_keeps_the_earliest_tie():
    assert choose([0.5, 0.7, 0.7, None], "balanced_acc") == 1
    assert choose([0.3, 0.1, 0.1], "ece") == 1 and choose([2.0, 1.0], "nll") == 1
    assert choose([None, None], "top1") is None


# -- LWS ----------------------------------------------------------------------------------------------------
def test_scaled_head_multiplies_each_class_logit():
    from lt_bench.methods.lws import ScaledHead

    linear = torch.nn.Linear(2, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        linear.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    head = ScaledHead(linear, 3)
    assert head(torch.tensor([[2.0, 3.0]])).tolist() == [[2.0, 4.0, 4.0]]  # scales start at 1
    with torch.no_grad():
        head.scale.copy_(torch.tensor([0.5, 1.0, 2.0]))
    assert head(torch.tensor([[2.0, 3.0]])).tolist() == [[1.0, 4.0, 8.0]]


@pytest.mark.slow
def test_lws_trains_only_the_scales_in_stage_2(tmp_path):
    import lightning as L

    from lt_bench.train import build_run, build_trainer
    from tests.helpers import make_config

    cfg = make_config(
        "method=lws", "schedule.e0=1", "dataset=synthetic", "dataset.per_class=30", "dataset.image_size=8",
        "dataset.test_per_class=5", "logger=csv",
    )  # fmt: skip
    L.seed_everything(0, verbose=False)
    _, datamodule, model = build_run(cfg)
    trainer, _ = build_trainer(cfg, tmp_path, has_val=False)
    snapshot = {}

    class AfterStage1(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                snapshot.update({k: v.clone() for k, v in pl_module.state_dict().items()})

    trainer.callbacks.append(AfterStage1())
    trainer.fit(model, datamodule=datamodule)
    after = model.state_dict()
    assert torch.equal(snapshot["head.scale"], torch.ones(10))  # stage 1 leaves the scales at 1
    assert not torch.equal(after["head.scale"], snapshot["head.scale"])  # stage 2 learns them
    frozen = [k for k in after if k != "head.scale" and k != "stage2_entered"]
    assert frozen and all(torch.equal(after[k], snapshot[k]) for k in frozen)  # classifier, backbone, BN


def test_chunked_evaluation_equals_the_whole_split():
    from lt_bench.posthoc import evaluate_adjusted

    g = torch.Generator().manual_seed(0)
    outputs = Predictions(
        torch.randn(50, 2, generator=g), torch.randint(0, 2, (50,), generator=g), torch.arange(50), COUNTS
    )
    whole = evaluate_adjusted("la", outputs, 1.0, _metric)
    rows = evaluate_adjusted("la", outputs, 1.0, _metric, chunk=7)
    for key in ("top1", "balanced_acc", "top5", "per_class", "n"):
        assert rows[key] == whole[key]
    assert rows["nll"] == pytest.approx(whole["nll"], rel=1e-12)
