"""Phase progress and what schedules derive from it, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from lt_bench.errors import ConfigError
from lt_bench.schedules import Schedule, phase_progress, plot_schedule, transform

E = math.e


def close(actual: float, expected: float, tol: float = 1e-12) -> None:
    assert actual == pytest.approx(expected, abs=tol, rel=tol)


def close_tensor(actual: torch.Tensor | None, expected: list[float], tol: float = 1e-6) -> None:
    assert actual is not None
    torch.testing.assert_close(
        actual.double(), torch.tensor(expected, dtype=torch.float64), rtol=tol, atol=tol
    )


# -- transforms: [E0, E1] = [100, 160]; epoch 115 is t = 1/4, epoch 130 the midpoint t = 1/2 ------------
MIDPOINT = {
    # power t^rho
    ("power", 1.0): 0.5,
    ("power", E): 0.5**E,
    ("power", 5.0): 1 / 32,
    # log_rho(1 + (rho - 1) t); rho = 1 is the limit t
    ("log", 1.0): 0.5,
    ("log", E): math.log(1 + (E - 1) / 2),
    ("log", 5.0): math.log(3) / math.log(5),  # 1 + 4/2 = 3
    # (rho^t - 1) / (rho - 1)
    ("inverse_log", 1.0): 0.5,
    ("inverse_log", E): (math.sqrt(E) - 1) / (E - 1),
    ("inverse_log", 5.0): (math.sqrt(5) - 1) / 4,
}
QUARTER = {
    ("power", 1.0): 0.25,
    ("power", E): 0.25**E,
    ("power", 5.0): 1 / 1024,
    ("log", 1.0): 0.25,
    ("log", E): math.log(1 + (E - 1) / 4),
    ("log", 5.0): math.log(2) / math.log(5),  # 1 + 4/4 = 2
    ("inverse_log", 1.0): 0.25,
    ("inverse_log", E): (E**0.25 - 1) / (E - 1),
    ("inverse_log", 5.0): (5**0.25 - 1) / 4,
}


@pytest.mark.parametrize(("form", "rho"), list(MIDPOINT))
def test_phase_progress_at_e0_inside_and_e1(form: str, rho: float):
    assert phase_progress(99, 100, 160, form, rho) == 0.0
    assert phase_progress(100, 100, 160, form, rho) == 0.0
    close(phase_progress(115, 100, 160, form, rho), QUARTER[(form, rho)])
    close(phase_progress(130, 100, 160, form, rho), MIDPOINT[(form, rho)])
    assert phase_progress(160, 100, 160, form, rho) == 1.0
    assert phase_progress(199, 100, 160, form, rho) == 1.0


def test_log_and_inverse_log_are_inverse_functions():
    for rho in (0.2, 2.0, E, 5.0):
        for t in (0.1, 0.5, 0.9):
            close(transform(transform(t, "log", rho), "inverse_log", rho), t, tol=1e-12)
            close(transform(transform(t, "inverse_log", rho), "log", rho), t, tol=1e-12)


def test_inverse_log_at_rho_2_is_the_papers_written_formula():
    # the paper's rho^(t log_rho 2) - 1 is 2^t - 1; (2^t - 1)/(2 - 1) is the same curve
    close(transform(0.5, "inverse_log", 2.0), math.sqrt(2) - 1)


def test_curvature_follows_rho():
    # rho > 1: power and inverse_log start slowly (below the diagonal), log fast (above)
    assert transform(0.5, "power", 5.0) < 0.5
    assert transform(0.5, "inverse_log", 5.0) < 0.5
    assert transform(0.5, "log", 5.0) > 0.5
    # rho just off 1 is the limit t, without 0/0
    close(transform(0.3, "log", 1 + 1e-12), 0.3, tol=1e-9)
    close(transform(0.3, "inverse_log", 1 - 1e-12), 0.3, tol=1e-9)


def test_step_schedule_is_on_from_e0():
    # DRW at 160 (LDAM-DRW's epoch // 160): off at 159, on from 160
    assert phase_progress(159, 160, 160) == 0.0
    assert phase_progress(160, 160, 160) == 1.0
    assert phase_progress(0, 0, 0) == 1.0


def test_validation_errors():
    with pytest.raises(ConfigError, match=r"schedule.e1 \(3\) must be >= schedule.e0 \(5\)"):
        phase_progress(4, 5, 3)
    with pytest.raises(ConfigError, match="schedule.e0=-1"):
        phase_progress(0, -1, 3)
    with pytest.raises(ConfigError, match="schedule.form='cubic'"):
        phase_progress(1, 0, 3, form="cubic")
    with pytest.raises(ConfigError, match="schedule.rho=0"):
        transform(0.5, "log", 0)
    with pytest.raises(ConfigError, match="schedule.rho"):
        Schedule(e0=0, e1=10, rho=-1.0)
    with pytest.raises(ConfigError, match="schedule.e1"):
        Schedule(e0=10, e1=5)
    with pytest.raises(ConfigError, match="schedule.weighting='rw'"):
        Schedule(weighting="rw")
    with pytest.raises(ConfigError, match="schedule.sampling"):
        Schedule(sampling="balanced")
    with pytest.raises(ConfigError, match="schedule.mixing"):
        Schedule(mixing="cutmix")
    with pytest.raises(ConfigError, match="schedule.delta=1.5 must be <= 1"):
        Schedule(sampling="mixture", delta=1.5)
    with pytest.raises(ConfigError, match="schedule.beta"):
        Schedule(weighting="cb", beta=1.0)
    with pytest.raises(ConfigError, match="schedule.kappa"):
        Schedule(mixing="remix", kappa=0.5)


# -- PPW: counts [100, 10, 1], delta 1, power rho 5, [E0, E1] = [2, 6] -----------------------------------
PPW = Schedule(e0=2, e1=6, form="power", rho=5.0, delta=1.0, weighting="inverse")
COUNTS = [100, 10, 1]


def test_ppw_weights_at_three_epochs():
    # epoch 2 (= E0): exponent 0 -> no weights
    assert PPW.weight_exponent(2) == 0.0
    assert PPW.class_weights(2, COUNTS) is None
    # epoch 4: t = 1/2, alpha = (1/2)^5 = 1/32; w ∝ n^(-1/32), normalised to sum 3
    assert PPW.weight_exponent(4) == 1 / 32
    raw = [100 ** (-1 / 32), 10 ** (-1 / 32), 1.0]
    close_tensor(PPW.class_weights(4, COUNTS), [3 * r / sum(raw) for r in raw])
    # epoch 6 (= E1): alpha = 1; w ∝ [1/100, 1/10, 1], sum 1.11
    assert PPW.weight_exponent(6) == 1.0
    close_tensor(PPW.class_weights(6, COUNTS), [0.03 / 1.11, 0.3 / 1.11, 3 / 1.11])


def test_adrw_step_with_nu():
    adrw = Schedule(e0=160, e1=160, weighting="inverse", delta=0.15)
    assert adrw.class_weights(159, COUNTS) is None
    raw = [100**-0.15, 10**-0.15, 1.0]
    close_tensor(adrw.class_weights(160, COUNTS), [3 * r / sum(raw) for r in raw])


def test_cb_weights_use_the_progress_exponent():
    cb = Schedule(e0=0, e1=4, weighting="cb", beta=0.5)
    # epoch 2: p = 1/2; (1 - beta) / (1 - beta^n) = 0.5 / [1 - 2^-100, 1 - 2^-10, 0.5]
    raw = [(0.5 / (1 - 0.5**100)) ** 0.5, (0.5 / (1 - 0.5**10)) ** 0.5, 1.0]
    close_tensor(cb.class_weights(2, COUNTS), [3 * r / sum(raw) for r in raw])


def test_no_weighting_gives_no_weights_whatever_the_epoch():
    plain = Schedule(e0=0, e1=0)
    assert plain.weight_exponent(10) == 0.0
    assert plain.class_weights(10, COUNTS) is None


# -- sampling ------------------------------------------------------------------------------------------
def test_pps_sampling_exponent_and_probs():
    pps = Schedule(e0=2, e1=6, form="power", rho=5.0, sampling="exponent")
    assert pps.sampling_exponent(1) == 1.0
    assert pps.class_sampling_probs(2, COUNTS) is None  # q = 1: a plain permutation
    # epoch 4: q = 1 - 1/32 = 31/32
    assert pps.sampling_exponent(4) == 31 / 32
    raw = [100 ** (31 / 32), 10 ** (31 / 32), 1.0]
    close_tensor(pps.class_sampling_probs(4, COUNTS), [r / sum(raw) for r in raw], tol=1e-12)
    # from E1 on: q = 0, class-balanced
    assert pps.sampling_exponent(6) == 0.0
    close_tensor(pps.class_sampling_probs(7, COUNTS), [1 / 3, 1 / 3, 1 / 3], tol=1e-12)


def test_square_root_sampling_with_delta_half():
    sqrt = Schedule(e0=0, e1=0, sampling="exponent", delta=0.5)
    assert sqrt.sampling_exponent(0) == 0.5
    raw = [10.0, math.sqrt(10), 1.0]
    close_tensor(sqrt.class_sampling_probs(0, COUNTS), [r / sum(raw) for r in raw], tol=1e-12)


def test_rs_and_drs():
    rs = Schedule(e0=0, e1=0, sampling="exponent")
    close_tensor(rs.class_sampling_probs(0, COUNTS), [1 / 3] * 3, tol=1e-12)
    drs = Schedule(e0=160, e1=160, sampling="exponent")
    assert drs.class_sampling_probs(159, COUNTS) is None
    close_tensor(drs.class_sampling_probs(160, COUNTS), [1 / 3] * 3, tol=1e-12)


def test_progressive_balanced_mixture():
    pb = Schedule(e0=0, e1=200, form="power", rho=1.0, sampling="mixture")
    assert pb.class_sampling_probs(0, COUNTS) is None
    # epoch 50: f = 50/200 = 1/4; 3/4 * n/111 + 1/4 * 1/3
    expected = [0.75 * 100 / 111 + 1 / 12, 0.75 * 10 / 111 + 1 / 12, 0.75 * 1 / 111 + 1 / 12]
    close_tensor(pb.class_sampling_probs(50, COUNTS), expected, tol=1e-12)
    assert pb.sampling_exponent(50) == 0.75
    # epoch 199: f = 199/200
    f = 199 / 200
    close_tensor(pb.class_sampling_probs(199, COUNTS), [(1 - f) * n / 111 + f / 3 for n in COUNTS], tol=1e-12)


def test_instance_sampling_is_always_a_permutation():
    assert Schedule(e0=0, e1=0).class_sampling_probs(5, COUNTS) is None
    assert Schedule(e0=0, e1=0).sampling_exponent(5) == 1.0


# -- mixing progress and logged values ----------------------------------------------------------------
def test_mix_progress_per_mixing():
    assert Schedule(mixing="mixup").mix_progress(100) == 0.0
    assert Schedule(mixing="remix").mix_progress(0) == 1.0
    ppmix = Schedule(e0=100, e1=160, form="power", rho=3.0, mixing="ppmix")
    assert ppmix.mix_progress(100) == 0.0
    assert ppmix.mix_progress(130) == 1 / 8
    assert ppmix.mix_progress(160) == 1.0


def test_ppmix_follows_the_weighting_phase_unless_it_has_its_own():
    # mix_e0 / mix_e1 / mix_rho null (the default): PPmix's phase is PPW's, nothing moves
    shared = Schedule(e0=100, e1=160, rho=5.0, weighting="inverse", mixing="ppmix")
    assert shared.mix_phase == (100, 160, 5.0)
    assert shared.mix_progress(130) == shared.progress(130) == 1 / 32
    # the PPL authors' CIFAR configurations: PPW rho 5, PPmix rho 3 (ppm_alpha) on the same [100, 160]
    cifar = Schedule(e0=100, e1=160, rho=5.0, weighting="inverse", mixing="ppmix", mix_rho=3.0)
    assert cifar.mix_phase == (100, 160, 3.0)
    assert cifar.progress(130) == 1 / 32 and cifar.mix_progress(130) == 1 / 8
    assert cifar.weight_exponent(130) == 1 / 32  # the weights keep PPW's curve
    # a phase of its own: [120, 180], linear; each key alone falls back to the weighting phase's
    own = Schedule(e0=100, e1=160, rho=5.0, mixing="ppmix", mix_e0=120, mix_e1=180, mix_rho=1.0)
    assert [own.mix_progress(e) for e in (119, 120, 150, 180)] == [0.0, 0.0, 0.5, 1.0]
    assert Schedule(e0=100, e1=160, mixing="ppmix", mix_e1=190).mix_phase == (100, 190, 1.0)
    # the values and the plot read the mixing progress through mix_progress
    assert cifar.values(130, COUNTS)["mix_progress"] == 1 / 8


def test_ppmix_phase_validation_names_the_mix_keys():
    with pytest.raises(ConfigError, match=r"schedule.mix_e0/mix_e1/mix_rho.*\[170, 160\]"):
        Schedule(e0=100, e1=160, mixing="ppmix", mix_e0=170)
    with pytest.raises(ConfigError, match="mix_rho"):
        Schedule(e0=100, e1=160, mixing="ppmix", mix_rho=0.0)
    with pytest.raises(ConfigError, match="mix_e0"):
        Schedule(mixing="ppmix", mix_e0=-1, mix_e1=3)


def test_values_at_an_epoch():
    schedule = Schedule(e0=2, e1=6, form="power", rho=5.0, weighting="inverse", sampling="exponent")
    values = schedule.values(6, COUNTS)
    assert values["progress"] == 1.0
    assert values["weight_exponent"] == 1.0
    assert values["sampling_exponent"] == 0.0
    assert values["mix_progress"] == 0.0
    close(values["weight_ratio"], 100.0, tol=1e-5)  # w ∝ 1/n: 1 / (1/100)
    close(values["sampling_ratio"], 1.0)  # class-balanced
    before = schedule.values(0, COUNTS)
    assert before["weight_ratio"] == 1.0
    close(before["sampling_ratio"], 100.0)  # instance: n_max / n_min


def test_plot_schedule_writes_a_png(tmp_path):
    schedule = Schedule(e0=4, e1=8, rho=3.0, weighting="inverse", sampling="exponent", mixing="ppmix")
    path = tmp_path / "sub" / "schedule.png"
    plot_schedule(schedule, 10, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
