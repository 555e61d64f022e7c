"""CPL/GCPL: plain-logit losses on the prototype head's logits ``-||f - c_j||^2`` and GCPL's prototype loss,
against hand-computed values, and their wiring through the config (``loss.head=prototype``, ``loss=gcpl``)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lt_bench.data.datamodule import DataInfo
from lt_bench.errors import ConfigError
from lt_bench.losses import build_loss, effective_number_weights
from lt_bench.losses.prototype import PrototypeRegularised, prototype_loss, with_prototype_loss
from lt_bench.methods import build_method
from lt_bench.models import build_head
from lt_bench.models.heads import PrototypeHead
from lt_bench.schedules import schedule_of
from tests.helpers import CONF, approx, make_config

# centres (0, 0), (1, 0), (0, 2) and the feature (1, 1): D = (2, 1, 2), logits z = (-2, -1, -2).
# Sample A is labelled 0, sample B (the same feature) 1:
#   CE_A = log(e^-2 + e^-1 + e^-2) + 2 = log(2 + e);  CE_B = log(2 + e) - 1
CENTRES = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
FEATURES = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
TARGETS = torch.tensor([0, 1])
COUNTS = [2, 1, 1]
E = math.e
CE_A, CE_B = math.log(2 + E), math.log(2 + E) - 1
# CB (Cui et al.), beta 0.5, counts (2, 1, 1): (1 - beta) / (1 - beta^n) = (2/3, 1, 1), scaled to sum 3
CB_W = (0.75, 1.125, 1.125)


def prototype_logits() -> torch.Tensor:
    head = PrototypeHead(2, 3).double()
    with torch.no_grad():
        head.centres.copy_(CENTRES)
    return head(FEATURES)


def test_the_prototype_logits_of_the_hand_case():
    assert prototype_logits().tolist() == [[-2.0, -1.0, -2.0]] * 2


def test_ce_on_prototype_logits_is_cpl():
    approx(build_loss("ce", COUNTS)(prototype_logits(), TARGETS), (CE_A + CE_B) / 2)


def test_focal_on_prototype_logits():
    # p_A = 1 / (2 + e), p_B = e / (2 + e); gamma = 2
    focal = ((1 + E) / (2 + E)) ** 2 * CE_A, (2 / (2 + E)) ** 2 * CE_B
    approx(build_loss("focal", COUNTS, gamma=2.0)(prototype_logits(), TARGETS), sum(focal) / 2)


def test_la_on_prototype_logits():
    # z + log pi with pi = (1/2, 1/4, 1/4): (-2 - log 2, -1 - log 4, -2 - log 4)
    # A: log(e^-2/2 + e^-1/4 + e^-2/4) + 2 + log 2 = log((3 + e) / 2)
    # B: log(e^-2/2 + e^-1/4 + e^-2/4) + 1 + log 4 = log(3 + e) - 1
    expected = (math.log((3 + E) / 2) + math.log(3 + E) - 1) / 2
    approx(build_loss("la", COUNTS, tau=1.0)(prototype_logits(), TARGETS), expected)


def test_class_balanced_ce_and_focal_on_prototype_logits():
    w = effective_number_weights(COUNTS, beta=0.5)
    assert w.tolist() == pytest.approx(CB_W)
    # sum_i w_{y_i} l_i / sum_i w_{y_i} = (0.75 CE_A + 1.125 CE_B) / 1.875 = log(2 + e) - 0.6
    approx(build_loss("ce", COUNTS)(prototype_logits(), TARGETS, w), math.log(2 + E) - 0.6)
    focal = ((1 + E) / (2 + E)) * CE_A, (2 / (2 + E)) * CE_B  # gamma = 1
    expected = (0.75 * focal[0] + 1.125 * focal[1]) / 1.875
    approx(build_loss("focal", COUNTS, gamma=1.0)(prototype_logits(), TARGETS, w), expected)


def test_gcpl_prototype_loss_by_hand():
    z = prototype_logits()
    # D_{A,0} = 2, D_{B,1} = 1: PL = (2 + 1) / 2; mixup label weights (0.5, 1): (0.5 * 2 + 1) / 2
    approx(prototype_loss(z, TARGETS), 1.5)
    approx(prototype_loss(z, TARGETS, torch.tensor([0.5, 1.0])), 1.0)
    gcpl = with_prototype_loss(build_loss("ce", COUNTS), 0.01, PrototypeHead(2, 3))
    approx(gcpl(z, TARGETS), (CE_A + CE_B) / 2 + 0.015)
    # class weights reach the CE term only: CB-CE + 0.01 PL
    approx(gcpl(z, TARGETS, torch.tensor(CB_W)), math.log(2 + E) - 0.6 + 0.015)
    assert torch.equal(gcpl.predict(z), z)  # prediction: the nearest centre


def test_gcpl_gradient_pulls_the_feature_to_its_centre():
    # d/df (1/B) sum_i ||f_i - c_{y_i}||^2 = 2 (f_i - c_{y_i}) / B: A -> 2 (1, 1) / 2, B -> 2 (0, 1) / 2
    f = FEATURES.clone().requires_grad_()
    prototype_loss(-((f[:, None] - CENTRES[None]) ** 2).sum(-1), TARGETS).backward()
    assert f.grad.tolist() == [[1.0, 1.0], [0.0, 1.0]]


def test_prototype_weight_is_checked():
    ce = build_loss("ce", COUNTS)
    assert with_prototype_loss(ce, 0.0, nn.Linear(2, 3)) is ce
    with pytest.raises(ConfigError, match="needs the distance head: add loss.head=prototype"):
        with_prototype_loss(ce, 0.01, nn.Linear(2, 3))
    for bad in (-0.1, float("nan"), True, "0.01"):
        with pytest.raises(ConfigError, match="prototype_weight"):
            with_prototype_loss(ce, bad, PrototypeHead(2, 3))


# -- through the config and the module -------------------------------------------------------------
INFO = DataInfo(
    num_classes=3, class_counts=COUNTS, in_channels=1, image_size=28, train_size=4, val_size=0, test_size=3
)


def build(cfg):
    return build_method(cfg, INFO, schedule_of(cfg.schedule))


def _module_on_the_hand_case(*overrides: str):
    """The module as built from the config (2-d features), its backbone replaced by the identity on 2-d
    'images' that are the features, its head's centres set to CENTRES."""
    module = build(make_config("backbone.out_dim=2", *overrides))  # float32, as trained
    module.backbone = nn.Identity()
    with torch.no_grad():
        module.head.centres.copy_(CENTRES.float())
    return module


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (("loss=ce", "loss.head=prototype"), (CE_A + CE_B) / 2),
        (("loss=gcpl",), (CE_A + CE_B) / 2 + 0.15),  # lambda 0.1, loss=gcpl's default
        (("loss=gcpl", "loss.prototype_weight=0.01"), (CE_A + CE_B) / 2 + 0.015),
        (("loss=ce", "loss.head=prototype", "schedule=rw", "schedule.weighting=cb", "schedule.beta=0.5"),
         math.log(2 + E) - 0.6),
        (("loss=gcpl", "schedule=rw", "schedule.weighting=cb", "schedule.beta=0.5"),
         math.log(2 + E) - 0.6 + 0.15),
        (("loss=focal", "loss.head=prototype", "loss.gamma=2.0"),
         (((1 + E) / (2 + E)) ** 2 * CE_A + (2 / (2 + E)) ** 2 * CE_B) / 2),
        (("loss=la", "loss.head=prototype", "+loss.prototype_weight=0.01"),
         (math.log((3 + E) / 2) + math.log(3 + E) - 1) / 2 + 0.015),
    ],
)  # fmt: skip
def test_module_trains_any_plain_loss_on_the_prototype_head(overrides, expected):
    module = _module_on_the_hand_case(*overrides)
    assert isinstance(module.head, PrototypeHead)
    module.class_weights = module.schedule.class_weights(0, COUNTS)  # what the epoch start sets
    approx(module.training_loss(FEATURES.float(), TARGETS, torch.arange(2), 0), expected, tol=1e-6)
    scores = module.loss_fn.predict(module(torch.tensor([[0.1, 0.0], [0.9, 0.2], [0.0, 1.9]])))
    assert scores.argmax(1).tolist() == [0, 1, 2]  # the nearest centre


def test_gcpl_config():
    module = build(make_config("loss=gcpl"))
    assert isinstance(module.loss_fn, PrototypeRegularised) and module.loss_fn.weight == 0.1
    with pytest.raises(ConfigError, match="loss.head=prototype"):
        build(make_config("loss=gcpl", "loss.head=linear"))
    with pytest.raises(ConfigError, match="prototype_weight"):
        build(make_config("method=arconvl", "loss=gcpl", "method.latent_dim=2"))
    assert build_head("prototype", 4, 3).centres.shape == (3, 4)


def test_gcpl_default_lambda_is_arconvls_baseline_value():
    """loss=gcpl's lambda is the value ARConvL's comparison gives its GCPL baseline (Li et al. 2023,
    supplementary Table 2: 0.1), and its config names that source."""
    assert make_config("loss=gcpl").loss.prototype_weight == 0.1
    text = (CONF / "loss" / "gcpl.yaml").read_text()
    assert "supplementary Table 2" in text and "prototype_weight: 0.1 " in text
