"""build_loss: names, parameters, their checks and defaults; what every loss shares."""

from __future__ import annotations

import inspect

import pytest
import torch

from lt_bench.errors import ConfigError, DataError
from lt_bench.losses import LOSS_NAMES, build_loss, loss_parameters
from lt_bench.losses.base import LogitLoss

COUNTS = [50, 20, 5]


def test_loss_names():
    assert set(LOSS_NAMES) == {"ce", "focal", "ldam", "la", "cri", "kps", "vs", "asl"}


def test_parameters_and_defaults_follow_the_contract():
    assert loss_parameters("ce") == {}
    assert loss_parameters("focal") == {"gamma": 1.0, "detach": False}
    assert loss_parameters("ldam") == {"max_m": 0.5, "s": 30.0}
    assert loss_parameters("la") == {"tau": 1.0}
    assert loss_parameters("cri") == {
        "gamma": 1.0,
        "max_m": 0.1,
        "s": 30.0,
        "T": 1e-50,
        "sigma": "decreasing",
    }
    assert loss_parameters("kps") == {"m_max": 0.5, "s": 15.0, "n_base": 50.0, "ga": False, "s_max": 50.0}
    assert loss_parameters("vs") == {"gamma": 0.2, "tau": 1.0, "multiplicative": True}
    assert loss_parameters("asl") == {"gamma_pos": 0.0, "gamma_neg": 4.0, "eps": 0.1}


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_constructor_defaults_match_the_specs(name):
    cls = type(build_loss(name, COUNTS))
    signature = inspect.signature(cls.__init__).parameters
    assert {k: signature[k].default for k in loss_parameters(name)} == loss_parameters(name)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("lda", {}, "unknown loss 'lda'; valid: ce, focal, ldam, la, cri, kps, vs, asl"),
        ("ldam", {"gama": 1.0}, "loss 'ldam' has no parameter 'gama'; valid: max_m, s"),
        ("ce", {"gamma": 1.0}, "loss 'ce' has no parameter 'gamma'; valid: (none)"),
        ("ldam", {"s": "thirty"}, "loss 'ldam' parameter 's' must be a finite number"),
        ("ldam", {"s": True}, "parameter 's' must be a finite number"),
        ("ldam", {"s": 0}, "parameter 's' must be > 0, got 0"),
        ("focal", {"gamma": -1}, "parameter 'gamma' must be >= 0, got -1"),
        ("focal", {"detach": 1}, "parameter 'detach' must be true or false"),
        ("cri", {"T": 1.0}, "parameter 'T' must be < 1, got 1"),
        ("cri", {"sigma": "const"}, "parameter 'sigma' must be one of zero, fixed, decreasing; got 'const'"),
        ("asl", {"eps": 1.0}, "parameter 'eps' must be < 1"),
        ("kps", {"n_base": 1}, "parameter 'n_base' must be > 1"),
        ("kps", {"s": 60.0}, "loss 'kps': s_max (50.0) must be >= s (60.0)"),
        ("vs", {"tau": float("nan")}, "parameter 'tau' must be a finite number"),
    ],
)
def test_bad_configuration_raises_one_clear_config_error(name, params, message):
    with pytest.raises(ConfigError) as err:
        build_loss(name, COUNTS, **params)
    assert message in str(err.value)


def test_integers_are_accepted_for_real_parameters():
    loss = build_loss("kps", COUNTS, s=15, n_base=50, s_max=50)
    assert isinstance(loss.s, float) and loss.s == 15.0


def test_empty_class_and_width_mismatch_are_reported():
    with pytest.raises(DataError, match=r"classes \[1\] have no training samples"):
        build_loss("ldam", [10, 0, 3])
    with pytest.raises(ConfigError, match="built for 3 classes but got logits of shape"):
        build_loss("la", COUNTS)(torch.zeros(2, 4), torch.tensor([0, 1]))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_reduces_as_weighted_ce(name):
    g = torch.Generator().manual_seed(1)
    loss = build_loss(name, COUNTS)
    assert isinstance(loss, LogitLoss)
    logits = torch.rand(6, 3, generator=g) * 2 - 1  # valid cosines too
    targets = torch.tensor([0, 1, 2, 2, 1, 0])
    w, s = torch.tensor([0.5, 1.0, 3.0]), torch.rand(6, generator=g)
    per_sample = loss.per_sample(logits, targets)
    assert per_sample.shape == (6,) and (per_sample >= 0).all()
    wy = w[targets]
    torch.testing.assert_close(loss(logits, targets, w), (wy * per_sample).sum() / wy.sum())
    torch.testing.assert_close(loss(logits, targets, w, s), (s * wy * per_sample).sum() / wy.sum())
    torch.testing.assert_close(loss(logits, targets), per_sample.mean())


@pytest.mark.parametrize(
    "name, buffers",
    [
        ("ldam", {"margins"}),
        ("cri", {"margins"}),
        ("la", {"log_prior"}),
        ("vs", {"scale", "log_prior"}),
        ("kps", {"radius", "margin_raw", "margin", "ga_scale"}),
    ],
)
def test_per_class_tensors_are_buffers_that_follow_to(name, buffers):
    loss = build_loss(name, COUNTS)
    assert {key for key, _ in loss.named_buffers()} == buffers
    loss = loss.to(torch.float64)
    assert all(b.dtype == torch.float64 for b in loss.buffers())
    logits = torch.rand(4, 3, dtype=torch.float64) * 2 - 1
    assert loss(logits, torch.tensor([0, 1, 2, 0])).dtype == torch.float64


def test_tensor_counts_work_like_lists():
    a = build_loss("kps", torch.tensor(COUNTS))
    b = build_loss("kps", COUNTS)
    assert torch.equal(a.margin, b.margin)
