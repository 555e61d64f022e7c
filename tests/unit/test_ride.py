"""RIDE and CRI+PPW+RIDE (issue 18): the diversity term against a hand computation, the multi-expert
networks (ensemble = mean of the experts, no parameter shared beyond the shared stages, RIDE's widths),
method=ride with one expert and no diversity = the single-network LDAM-DRW run step for step, the recipes'
values, and end-to-end runs (stage switches inside the run, per-expert results, exact resume, DDP)."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

import lt_bench.train as train_module
from lt_bench.config import validate
from lt_bench.errors import ConfigError
from lt_bench.losses.ride import diversity_factors, diversity_kl, diversity_temperatures, ride_loss
from lt_bench.methods import METHODS
from lt_bench.methods.ride import RIDEMethod
from lt_bench.models import build_backbone
from lt_bench.train import build_run, train
from tests.helpers import evaluate_in_process, make_config, read_summary, run_cli

slow = pytest.mark.slow  # trains (seconds each)

# -- the loss, by hand ------------------------------------------------------------------------------------
# Two experts, three classes, one sample: z1 = [2, 0, 0], z2 = [0, 0, 2], so z̄ = [1, 0, 1]; per-class
# temperatures T = [2, 1, 1], T̄ = 4/3; scale s = 1.
#   p̄  = softmax([1/2, 0, 1]) = [0.30720, 0.18632, 0.50648]  (e^0.5, e^0, e^1 over 5.36700)
#   q1 = softmax([1, 0, 0])   = [0.57612, 0.21194, 0.21194]
#   q2 = softmax([0, 0, 2])   = [0.10651, 0.10651, 0.78699]
#   KL(p̄ || q1) = 0.30720 ln(0.30720/0.57612) + 0.18632 ln(0.18632/0.21194) + 0.50648 ln(0.50648/0.21194)
#               = -0.19317 - 0.02400 + 0.44123 = 0.22406
#   KL(p̄ || q2) = 0.20639
#   D1 = T̄^2 KL1 = (16/9) 0.22406 = 0.39832,  D2 = (16/9) 0.20639 = 0.36692
Z1, Z2 = [2.0, 0.0, 0.0], [0.0, 0.0, 2.0]
TEMPS = [2.0, 1.0, 1.0]
P_BAR = [0.3071958857184984, 0.18632372322584756, 0.506480391055654]
Q1 = [0.5761168847658291, 0.21194155761708547, 0.21194155761708547]
D1, D2 = 0.3983244293097266, 0.36692026201554667


def _experts() -> torch.Tensor:
    return torch.tensor([[Z1], [Z2]], dtype=torch.float64)  # [E=2, B=1, C=3]


def test_diversity_term_matches_the_hand_computed_two_expert_three_class_example():
    logits = _experts()
    ensemble = logits.mean(0)
    temps = torch.tensor(TEMPS, dtype=torch.float64)
    assert math.isclose(diversity_kl(logits[0], ensemble, temps).item(), D1, rel_tol=1e-12)
    assert math.isclose(diversity_kl(logits[1], ensemble, temps).item(), D2, rel_tol=1e-12)
    # it is torch's F.kl_div(log q, p̄, 'batchmean') x T̄^2, RIDE's expression
    log_q = F.log_softmax(logits[0] / temps, dim=1)
    p_bar = F.softmax(ensemble / temps, dim=1)
    assert torch.allclose(p_bar, torch.tensor([P_BAR], dtype=torch.float64))
    reference = (4 / 3) ** 2 * F.kl_div(log_q, p_bar, reduction="batchmean")
    assert math.isclose(reference.item(), D1, rel_tol=1e-12)


def test_ride_loss_sums_experts_subtracts_the_weighted_diversity_and_keeps_the_ensemble_constant():
    logits = _experts().requires_grad_(True)
    temps = torch.tensor(TEMPS, dtype=torch.float64)
    targets = torch.tensor([0])

    def classification(z):
        return F.cross_entropy(z, targets)

    terms = ride_loss(logits, classification, temps, diversity_weight=0.45)
    ce1 = -(2.0 - math.log(math.exp(2) + 2))  # CE(z1, 0) = -log softmax([2, 0, 0])_0
    ce2 = -(0.0 - math.log(math.exp(2) + 2))
    assert math.isclose(terms.classification.item(), ce1 + ce2, rel_tol=1e-12)
    assert math.isclose(terms.diversity.item(), D1 + D2, rel_tol=1e-12)
    assert math.isclose(terms.total.item(), ce1 + ce2 - 0.45 * (D1 + D2), rel_tol=1e-12)
    # the ensemble is a constant: d D_1 / d z_1 = T̄^2 (q1 - p̄) / T, and z_2 does not enter D_1
    (grad,) = torch.autograd.grad(diversity_kl(logits[0], logits.mean(0), temps), logits)
    expected = (4 / 3) ** 2 * (torch.tensor(Q1) - torch.tensor(P_BAR)) / torch.tensor(TEMPS)
    assert torch.allclose(grad[0, 0], expected.double(), atol=1e-12)
    assert torch.equal(grad[1], torch.zeros_like(grad[1]))
    # the diversity logits are s z: scale 2 on z is scale 1 on 2 z
    doubled = ride_loss(2 * _experts(), classification, temps, 0.45).diversity
    assert torch.allclose(ride_loss(_experts(), classification, temps, 0.45, scale=2.0).diversity, doubled)
    # lambda = 0: the classification terms alone
    assert torch.equal(ride_loss(_experts(), classification, temps, 0.0).total, terms.classification)


def test_diversity_factors_and_temperatures_follow_ride():
    # u_j ∝ C pi_j f + 1 - f with counts [100, 10, 1], f = 0.05: 3 x 100/111 x 0.05 + 0.95 = 1.08514, ...
    u = diversity_factors([100, 10, 1], 0.05)
    raw = [3 * n / 111 * 0.05 + 0.95 for n in (100, 10, 1)]
    assert torch.allclose(u, torch.tensor([r / raw[0] for r in raw]))
    assert u[0] == 1 and u[2] < u[1] < 1  # frequent classes: the higher temperature
    assert torch.equal(diversity_temperatures(u, 1.5, 0.0), torch.full((3,), 1.5))  # before DRW / PPW
    assert torch.allclose(diversity_temperatures(u, 1.5, 1.0), 1.5 * u)
    assert torch.allclose(diversity_temperatures(u, 1.0, 0.5), u.sqrt())  # PPW halfway in exponent
    with pytest.raises(ConfigError, match="too large"):
        diversity_factors([1000, 1], 1.5)  # 2 x 1/1001 x 1.5 + 1 - 1.5 < 0 (f < 1 is always safe)


# -- the networks -----------------------------------------------------------------------------------------
def test_ride_resnet32_widths_and_ensemble_is_the_experts_mean():
    backbone = build_backbone("ride_resnet32", in_channels=3)
    assert (backbone.num_experts, backbone.expert_dim, backbone.out_dim) == (3, 48, 144)  # RIDE's 24/48
    full = build_backbone("ride_resnet32", num_experts=2, reduce_dimension=False)
    assert (full.expert_dim, full.out_dim) == (64, 128)
    assert build_backbone("ride_resnet32", expert_planes=[16, 32], width=2).expert_dim == 64
    with pytest.raises(ConfigError, match="16 <= a <= b"):
        build_backbone("ride_resnet32", expert_planes=[8, 16])
    torch.manual_seed(0)
    module = _module("method=ride", "backbone.num_experts=3")
    module.eval()
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        experts = module.expert_logits(x)
        assert experts.shape == (3, 5, 10)
        assert torch.allclose(module(x), experts.mean(0), atol=1e-7)
        # expert i's head sees expert i's features only
        features = module.backbone(x)
        assert torch.allclose(experts[1], module.head.heads[1](features[:, 48:96]), atol=1e-7)


def test_ride_convnet_is_convnet_split_as_ride_splits_a_network():
    """Block 1 shared, block 2 + dense + BatchNorm per expert at RIDE's 3/4 width; with one full-width
    expert it is ``convnet`` itself: the same parameters, initialised alike from the same seed."""
    backbone = build_backbone("ride_convnet", in_channels=1)
    assert (backbone.num_experts, backbone.expert_dim, backbone.out_dim) == (3, 48, 144)  # 64 x 3/4
    assert backbone.experts[0][2].out_channels == 24  # 32 x 3/4
    wide = build_backbone("ride_convnet", channels=[32, 64], expert_channels=[40], expert_dim=80)
    assert (wide.experts[0][0].out_channels, wide.expert_dim) == (40, 80)
    for bad, match in (
        ({"channels": [16]}, "two or more widths"),
        ({"shared_blocks": 2}, "leaves the experts no block"),
        ({"expert_channels": [8, 8]}, "must list 1 widths"),
    ):
        with pytest.raises(ConfigError, match=match):
            build_backbone("ride_convnet", **bad)
    torch.manual_seed(0)
    one = build_backbone("ride_convnet", in_channels=1, num_experts=1, reduce_dimension=False).eval()
    torch.manual_seed(0)
    single = build_backbone("convnet", in_channels=1, channels=[16, 32], out_dim=64).eval()
    shapes = [p.shape for p in single.parameters()]
    assert [p.shape for p in one.parameters()] == shapes
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(one(x), single(x))
    with pytest.raises(ValueError, match="backbone.image_size"):
        one(torch.randn(1, 1, 32, 32))


def test_evaluation_scales_the_experts_cosines_as_one_cosine_head_and_returns_the_ensemble_outputs():
    """Figures (NLL, ECE) come from s x cos, as for a single cosine head; test_step hands the ensemble's
    logits, the features and the targets to callbacks (lt_bench.eval's save= and posthoc=)."""
    torch.manual_seed(0)
    module = _module("method=ride", "backbone.num_experts=3").eval()
    x, y = torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4, 5])
    with torch.no_grad():
        out = module.test_step((x, y), 0)
        cosines = module.expert_logits(x)
    assert module.logit_scale == module.loss_fn.s == 30.0  # LDAM's s
    assert cosines.abs().max() <= 1 + 1e-6
    assert torch.allclose(out["logits"], 30.0 * cosines.mean(0), atol=1e-5)
    assert out["features"].shape == (6, 144) and torch.equal(out["targets"], y)
    result = module.test_metrics.compute()
    assert result["nll"] == pytest.approx(float(F.cross_entropy(out["logits"], y)), rel=1e-5)
    expert = module.expert_test_metrics[1].compute()
    assert expert["nll"] == pytest.approx(float(F.cross_entropy(30.0 * cosines[1], y)), rel=1e-5)


@pytest.mark.parametrize("name", ["ride_resnet32", "ride_resnet50", "ride_convnet"])
def test_experts_share_no_parameter_beyond_the_shared_stages(name):
    module = _module("method=ride", f"backbone={name}", "backbone.num_experts=3")
    backbone, heads = module.backbone, module.head
    ids = [
        {id(p) for p in list(e.parameters()) + list(h.parameters())}
        for e, h in zip(backbone.experts, heads.heads, strict=True)
    ]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not ids[i] & ids[j], f"experts {i} and {j} share parameters"
    # storage too: no expert tensor is a view of another's
    ptrs = [{p.data_ptr() for p in backbone.experts[i].parameters()} for i in range(3)]
    assert not (ptrs[0] & ptrs[1]) and not (ptrs[1] & ptrs[2])
    expert_ids = set().union(*ids)
    shared = [p for p in backbone.parameters() if id(p) not in expert_ids]
    assert shared and all(id(p) not in expert_ids for p in shared)
    assert {id(p) for p in module.parameters()} == expert_ids | {id(p) for p in shared}
    # the experts are alike in shape but not in value
    a, b = (next(iter(backbone.experts[i].parameters())) for i in (0, 1))
    assert a.shape == b.shape and not torch.equal(a, b)


def test_imagenet_variants_follow_ride_and_torchvision():
    from torchvision.models import resnet50, resnext50_32x4d

    def count(net):
        return sum(p.numel() for p in net.parameters())

    # one expert at full width is torchvision's network without its fc layer
    tv = resnet50(weights=None)
    assert count(build_backbone("ride_resnet50", num_experts=1, reduce_dimension=False)) == count(tv) - count(
        tv.fc
    )
    tvx = resnext50_32x4d(weights=None)
    one = build_backbone("ride_resnext50_32x4d", num_experts=1, reduce_dimension=False)
    assert count(one) == count(tvx) - count(tvx.fc)
    net = build_backbone("ride_resnext50_32x4d", num_experts=2)
    assert (net.expert_dim, net.out_dim) == (1536, 3072)  # planes 384 x 4
    assert build_backbone("ride_resnet10", num_experts=4).out_dim == 4 * 384
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 3072)


def test_method_errors_name_the_fix():
    with pytest.raises(ConfigError, match="needs a multi-expert backbone"):
        _module("method=ride", "backbone=resnet32")
    with pytest.raises(ConfigError, match="diversity_weight=0.45"):
        _module("method=ride", "method.diversity_weight=-0.45")
    with pytest.raises(ConfigError, match="has no key"):
        _module("method=ride", "+method.diversity_wieght=1")
    assert METHODS.get("ride") is METHODS.get("ppl_cri_ride") is RIDEMethod


def test_bf16_autocast_keeps_heads_and_loss_in_float32_and_mixing_works():
    module = _module("method=ppl_cri_ride", "backbone.num_experts=2", "schedule=ppw_ppmix")
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert module.embed(x).dtype == torch.bfloat16
        logits = module.expert_logits(x)
        loss = module.training_loss(x, y, torch.arange(8), 0)
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32 and torch.isfinite(loss)
    assert set(module.loss_terms) == {"classification", "diversity"}


# -- one expert, no diversity: the single network -----------------------------------------------------
class StepLosses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].item())


def _module(*overrides: str):
    _, _, model = build_run(make_config(*overrides))
    return model


def _fit_steps(model, datamodule, epochs: int = 3) -> list[float]:
    losses = StepLosses()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=3,
        limit_val_batches=0,
        use_distributed_sampler=False,
        callbacks=[losses],
    )
    trainer.fit(model, datamodule=datamodule)
    return losses.losses


@slow
def test_one_expert_without_diversity_is_the_single_network_ldam_drw_run_step_for_step():
    common = ["loss=ldam", "schedule=drw", "schedule.e0=1", "trainer.max_epochs=3", "seed=3"]
    plain_cfg = make_config(*common, "method=standard", "backbone=resnet32")
    ride_cfg = make_config(
        *common,
        "method=ride",
        "backbone=ride_resnet32",
        "backbone.num_experts=1",
        "backbone.reduce_dimension=false",
        "method.diversity_weight=0",
    )
    L.seed_everything(3, verbose=False)
    _, plain_data, plain = build_run(plain_cfg)
    _, ride_data, ride = build_run(ride_cfg)
    # the same initial weights: ResNet-32's parameters in order are the shared stage's then the expert's
    plain_state, ride_state = plain.backbone.state_dict(), ride.backbone.state_dict()
    assert len(plain_state) == len(ride_state)
    for (a, va), (b, vb) in zip(plain_state.items(), ride_state.items(), strict=True):
        assert va.shape == vb.shape, (a, b)
    ride.backbone.load_state_dict(dict(zip(ride_state, plain_state.values(), strict=True)))
    ride.head.heads[0].load_state_dict(plain.head.state_dict())
    plain_losses = _fit_steps(plain, plain_data)
    ride_losses = _fit_steps(ride, ride_data)
    assert len(plain_losses) == 9  # 3 epochs of 3 steps; DRW on for the last 6
    assert plain_losses == ride_losses
    final = dict(zip(ride.backbone.state_dict(), plain.backbone.state_dict().values(), strict=True))
    assert all(torch.equal(final[k], v) for k, v in ride.backbone.state_dict().items())


# -- recipes ----------------------------------------------------------------------------------------------
def test_recipes_follow_the_authors_files():
    cri = make_config("experiment=ppl_cri_ride", "dataset=cifar100_step", fast=False)
    validate(cri)
    assert (cri.method.name, cri.loss.name, cri.schedule.name) == ("ppl_cri_ride", "cri", "ppw")
    assert (cri.schedule.e0, cri.schedule.e1, cri.schedule.rho) == (100, 160, 5.0)
    assert list(cri.lr_schedule.milestones) == [120, 160] and list(cri.lr_schedule.factors) == [0.01, 0.0001]
    assert (cri.optimizer.lr, cri.dataset.batch_size, cri.trainer.max_epochs) == (0.1, 128, 200)
    assert (cri.backbone.name, cri.backbone.num_experts, cri.dataset.name) == (
        "ride_resnet32",
        4,
        "cifar100_step",
    )
    assert (cri.loss.gamma, cri.loss.sigma, cri.method.diversity_weight) == (2.0, "zero", 0.45)
    imagenet = make_config("experiment=ppl_cri_ride_imagenet_lt", fast=False)
    assert (imagenet.optimizer.lr, imagenet.dataset.batch_size, imagenet.trainer.max_epochs) == (
        0.1,
        256,
        100,
    )
    assert (imagenet.schedule.e0, imagenet.schedule.e1, list(imagenet.lr_schedule.milestones)) == (
        50,
        80,
        [60, 80],
    )
    inat = make_config("experiment=ppl_cri_ride_inat2018", fast=False)
    assert (inat.optimizer.lr, inat.dataset.batch_size, inat.backbone.name) == (0.2, 640, "ride_resnet50")
    assert (inat.schedule.e0, inat.schedule.e1, inat.schedule.rho) == (50, 80, 5.0)
    ride = make_config("experiment=ride", fast=False)
    assert (ride.schedule.e0, ride.schedule.e1, ride.schedule.weighting, ride.loss.name) == (
        160,
        160,
        "cb",
        "ldam",
    )
    assert (ride.backbone.num_experts, ride.optimizer.weight_decay, ride.method.diversity_weight) == (
        3,
        5e-4,
        0.45,
    )
    assert make_config("experiment=ride_imagenet_lt", fast=False).backbone.name == "ride_resnext50_32x4d"


# -- end to end ---------------------------------------------------------------------------------------------
TINY = [
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=3",
    "dataset.test_per_class=20",
    "dataset.batch_size=64",
    "lr_schedule.warmup_epochs=1",
    "lr_schedule.milestones=[3]",
    "lr_schedule.factors=[0.1]",
    "backbone.num_experts=3",
]
RIDE = [*TINY, "method=ride", "schedule.e0=2", "dataset.val_fraction=0.2"]  # DRW from epoch 2
CRI_RIDE = [*TINY, "method=ppl_cri_ride", "schedule.e0=1", "schedule.e1=3"]  # PPW ramps over [1, 3]


def _finite_results(result: dict, experts: int) -> None:
    for key in ("top1", "balanced_acc", "many", "medium", "few", "gmean"):
        assert math.isfinite(result[key]), key
    assert len(result["experts"]) == experts
    for expert in result["experts"]:
        assert expert["n"] == result["n"] and "confusion" not in expert
        assert all(math.isfinite(expert[k]) for k in ("top1", "balanced_acc", "many", "medium", "few"))
        assert len(expert["per_class"]) == len(result["per_class"])


@slow
def test_ride_end_to_end_with_the_drw_switch_and_model_selection(run_dir, fast_plots):
    train(make_config(*RIDE), run_dir)
    summary = read_summary(run_dir)
    for split in ("test", "test_last", "val"):
        _finite_results(summary[split], 3)
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in (
        "train/loss_classification",
        "train/loss_diversity",
        "val/expert2/balanced_acc",
        "test/expert0/few",
    ):
        assert key in header, key
    assert summary["config"]["schedule"]["e0"] == 2
    # the eval entry point: the run's figures again, its outputs saved, the post-hoc LA swept
    evaluated = evaluate_in_process(run_dir.parent, f"ckpt={run_dir}", "save=[logits]", "posthoc.la=[0,1]")
    assert evaluated["test"]["balanced_acc"] == summary["test"]["balanced_acc"]
    assert evaluated["test"]["nll"] == pytest.approx(summary["test"]["nll"], rel=1e-6)
    la0 = evaluated["posthoc"]["la"]["rows"][0]["test"]
    assert la0["balanced_acc"] == pytest.approx(summary["test"]["balanced_acc"], abs=1e-9)


class Killed(Exception):
    pass


class KillAt(L.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module) -> None:
        if trainer.current_epoch == self.epoch:
            raise Killed


@slow
@pytest.mark.heavy
def test_ppl_cri_ride_end_to_end_and_an_interrupted_run_resumes_exactly(
    run_dir, tmp_path, monkeypatch, fast_plots
):
    reference_dir = tmp_path / "reference"
    train(make_config(*CRI_RIDE), reference_dir)
    reference = read_summary(reference_dir)
    _finite_results(reference["test"], 3)
    # killed at the start of epoch 2 (inside the PPW ramp), then resumed from the epoch-1 checkpoint
    build = train_module.build_trainer

    def with_kill(*args, **kwargs):
        trainer, checkpoint = build(*args, **kwargs)
        trainer.callbacks.append(KillAt(2))
        return trainer, checkpoint

    with monkeypatch.context() as m, pytest.raises(Killed):
        m.setattr(train_module, "build_trainer", with_kill)
        train(make_config(*CRI_RIDE), run_dir)
    train(make_config(*CRI_RIDE, "ckpt_path=last"), run_dir)
    assert read_summary(run_dir)["test"] == reference["test"]


@slow
@pytest.mark.heavy
def test_two_process_ddp_counts_every_test_sample_once_for_every_expert(run_dir):
    result = run_cli(
        "trainer=ddp_cpu",
        "method=ride",
        "backbone.num_experts=2",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "dataset.test_per_class=37",  # 370 test images, an odd number per process shard
        run_dir=run_dir,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    test = read_summary(run_dir)["test"]
    assert test["n"] == 370 and [e["n"] for e in test["experts"]] == [370, 370]
