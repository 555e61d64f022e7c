"""One notion of phase: a progress ``p(E)`` in [0, 1] and everything a schedule derives from it.

PPL's three phases (Xu et al.) with a transform ``f`` and curvature ``rho``::

    t = (E - E0) / (E1 - E0)
    p(E) = 0 for E <= E0,   f(t) for E0 < E < E1,   1 for E >= E1

``E0 == E1`` is a step that is on from epoch ``E0`` (0-based), i.e. the deferred two-stage schedules
(DRW, DRS, TLA, ADRW, GA). From ``p`` a :class:`Schedule` derives the class-weight exponent (PPW, DRW,
ADRW), the sampling exponent or mixture fraction (PPS, RS, DRS, P-B) and the mixing progress (mixup,
Remix, PPmix). Every function here is pure in the epoch, so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from lt_bench.errors import ConfigError
from lt_bench.losses.base import class_count_tensor
from lt_bench.losses.class_weights import effective_number_weights, inverse_frequency_weights

FORMS = ("power", "log", "inverse_log")
WEIGHTINGS = ("none", "inverse", "cb")
SAMPLINGS = ("instance", "exponent", "mixture")
MIXINGS = ("none", "mixup", "remix", "ppmix")


def _check_form(form: str, rho: float) -> None:
    if form not in FORMS:
        raise ConfigError(
            f"schedule.form={form!r} is not a known transform; choose one of: {', '.join(FORMS)}"
        )
    if not (isinstance(rho, int | float) and math.isfinite(rho) and rho > 0):
        raise ConfigError(f"schedule.rho={rho!r} must be a finite number > 0 (e.g. schedule.rho=5)")


def transform(t: float, form: str, rho: float) -> float:
    """The phase transform ``f: [0, 1] -> [0, 1]`` with ``f(0) = 0``, ``f(1) = 1``.

    - ``power``:       ``f = t^rho`` (rho > 1 starts slowly, rho < 1 fast)
    - ``log``:         ``f = log_rho(1 + (rho - 1) t)`` (concave for rho > 1)
    - ``inverse_log``: ``f = (rho^t - 1) / (rho - 1)``, the inverse function of ``log`` (convex for rho > 1)

    ``log`` and ``inverse_log`` at ``rho = 1`` are their limit ``f = t``. The PPL paper writes the
    inverse-log form as ``rho^(t log_rho 2) - 1``, which equals ``2^t - 1`` for every rho; ours agrees
    with it at rho = 2 and lets rho set the curvature as in the other two forms.
    """
    _check_form(form, rho)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"transform: t must be in [0, 1], got {t}")
    if form == "power":
        value = t**rho
    elif rho == 1.0:
        value = t
    elif form == "log":
        # log1p keeps precision when rho is close to 1
        value = math.log1p((rho - 1.0) * t) / math.log1p(rho - 1.0)
    else:
        value = math.expm1(t * math.log(rho)) / (rho - 1.0)
    # rounding must not push a progress outside [0, 1]
    return min(1.0, max(0.0, value))


def phase_progress(epoch: int, e0: int, e1: int, form: str = "power", rho: float = 1.0) -> float:
    """``p(E)``: 0 for ``E <= e0``, ``f((E - e0) / (e1 - e0))`` inside, 1 for ``E >= e1`` (0-based epochs).

    With ``e0 == e1`` the schedule is a step that is 1 from epoch ``e0`` on (LDAM-DRW's ``epoch // 160``).
    """
    if e0 < 0:
        raise ConfigError(f"schedule.e0={e0} must be >= 0 (the 0-based epoch the phase starts)")
    if e1 < e0:
        raise ConfigError(
            f"schedule.e1 ({e1}) must be >= schedule.e0 ({e0}); set e1 = e0 for a step (deferred) schedule"
        )
    _check_form(form, rho)
    if epoch >= e1:
        return 1.0
    if epoch <= e0:
        return 0.0
    return transform((epoch - e0) / (e1 - e0), form, rho)


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"schedule.{key}={value!r} is not a known option; choose one of: {', '.join(choices)}"
        )


@dataclass
class Schedule:
    """A phase schedule and what it drives: the one definition of the ``schedule.`` config group.

    The dataclass is also the group's Hydra schema (:mod:`lt_bench.config`), so its fields are the config
    keys and their defaults; constructing it (:func:`schedule_of`) is the validation. ``name`` only labels
    the preset (``schedule=drw``). ``delta`` scales the progress: PPW's final weighting exponent, ADRW's
    ``nu``, PPS's final ``1 - q``. ``beta`` is the effective-number beta for ``weighting='cb'``;
    ``mix_alpha``, ``kappa`` and ``tau`` are mixup's Beta parameter and Remix's thresholds.

    PPmix may run on a phase of its own (the PPL paper's Table 1 lists PPW's and PPmix's [E0, E1] and
    rho separately; the authors' CIFAR configurations give PPmix rho 3 where PPW has 5): ``mix_e0``,
    ``mix_e1`` and ``mix_rho``, each None (null) to follow ``e0``, ``e1`` and ``rho`` — the default, so a
    schedule that does not set them is unchanged. The transform ``form`` is shared.
    """

    name: str = "none"
    e0: int = 0
    e1: int = 0
    form: str = "power"
    rho: float = 1.0
    delta: float = 1.0
    weighting: str = "none"
    beta: float = 0.9999
    sampling: str = "instance"
    mixing: str = "none"
    mix_alpha: float = 1.0
    kappa: float = 3.0
    tau: float = 0.5
    mix_e0: int | None = None  # PPmix's phase start (None: e0)
    mix_e1: int | None = None  # PPmix's phase end (None: e1)
    mix_rho: float | None = None  # PPmix's curvature (None: rho)

    def __post_init__(self) -> None:
        # one call validates e0, e1, form and rho exactly as phase_progress does
        phase_progress(self.e0, self.e0, self.e1, self.form, self.rho)
        if (self.mix_e0, self.mix_e1, self.mix_rho) != (None, None, None):
            e0, e1, rho = self.mix_phase
            try:
                phase_progress(e0, e0, e1, self.form, rho)
            except ConfigError as err:  # name the mix_ keys: e0/e1/rho may be fine on their own
                raise ConfigError(
                    f"PPmix's phase (schedule.mix_e0/mix_e1/mix_rho, null = e0/e1/rho) is "
                    f"[{e0}, {e1}] with rho {rho}: {err}"
                ) from None
        _check_choice("weighting", self.weighting, WEIGHTINGS)
        _check_choice("sampling", self.sampling, SAMPLINGS)
        _check_choice("mixing", self.mixing, MIXINGS)
        for key in ("delta", "beta", "mix_alpha", "kappa", "tau"):
            value = getattr(self, key)
            # none of these is meant unbounded (a huge finite mix_alpha draws lambda = 0.5: lt_bench.mixing)
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise ConfigError(f"schedule.{key}={value!r} must be a finite number")
        if not self.delta >= 0:
            raise ConfigError(f"schedule.delta={self.delta} must be >= 0 (scale of the progress)")
        if self.sampling == "mixture" and self.delta > 1:
            raise ConfigError(
                f"schedule.delta={self.delta} must be <= 1 with schedule.sampling=mixture: the "
                "class-balanced share delta * p(E) of the sampling mixture cannot exceed 1"
            )
        if not 0 < self.beta < 1:
            raise ConfigError(f"schedule.beta={self.beta} must be in (0, 1) (e.g. 0.9999)")
        if not self.mix_alpha > 0:
            raise ConfigError(
                f"schedule.mix_alpha={self.mix_alpha} must be > 0 (Beta(a, a) parameter, e.g. 1)"
            )
        if not self.kappa >= 1:
            raise ConfigError(f"schedule.kappa={self.kappa} must be >= 1 (Remix count ratio, e.g. 3)")
        if not 0 <= self.tau <= 1:
            raise ConfigError(f"schedule.tau={self.tau} must be in [0, 1] (Remix lambda threshold, e.g. 0.5)")

    @property
    def active(self) -> bool:
        """Whether the schedule does anything: weights, sampling or mixing, or a stage switch at ``e0``
        that two-stage methods read (``schedule=none`` is the only inactive preset)."""
        changes = self.weighting != "none" or self.sampling != "instance" or self.mixing != "none"
        return changes or self.e1 > 0

    # -- progress ------------------------------------------------------------------------------------
    def progress(self, epoch: int) -> float:
        """``p(E)`` of this schedule."""
        return phase_progress(epoch, self.e0, self.e1, self.form, self.rho)

    # -- class weights (PPW, DRW, ADRW) ----------------------------------------------------------------
    def weight_exponent(self, epoch: int) -> float:
        """``alpha(E) = delta * p(E)`` (0 without weighting)."""
        return 0.0 if self.weighting == "none" else self.delta * self.progress(epoch)

    def class_weights(self, epoch: int, class_counts: Sequence[int] | Tensor) -> Tensor | None:
        """Class weights at ``epoch``, normalised to sum C; None while they would all be 1.

        ``inverse``: ``w_j ∝ (1/n_j)^alpha(E)``; ``cb``: ``w_j ∝ ((1-beta)/(1-beta^n_j))^alpha(E)``.
        """
        exponent = self.weight_exponent(epoch)
        if exponent == 0.0:
            return None
        if self.weighting == "inverse":
            return inverse_frequency_weights(class_counts, exponent)
        return effective_number_weights(class_counts, self.beta, exponent)

    # -- sampling (PPS, RS, DRS, P-B) ----------------------------------------------------------------
    def balance_fraction(self, epoch: int) -> float:
        """``delta * p(E)`` for a re-sampling schedule, 0 for instance sampling."""
        return 0.0 if self.sampling == "instance" else self.delta * self.progress(epoch)

    def sampling_exponent(self, epoch: int) -> float:
        """``q(E) = 1 - delta * p(E)`` (1 for instance sampling).

        With ``sampling='exponent'`` classes are drawn with ``p_j ∝ n_j^q``; with ``'mixture'`` the
        same number is the share of the instance distribution in the mixture.
        """
        return 1.0 - self.balance_fraction(epoch)

    def class_sampling_probs(self, epoch: int, class_counts: Sequence[int] | Tensor) -> Tensor | None:
        """Per-class draw probabilities (float64, sum 1), or None when the epoch is a plain permutation.

        ``exponent``: ``p_j = n_j^q / sum_k n_k^q``; ``mixture``: ``p_j = (1 - f) n_j / N + f / C`` with
        ``f = delta * p(E)`` (P-B is ``e0 = 0``, ``e1 = max_epochs``, power, rho = 1: ``f = E / E_t``).
        """
        fraction = self.balance_fraction(epoch)
        if fraction == 0.0:
            return None
        counts = class_count_tensor(class_counts)
        if self.sampling == "exponent":
            # scale by n_max first so that n^q stays in range for large counts and negative q
            raw = (counts / counts.max()).pow(1.0 - fraction)
            return raw / raw.sum()
        return (1.0 - fraction) * counts / counts.sum() + fraction / counts.numel()

    # -- mixing (mixup, Remix, PPmix) ----------------------------------------------------------------
    @property
    def mix_phase(self) -> tuple[int, int, float]:
        """PPmix's ``(E0, E1, rho)``: ``mix_e0``, ``mix_e1``, ``mix_rho``, each defaulting to the
        weighting phase's ``e0``, ``e1``, ``rho``."""
        e0 = self.e0 if self.mix_e0 is None else self.mix_e0
        e1 = self.e1 if self.mix_e1 is None else self.mix_e1
        rho = self.rho if self.mix_rho is None else self.mix_rho
        return e0, e1, rho

    def mix_progress(self, epoch: int) -> float:
        """How far Remix's label rule is applied: 0 = mixup, 1 = Remix, PPmix's own ``p(E)`` (over
        :attr:`mix_phase`, the weighting phase unless ``mix_*`` are set) for PPmix."""
        if self.mixing == "remix":
            return 1.0
        if self.mixing == "ppmix":
            e0, e1, rho = self.mix_phase
            return phase_progress(epoch, e0, e1, self.form, rho)
        return 0.0

    # -- logging -------------------------------------------------------------------------------------
    def values(self, epoch: int, class_counts: Sequence[int] | Tensor) -> dict[str, float]:
        """Scalars to log each epoch.

        Besides the schedule's own numbers: ``weight_ratio = max_j w_j / min_j w_j`` (1 without
        weights) and ``sampling_ratio = max_j P(class j) / min_j P(class j)`` of one draw (n_max / n_min
        for instance sampling, 1 when class-balanced) — how imbalanced the model's view of the data is.
        """
        weights = self.class_weights(epoch, class_counts)
        probs = self.class_sampling_probs(epoch, class_counts)
        if probs is None:
            probs = class_count_tensor(class_counts)
        return {
            "progress": self.progress(epoch),
            "weight_exponent": self.weight_exponent(epoch),
            "sampling_exponent": self.sampling_exponent(epoch),
            "mix_progress": self.mix_progress(epoch),
            "weight_ratio": 1.0 if weights is None else float(weights.max() / weights.min()),
            "sampling_ratio": float(probs.max() / probs.min()),
        }


def schedule_of(node: Mapping[str, Any]) -> Schedule:
    """The run's one :class:`Schedule` from its (resolved) ``schedule`` config node; raises ConfigError."""
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    unknown = sorted(set(values) - {f.name for f in fields(Schedule)})
    if unknown:
        raise ConfigError(
            f"schedule has no key(s) {unknown}; valid: {', '.join(f.name for f in fields(Schedule))}"
        )
    return Schedule(**values)


def plot_schedule(schedule: Schedule, max_epochs: int, path: str | Path, lambda_x: float = 0.5) -> None:
    """Write a PNG of the schedule against the epoch (the PPL paper's Figure 2 for these settings).

    Curves: ``p(E)``; the weight exponent ``alpha(E)`` when weighting; the sampling exponent ``q(E)``
    when re-sampling; Remix/PPmix's ``lambda_0 = lambda_x (1 - m)`` and ``lambda_1 = lambda_x (1 - m) + m``
    (m the mixing progress) for ``lambda_x = 0.5`` when mixing. Epoch ticks are integers; drawn as every
    lt_bench figure is (:func:`lt_bench.plots.new_figure`, :func:`lt_bench.plots.save_figure`).
    """
    if max_epochs < 1:
        raise ConfigError(f"trainer.max_epochs={max_epochs} must be >= 1 to plot the schedule")
    from matplotlib.ticker import MaxNLocator

    from lt_bench.plots import new_figure, save_figure

    epochs = list(range(max_epochs))
    fig = new_figure(6.4, 4.0, left=0.7, right=0.25, bottom=0.55, top=0.35)
    ax = fig.add_subplot()

    def curve(values: list[float], label: str, **style: object) -> None:
        # each value holds for the whole epoch, so draw steps; a step schedule then shows its jump at e0
        ax.plot(epochs, values, drawstyle="steps-post", label=label, **style)

    curve([schedule.progress(e) for e in epochs], "progress p(E)", linewidth=2.5, color="black")
    if schedule.weighting != "none":
        curve([schedule.weight_exponent(e) for e in epochs], f"weight exponent ({schedule.weighting})")
    if schedule.sampling != "instance":
        label = "sampling exponent q(E)" if schedule.sampling == "exponent" else "instance share 1 - f(E)"
        curve([schedule.sampling_exponent(e) for e in epochs], label)
    if schedule.mixing != "none":
        mix = [schedule.mix_progress(e) for e in epochs]
        curve([lambda_x * (1 - m) for m in mix], f"lambda_0 (lambda_x={lambda_x:g})", linestyle="--")
        curve([lambda_x * (1 - m) + m for m in mix], f"lambda_1 (lambda_x={lambda_x:g})", linestyle="--")
    edges = {schedule.e0, schedule.e1}
    if schedule.mixing == "ppmix":
        edges |= set(schedule.mix_phase[:2])  # PPmix's own [E0, E1] when it has one
    for edge in sorted(edges):
        if edge < max_epochs:
            ax.axvline(edge, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("epoch (0-based)")
    ax.set_ylabel("value")
    ax.set_title(
        f"schedule: [e0, e1] = [{schedule.e0}, {schedule.e1}], {schedule.form}, rho = {schedule.rho:g}, "
        f"delta = {schedule.delta:g}",
        fontsize=9,
        y=1,  # a fixed position: no search for tick labels above the axes
    )
    ax.set_xlim(0, max(max_epochs - 1, 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
