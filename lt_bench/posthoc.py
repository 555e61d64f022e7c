"""Post-hoc adjustments of a trained classifier, computed from its saved evaluation outputs.

- Logit adjustment (Menon et al., ICLR 2021, "post-hoc correction"): ``z_j - tau log pi_j``, with
  ``pi`` the TRAINING class prior ``n_j / N``. ``tau = 1`` is the Bayes-optimal correction for the
  balanced error when the softmax estimates the training posterior; ``tau = 0`` is the model as trained.
- tau-normalisation (Kang et al., ICLR 2020, "Decoupling representation and classifier"): the class
  weights of a linear head become ``w_j / ||w_j||^tau`` and the logits are recomputed from the saved
  penultimate features, ``f . w_j / ||w_j||^tau + b_j``. ``tau = 0`` is the model as trained (the bias is
  kept, so that it is; Kang et al.'s released notebook drops it, which equals a zero-bias head). Only a
  linear head has such weights: a cosine head already uses ``w_j / ||w_j||`` in its forward, so every tau
  gives the same cosines, and a prototype head scores by distance to class centres; both are refused
  with one line (use the logit adjustment there).

Adjustments live in the :data:`POSTHOC` registry, so a user's module (``plugins=[...]``) adds its own:
a function ``(outputs, tau) -> logits`` marked with :func:`adjustment` (what it needs from the outputs and
the heads it is defined for), swept with ``+posthoc.NAME=[...]`` like the built-ins.

Each adjustment is swept over a list of ``tau``; the tau is chosen on the validation split when the run
has one (never on the test split), by ``select_by`` (balanced accuracy by default; ECE and NLL are
minimised), ties going to the earlier value of the list.

The outputs file (``outputs_<split>.npz``, written by ``python -m lt_bench.eval save=[logits,features]``)
holds, for the N images of the evaluated split in split order: ``logits`` float32 [N, C] (the logits every
figure comes from: a cosine head's cosines times the loss's ``s``), ``features`` float32 [N, d] (the head's
input), ``targets`` int64 [N], ``indices`` int64 [N] (each row's position in the split), and the model
facts the adjustments need: ``class_counts`` int64 [C] (training counts), ``head`` (``linear``,
``cosine``, ``prototype`` or ``other``), ``logit_scale``, and for a linear head ``head_weight`` [C, d] and
``head_bias`` [C].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lt_bench.errors import ConfigError, DataError
from lt_bench.metrics import LOWER_IS_BETTER, SCALAR_KEYS, LongTailMetrics, scalar_metrics
from lt_bench.registry import Registry

SAVABLE = ("logits", "features")


# -- the formulas -------------------------------------------------------------------------------------------
def log_prior(class_counts: Sequence[int] | Tensor) -> Tensor:
    """``log pi_j = log(n_j / sum_k n_k)`` in float64; every class needs a training sample."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if counts.ndim != 1 or not bool((counts > 0).all()):
        raise DataError(
            f"the logit adjustment needs a positive training count for every class, got {counts.tolist()}"
        )
    return (counts / counts.sum()).log()


def logit_adjusted(logits: Tensor, class_counts: Sequence[int] | Tensor, tau: float) -> Tensor:
    """``z_ij - tau log pi_j`` (float64)."""
    return logits.double() - tau * log_prior(class_counts).to(logits.device)


def tau_normalised_weight(weight: Tensor, tau: float) -> Tensor:
    """``w_j / ||w_j||^tau`` for the rows ``w_j`` of a [C, d] weight (float64)."""
    w = weight.double()
    return w / w.norm(dim=1, keepdim=True).pow(tau)


def tau_normalised_logits(features: Tensor, weight: Tensor, bias: Tensor | None, tau: float) -> Tensor:
    """``f_i . w_j / ||w_j||^tau + b_j`` (float64)."""
    logits = features.double() @ tau_normalised_weight(weight, tau).T
    return logits if bias is None else logits + bias.double()


# -- saved outputs ------------------------------------------------------------------------------------------
@dataclass
class Predictions:
    """A split's predictions (logits, targets, optionally features), in split order (the module docstring
    describes each field)."""

    logits: Tensor | None
    targets: Tensor
    indices: Tensor
    class_counts: list[int]
    features: Tensor | None = None
    head: str = "other"
    logit_scale: float = 1.0
    head_weight: Tensor | None = None
    head_bias: Tensor | None = None


def save_predictions(path: Path, outputs: Predictions, keep: Sequence[str]) -> None:
    """Write ``outputs`` as ``.npz``: targets, indices and the model facts always, ``logits`` and
    ``features`` as ``keep`` says."""
    from lt_bench.summary import write_npz

    arrays: dict[str, np.ndarray] = {
        "targets": outputs.targets.numpy().astype(np.int64),
        "indices": outputs.indices.numpy().astype(np.int64),
        "class_counts": np.asarray(outputs.class_counts, dtype=np.int64),
        "head": np.asarray(outputs.head),
        "logit_scale": np.asarray(outputs.logit_scale, dtype=np.float64),
    }
    for name in keep:
        value = getattr(outputs, name)
        if value is None:
            raise ConfigError(f"save={name}: the evaluation recorded no {name}")
        arrays[name] = value.float().numpy()
    if outputs.head_weight is not None:
        arrays["head_weight"] = outputs.head_weight.float().numpy()
    if outputs.head_bias is not None:
        arrays["head_bias"] = outputs.head_bias.float().numpy()
    write_npz(path, arrays)


def load_predictions(path: Path) -> Predictions:
    """Read a file written by :func:`save_predictions` (DataError naming what is missing)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the outputs file {path}: {err}") from None
    missing = [k for k in ("targets", "indices", "class_counts") if k not in arrays]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)}; not an outputs file of `python -m lt_bench.eval save=...`"
        )

    def tensor(name: str) -> Tensor | None:
        return torch.from_numpy(arrays[name]) if name in arrays else None

    return Predictions(
        logits=tensor("logits"),
        targets=torch.from_numpy(arrays["targets"]),
        indices=torch.from_numpy(arrays["indices"]),
        class_counts=[int(n) for n in arrays["class_counts"]],
        features=tensor("features"),
        head=str(arrays["head"]) if "head" in arrays else "other",
        logit_scale=float(arrays["logit_scale"]) if "logit_scale" in arrays else 1.0,
        head_weight=tensor("head_weight"),
        head_bias=tensor("head_bias"),
    )


# -- the adjustments ----------------------------------------------------------------------------------------
Adjust = Callable[["Predictions", float], Tensor]
POSTHOC: Registry[Adjust] = Registry("posthoc")
# what each ``needs`` entry is called in a message, and how to get it saved
_NEEDS = {
    "logits": "the logits (save=[logits])",
    "features": "the features (save=[features])",
    "head_weight": "the head's weights (a linear head)",
}


def adjustment(
    needs: Sequence[str] = ("logits",),
    heads: Sequence[str] | None = None,
    why_not: Mapping[str, str] | None = None,
) -> Callable[[Adjust], Adjust]:
    """Marks ``fn(outputs, tau) -> logits`` as a post-hoc adjustment (register it in :data:`POSTHOC`).

    ``needs``: the :class:`Predictions` fields it reads; ``heads``: the head kinds it is defined for (None:
    every head); ``why_not``: head kind -> why it is undefined there (the refusal's reason)."""

    def mark(fn: Adjust) -> Adjust:
        fn.needs, fn.heads, fn.why_not = tuple(needs), heads, dict(why_not or {})  # type: ignore[attr-defined]
        return fn

    return mark


@POSTHOC.register("la")
@adjustment(needs=("logits",))
def _logit_adjustment(outputs: Predictions, tau: float) -> Tensor:
    assert outputs.logits is not None
    return logit_adjusted(outputs.logits, outputs.class_counts, tau)


@POSTHOC.register("tau_norm")
@adjustment(
    needs=("features", "head_weight"),
    heads=("linear",),
    why_not={
        "cosine": "a cosine head already divides every class weight by its norm in its forward, so "
        "w_j / ||w_j||^tau gives the same cosines for every tau",
        "prototype": "a prototype head scores by distance to class centres, which have no classifier-weight "
        "norm to rescale",
    },
)
def _tau_norm(outputs: Predictions, tau: float) -> Tensor:
    assert outputs.features is not None and outputs.head_weight is not None
    logits = tau_normalised_logits(outputs.features, outputs.head_weight, outputs.head_bias, tau)
    return logits * outputs.logit_scale


def check_head(name: str, head: str) -> None:
    """ConfigError, in one line, when adjustment ``name`` is unknown or not defined for a head of kind
    ``head``."""
    if name not in POSTHOC:
        raise ConfigError(
            f"posthoc.{name} is not an adjustment; choose from: {', '.join(POSTHOC.names())} "
            "(your own: register it in lt_bench.posthoc.POSTHOC and list its module in plugins=[...])"
        )
    fn = POSTHOC.get(name)
    if fn.heads is None or head in fn.heads:
        return
    why = fn.why_not.get(head, f"the model's head ({head}) is not one of {', '.join(fn.heads)}")
    alternatives = [n for n in POSTHOC.names() if POSTHOC.get(n).heads is None]
    raise ConfigError(
        f"posthoc.{name} needs a {' or '.join(fn.heads)} head: {why}; use posthoc.{alternatives[0]} instead"
        if alternatives
        else f"posthoc.{name} needs a {' or '.join(fn.heads)} head: {why}"
    )


def check_applicable(name: str, outputs: Predictions) -> None:
    """ConfigError, in one line, when adjustment ``name`` cannot be computed from ``outputs``."""
    check_head(name, outputs.head)
    missing = [n for n in POSTHOC.get(name).needs if getattr(outputs, n) is None]
    if missing:
        raise ConfigError(
            f"posthoc.{name} needs {' and '.join(_NEEDS.get(n, n) for n in missing)}; these outputs hold none"
        )


def adjusted_logits(name: str, outputs: Predictions, tau: float) -> Tensor:
    """The logits of ``outputs`` after adjustment ``name`` at ``tau`` (float64 for the built-ins)."""
    check_applicable(name, outputs)
    return POSTHOC.get(name)(outputs, tau)


def evaluate_adjusted(
    adjustment: str,
    outputs: Predictions,
    tau: float,
    new_metric: Callable[[], LongTailMetrics],
    chunk: int = 4096,
) -> dict[str, Any]:
    """Every figure of ``outputs`` after ``adjustment`` at ``tau`` (one process, the whole split), in
    chunks of rows: the float64 logits of a whole split would be N x C x 8 bytes (1.6 GB for
    iNaturalist's 24,426 x 8,142)."""
    metric = new_metric()
    for start in range(0, len(outputs.targets), chunk):
        rows = slice(start, start + chunk)
        part = replace(
            outputs,
            logits=None if outputs.logits is None else outputs.logits[rows],
            features=None if outputs.features is None else outputs.features[rows],
            targets=outputs.targets[rows],
            indices=outputs.indices[rows],
        )
        metric.update(adjusted_logits(adjustment, part, tau), part.targets)
    return metric.compute()


def choose(values: Sequence[float | None], select_by: str) -> int | None:
    """Index of the best value (max, or min for ECE/NLL); ties: the earliest; None if all are None."""
    scored = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if not scored:
        return None
    sign = -1.0 if select_by in LOWER_IS_BETTER else 1.0
    best = max(sign * v for _, v in scored)
    return next(i for i, v in scored if sign * v == best)


def check_sweep(taus: Mapping[str, Sequence[float]], select_by: str) -> None:
    for adjustment, values in taus.items():
        if adjustment not in POSTHOC:
            raise ConfigError(
                f"posthoc.{adjustment}: not an adjustment; choose from: {', '.join(POSTHOC.names())} "
                "(your own: register it in lt_bench.posthoc.POSTHOC and list its module in plugins=[...])"
            )
        bad = [v for v in values if not isinstance(v, int | float) or not math.isfinite(v)]
        if bad:
            raise ConfigError(f"posthoc.{adjustment}={list(values)}: every tau must be a finite number")
    if select_by not in SCALAR_KEYS:
        raise ConfigError(f"posthoc.select_by={select_by!r}; choose one of: {', '.join(SCALAR_KEYS)}")


def sweep(
    outputs: Mapping[str, Predictions],
    taus: Mapping[str, Sequence[float]],
    new_metric: Callable[[], LongTailMetrics],
    select_on: str | None = "val",
    select_by: str = "balanced_acc",
) -> dict[str, Any]:
    """Every adjustment at every tau on every split of ``outputs`` (``{split: Predictions}``).

    Returns ``{"select_by", "selected_on", ADJUSTMENT: {"rows": [{"tau", SPLIT: figures}], "selected_tau"}}``;
    a tau is selected only on ``select_on`` (the validation split), and only when ``outputs`` has it.
    """
    check_sweep(taus, select_by)
    on = select_on if select_on in outputs else None
    report: dict[str, Any] = {"select_by": select_by, "selected_on": on}
    for adjustment, values in taus.items():
        if not values:
            continue
        for split_outputs in outputs.values():
            check_applicable(adjustment, split_outputs)
        rows = []
        for tau in values:
            row: dict[str, Any] = {"tau": float(tau)}
            for split, split_outputs in outputs.items():
                result = evaluate_adjusted(adjustment, split_outputs, tau, new_metric)
                row[split] = {**scalar_metrics(result), "n": result["n"]}
            rows.append(row)
        chosen = None if on is None else choose([r[on].get(select_by) for r in rows], select_by)
        report[adjustment] = {"rows": rows, "selected_tau": None if chosen is None else rows[chosen]["tau"]}
    return report


def sweep_rows(report: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
    """``(adjustment, row, selected)`` for every tau of a :func:`sweep` report (``summary["posthoc"]``), in
    order: the one reading of the report that the terminal table and the W&B table both print."""
    for adjustment, entry in report.items():
        if adjustment in ("select_by", "selected_on") or not isinstance(entry, Mapping):
            continue
        chosen = entry.get("selected_tau")
        for row in entry.get("rows", []):
            yield adjustment, row, chosen is not None and row["tau"] == chosen
