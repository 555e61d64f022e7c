"""build_loss: the registry, parameters read from the constructors, their checks, the shipped configs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import torch
from omegaconf import OmegaConf

from lt_bench.errors import ConfigError, DataError
from lt_bench.losses import LOSSES, build_loss, loss_parameters
from lt_bench.losses.base import (
    Flag,
    LogitLoss,
    NonNegative,
    Param,
    Positive,
    Real,
    Switch,
    constructor_params,
)
from lt_bench.methods.base import LOSS_USAGE_KEYS
from tests.helpers import CONF

COUNTS = [50, 20, 5]
LOSS_CONFIGS = sorted(Path(CONF, "loss").glob("*.yaml"))


@pytest.mark.parametrize("path", LOSS_CONFIGS, ids=lambda p: p.stem)
def test_each_loss_config_holds_its_constructor_defaults(path):
    node = OmegaConf.to_container(OmegaConf.load(path))
    assert node["name"] in LOSSES, f"{path.name}: loss {node['name']!r} is not registered"
    defaults = loss_parameters(node["name"])
    assert {k: v for k, v in node.items() if k not in LOSS_USAGE_KEYS} == defaults
    assert set(node["after_e0"]) <= set(defaults)  # after_e0 overrides only parameters the loss has


def test_every_registered_loss_has_a_config_of_its_name():
    assert LOSSES.defined_in("lt_bench") <= {p.stem for p in LOSS_CONFIGS}


def test_parameters_are_read_from_the_constructor():
    class Toy(LogitLoss):
        def __init__(
            self,
            class_counts=None,
            *,
            a: NonNegative = 1.5,
            b: Positive = 2.0,
            c: Switch = True,
            d: Annotated[float, Real(low=-1.0, high=1.0)] = 0.0,
        ) -> None:
            super().__init__()

    assert Toy.params == {
        "a": Param(Real(low=0.0), 1.5),
        "b": Param(Real(low=0.0, open_low=True), 2.0),
        "c": Param(Flag(), True),
        "d": Param(Real(low=-1.0, high=1.0), 0.0),
    }
    assert constructor_params(type("Bare", (LogitLoss,), {})) == {}  # no constructor: no parameters


def test_a_constructor_without_checkable_parameters_fails_at_class_definition():
    message = "parameter 'gamma' must be keyword-only, have a default"
    with pytest.raises(TypeError, match=message):

        class NoSpec(LogitLoss):
            def __init__(self, class_counts, *, gamma: float = 1.0) -> None: ...

    with pytest.raises(TypeError, match=message):

        class NoDefault(LogitLoss):
            def __init__(self, class_counts, *, gamma: NonNegative) -> None: ...

    with pytest.raises(TypeError, match=message):

        class Positional(LogitLoss):
            def __init__(self, class_counts, gamma: NonNegative = 1.0) -> None: ...


def test_a_users_loss_registers_and_builds_like_a_built_in(monkeypatch):
    monkeypatch.setattr(LOSSES, "_entries", dict(LOSSES.items()))  # the registration ends with the test

    @LOSSES.register("scaled_ce")
    class ScaledCE(LogitLoss):
        def __init__(self, class_counts, *, k: Positive = 2.0) -> None:
            super().__init__()
            self.k = k

        def per_sample(self, logits, targets):
            return self.k * torch.nn.functional.cross_entropy(logits, targets, reduction="none")

    assert loss_parameters("scaled_ce") == {"k": 2.0}
    z, targets = torch.tensor([[0.0, 0.0]]), torch.tensor([0])
    assert build_loss("scaled_ce", COUNTS, k=3)(z, targets).item() == pytest.approx(
        3 * torch.log(torch.tensor(2.0))
    )
    with pytest.raises(ConfigError, match="loss 'scaled_ce' parameter 'k' must be > 0, got 0"):
        build_loss("scaled_ce", COUNTS, k=0)
    with pytest.raises(ConfigError, match="loss 'scaled_ce' is registered twice"):
        LOSSES.register("scaled_ce", type("Other", (LogitLoss,), {}))


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("lda", {}, "loss='lda' is not known; choose one of: asl, balanced_softmax, ce, cri, focal, kps, la"),
        ("ldam", {"gama": 1.0}, "loss 'ldam' has no parameter 'gama'; valid: max_m, s"),
        ("ce", {"gamma": 1.0}, "loss 'ce' has no parameter 'gamma'; valid: (none)"),
        ("balanced_softmax", {"tau": 0.5}, "loss 'balanced_softmax' has no parameter 'tau'; valid: (none)"),
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


def test_parameters_not_given_take_the_constructor_defaults():
    loss = build_loss("cri", COUNTS, gamma=2)
    assert (loss.gamma, loss.max_m, loss.s, loss.T, loss.sigma) == (2.0, 0.1, 30.0, 1e-50, "decreasing")


def test_empty_class_and_width_mismatch_are_reported():
    with pytest.raises(DataError, match=r"classes \[1\] have no training samples"):
        build_loss("ldam", [10, 0, 3])
    with pytest.raises(ConfigError, match="built for 3 classes but got logits of shape"):
        build_loss("la", COUNTS)(torch.zeros(2, 4), torch.tensor([0, 1]))


@pytest.mark.parametrize("name", LOSSES.names())
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
        ("balanced_softmax", {"log_prior"}),
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
