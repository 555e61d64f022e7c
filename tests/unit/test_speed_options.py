"""Speed options of the training module: channels_last, mixed precision, the sync-free divergence guard."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lt_bench.errors import TrainingDiverged
from lt_bench.train import build_run
from tests.helpers import make_config

SMALL = ("dataset=synthetic", "backbone=resnet32", "dataset.image_size=16")


def _module(*overrides: str):
    cfg = make_config(*SMALL, *overrides)
    torch.manual_seed(0)  # the same initial weights for every variant
    _, _, model = build_run(cfg)
    return model.eval()


def test_channels_last_changes_the_layout_not_the_outputs():
    plain, nhwc = _module(), _module("trainer.channels_last=true")
    conv = nhwc.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and conv.shape[1] == 3
    assert list(plain.state_dict()) == list(nhwc.state_dict())  # checkpoints stay interchangeable
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(nhwc(x), plain(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loss", ["ce", "ldam", "kps"])
def test_head_and_logits_stay_float32_under_bf16_autocast(loss):
    module = _module(f"loss={loss}")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert module.embed(torch.randn(4, 3, 16, 16)).dtype == torch.bfloat16  # the backbone is in bf16
        logits = module(torch.randn(4, 3, 16, 16))
    assert logits.dtype == torch.float32


def test_arconvl_backbone_runs_in_bf16_its_distances_and_loss_in_float32():
    module = _module("method=arconvl").train()
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 10
    torch.manual_seed(1)
    full = module.training_loss(x, y, torch.arange(8), 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert module.embed(x).dtype == torch.bfloat16  # the backbone follows autocast
        torch.manual_seed(1)
        mixed = module.training_loss(x, y, torch.arange(8), 0)
    assert mixed.dtype == torch.float32 and all(v.dtype == torch.float32 for v in module.loss_terms.values())
    assert torch.isfinite(mixed) and mixed.item() == pytest.approx(full.item(), rel=0.05)


def _attach(module, tmp_path, batches: int) -> None:
    # just what the guard reads from a trainer
    module._trainer = SimpleNamespace(
        default_root_dir=str(tmp_path), current_epoch=3, num_training_batches=batches, log_every_n_steps=4
    )


def test_non_finite_loss_stops_at_once_on_cpu_naming_the_step(tmp_path):
    module = _module()
    _attach(module, tmp_path, batches=10)
    module._watch_finite(torch.tensor(1.0), 0)
    with pytest.raises(TrainingDiverged, match=r"became nan at epoch 3, step 1 "):
        module._watch_finite(torch.tensor(float("nan")), 1)


def test_deferred_check_names_the_first_non_finite_step(tmp_path, monkeypatch):
    """On an accelerator the flag is read every log_every_n_steps steps (4 here) and at the epoch's last
    batch; the message still names the first bad step, with its value."""
    module = _module()
    _attach(module, tmp_path, batches=10)
    monkeypatch.setattr(type(module), "device", property(lambda self: torch.device("meta")))
    for step, value in enumerate([1.0, float("inf"), float("nan")]):
        module._watch_finite(torch.tensor(value), step)  # steps 0-2: nothing read yet
    with pytest.raises(TrainingDiverged, match=r"became inf at epoch 3, step 1 "):
        module._watch_finite(torch.tensor(float("nan")), 3)


def test_deferred_check_reads_the_flag_at_the_epochs_last_batch(tmp_path, monkeypatch):
    module = _module()
    _attach(module, tmp_path, batches=6)
    monkeypatch.setattr(type(module), "device", property(lambda self: torch.device("meta")))
    for step in range(5):
        module._watch_finite(torch.tensor(1.0), step)
    with pytest.raises(TrainingDiverged, match=r"step 5 "):
        module._watch_finite(torch.tensor(float("nan")), 5)
