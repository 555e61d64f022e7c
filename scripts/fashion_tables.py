"""docs/results.md's Fashion-MNIST tables, from the runs that `scripts/run_table.py` kept in results/.

    python scripts/fashion_tables.py [--results results] [--write [docs/results.md]]

The runs are those of ``python scripts/run_table.py scripts/tables/fashion.yaml``.

(1) ARConvL's Table 1 (Li et al., ECML PKDD 2023): test G-mean (%) of the best-validation-G-mean epoch,
mean ± sample std over the seeds present, next to the published mean ± std (10 repeats) and the
difference; a cell more than two published standard deviations away is flagged. Friedman over the q
values (each a block, mean over seeds), then Holm against ARConvL, as the paper does over data sets.
(2) Fashion-MNIST-LT (exp, IF 100): balanced accuracy, many / medium / few and G-mean of the final epoch;
a method "beats CE" when its mean balanced accuracy exceeds CE's by more than the two standard deviations
added (the seeds' spread).

Without ``--write`` the tables are printed. With ``--write`` (default file: docs/results.md) the block
between ``<!-- fashion-tables:start -->`` and ``<!-- fashion-tables:end -->`` of that file is replaced and
nothing else in it changes; cells without runs show "—", so the tables fill in as runs land.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

from scipy.stats import chi2

from lt_bench.metrics import class_groups
from lt_bench.stats import friedman, holm_vs_control, mean_std

# Table 1 of the ARConvL paper, Fashion-MNIST: q -> (mean, std) in percent, 10 repeats.
PUBLISHED = {
    "CPL": {1: (91.0, 0.2), 10: (86.6, 0.6), 20: (84.3, 0.6), 50: (80.0, 1.0), 100: (75.1, 2.7)},
    "GCPL": {1: (92.0, 0.2), 10: (87.1, 0.4), 20: (84.1, 0.8), 50: (77.9, 1.4), 100: (72.7, 2.1)},
    "Focal": {1: (91.4, 0.4), 10: (86.8, 0.5), 20: (84.6, 0.8), 50: (81.2, 1.0), 100: (77.5, 2.2)},
    "CB": {1: (91.1, 0.2), 10: (86.9, 0.5), 20: (84.5, 0.7), 50: (81.2, 1.1), 100: (77.8, 1.5)},
    "CB Focal": {1: (91.4, 0.4), 10: (86.9, 0.4), 20: (84.7, 0.6), 50: (81.6, 1.2), 100: (78.2, 1.3)},
    "LA": {1: (91.0, 0.2), 10: (87.6, 0.3), 20: (85.6, 0.5), 50: (82.2, 1.9), 100: (79.6, 2.5)},
    "ARConvL": {1: (92.2, 0.2), 10: (88.5, 0.5), 20: (86.3, 0.7), 50: (84.0, 1.0), 100: (82.3, 0.8)},
}
# paper row -> run rows (results/arconvl_fashion/<row>/q<q>/seed*/), each with its label
ARCONVL_ROWS = {
    "CPL": [
        ("cpl_no_momentum", "no momentum"),
        ("cpl_momentum", "momentum 0.9"),
        ("cpl_raw_pixels_no_momentum", "no momentum, raw 0-255 input (check)"),
    ],
    # Yang et al.'s code halves PL (tf.nn.l2_loss): if the paper's lambda 0.1 follows it, ours is 0.05
    "GCPL": [
        ("gcpl_no_momentum", "no momentum, lambda = 0.1"),
        ("gcpl_half_no_momentum", "no momentum, lambda = 0.05 (Yang et al.'s PL has a 1/2; check)"),
    ],
    # the authors' main.py passes the class weights alpha_j = n_max / n_j to "our and focal loss"
    "Focal": [
        ("focal_inverse_no_momentum", "no momentum, class weights n_max / n_j"),
        ("focal_no_momentum", "no momentum, unweighted (check)"),
        ("focal_gamma1_no_momentum", "no momentum, unweighted, gamma = 1 (check)"),
        ("focal_inverse_raw_pixels_no_momentum", "no momentum, class weights, raw 0-255 input (check)"),
    ],
    "CB": [("cb_no_momentum", "no momentum")],
    "CB Focal": [("cb_focal_no_momentum", "no momentum")],
    "LA": [("la_no_momentum", "no momentum"), ("la_momentum", "momentum 0.9")],
    "ARConvL": [
        ("arconvl_no_momentum", "no momentum"),
        ("arconvl_momentum", "momentum 0.9"),
        ("arconvl_raw_pixels_no_momentum", "no momentum, raw 0-255 input (check)"),
    ],
}
QS = (1, 10, 20, 50, 100)
FASHION_LT_ROWS = [
    ("ce", "CE"),
    ("la", "LA"),
    ("ldam_drw", "LDAM-DRW"),
    ("cri_ppw", "CRI + PPW"),
    ("cri_ppw_ppmix", "CRI + PPW + PPmix (`method=ppl_cri`)"),
    ("phase", "PHASE"),
    ("kps_ga", "KPS-GA"),
    ("vs_tla_adrw", "VS + TLA + ADRW"),
    ("crt", "cRT"),
    ("ride", "RIDE (3 experts, `backbone=ride_convnet`)"),
    ("cri_ppw_ride", "CRI + PPW + RIDE (4 experts, `backbone=ride_convnet`)"),
    ("ce_posthoc_la_tau1", "CE + post-hoc LA (τ = 1; the CE runs)"),
    ("ce_posthoc_tau_norm_tau1", "CE + τ-norm (τ = 1, bias kept; the CE runs)"),
    ("ce_posthoc_tau_norm_nobias_tau1", "CE + τ-norm (τ = 1, bias dropped; the CE runs)"),
]
# every trained row of the 30-epoch table, at 100 epochs (table fashion_lt_long); the post-hoc rows are
# the CE runs' own checkpoints, not runs of their own
FASHION_LT_LONG_ROWS = [(row, name) for row, name in FASHION_LT_ROWS if "posthoc" not in row] + [
    # the check behind RIDE's margin over LA: LA on RIDE's backbone (its three experts' features
    # concatenated into one linear head: 199,770 parameters against RIDE's 199,760)
    ("la_ride_convnet", "LA on RIDE's 3-expert backbone (capacity check)"),
]
# scripts/fashion_posthoc.py: adjustment -> label of the sweep table's columns
POSTHOC = {"la": "post-hoc LA", "tau_norm": "τ-norm, bias kept", "tau_norm_nobias": "τ-norm, bias dropped"}
POSTHOC_TAUS = ("0", "0.5", "1", "1.5", "2")
LT_METRICS = ("balanced_acc", "many", "medium", "few", "gmean")
START, END = "<!-- fashion-tables:start -->", "<!-- fashion-tables:end -->"
# summaries under results/ that values() found but could not count (diverged, unreadable), with why:
# render() names them below the tables, so that no mean silently has a seed fewer
LEFT_OUT: dict[Path, str] = {}
# summaries computed on a GPU (their "hardware" key; scripts/gpu_table.sh), with the card: every other run
# ran on this project's CPU, and the two round bfloat16 differently, so the cells holding one are marked
ON_GPU: dict[Path, str] = {}
# where the tables are published (the repository's docs/results.md, whatever the working directory)
RESULTS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def values(folder: Path, split: str, metric: str) -> list[float]:
    """The metric (percent) of every finished seed under ``folder``; many / medium / few are recomputed
    from the per-class accuracies with the classes cut into thirds by training count (3 / 4 / 3 of
    Fashion-MNIST's 10; the 100 / 20 thresholds leave IF 100's 6,000 ... 60 images no few group)."""
    out = []
    for path in sorted(folder.glob("seed*/summary.json")):
        try:
            summary = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, ValueError) as err:
            LEFT_OUT[path] = f"unreadable ({' '.join(str(err).split())})"
            continue
        status = summary.get("status", "finished") if isinstance(summary, dict) else "not a JSON object"
        if status != "finished":  # a diverged run has no figures: named under the tables, never averaged
            LEFT_OUT[path] = (
                f"{status}: {summary.get('reason', 'no reason recorded')}"
                if isinstance(summary, dict)
                else status
            )
            continue
        hardware = summary.get("hardware") or {}
        if hardware.get("device") == "cuda":
            ON_GPU[path] = hardware.get("name") or "a GPU"
        result = summary.get(split) or {}
        if split == "test_best_epoch":  # {epoch, selected_by, result, note}
            result = result.get("result") or {}
        if metric in ("many", "medium", "few") and result.get("per_class"):
            members = class_groups(summary["class_counts"], group_by="thirds")[metric]
            accs = [result["per_class"][j] for j in members if result["per_class"][j] is not None]
            value = sum(accs) / len(accs) if accs else None
        else:
            value = result.get(metric)
        if value is not None:
            out.append(100.0 * value)
    return out


def fmt(vals: list[float]) -> str:
    stat = mean_std(vals)
    if stat.n == 0:
        return "—"
    return f"{stat.mean:.1f}" if stat.n == 1 else f"{stat.mean:.1f} ± {stat.std:.1f}"


def arconvl_table(results: Path) -> str:
    root = results / "arconvl_fashion"
    qs = list(QS)  # the paper's five columns; a cell not run yet shows "—"
    lines = [
        "| method (CPL framework) | run | "
        + " | ".join(f"q = {q}: ours / published (diff)" for q in qs)
        + " |",
        "|---|---|" + "---:|" * len(qs),
    ]
    flagged = []
    for name, rows in ARCONVL_ROWS.items():
        for row, label in rows:
            cells = []
            for q in qs:
                folder = root / row / f"q{q}"
                vals = values(folder, "test", "gmean")
                mean, std = PUBLISHED[name][q]
                if not vals:
                    cells.append(f"— / {mean:.1f} ± {std:.1f}")
                    continue
                diff = mean_std(vals).mean - mean
                shown_diff = round(diff, 1) + 0.0  # + 0.0: a difference of -0.04 prints +0.0, not -0.0
                mark = " **!**" if abs(diff) > 2 * std else ""
                if mark:
                    flagged.append(f"{name} ({label}), q = {q}")
                gpu = " †" if any(path.parent.parent == folder for path in ON_GPU) else ""
                published = f"{mean:.1f} ± {std:.1f} ({shown_diff:+.1f}){mark}"
                cells.append(f"{fmt(vals)} (n={len(vals)}){gpu} / {published}")
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    if flagged:
        text += "\n\n**!** more than two published standard deviations away: " + "; ".join(flagged) + "."
    return text + "\n\n" + significance(root, qs)


def significance(root: Path, qs: list[int]) -> str:
    """Friedman over the q values (blocks), then Holm against ARConvL, on the no-momentum rows. While the
    table fills in, the test takes the q values and methods with the most methods run at every one of
    those q (then the most q values): a method not run at each of them, or a q value not every kept method
    has been run at yet, is left out and named."""
    rows = {n: r[0][0] for n, r in ARCONVL_ROWS.items() if r[0][0].endswith("no_momentum")}
    means = {
        (n, q): mean_std(values(root / row / f"q{q}", "test", "gmean")).mean
        for n, row in rows.items()
        for q in qs
    }
    with_arconvl = [q for q in qs if math.isfinite(means["ARConvL", q])]
    candidates = [
        (list(blocks_q), [n for n in rows if all(math.isfinite(means[n, q]) for q in blocks_q)])
        for size in range(2, len(with_arconvl) + 1)
        for blocks_q in itertools.combinations(with_arconvl, size)
    ]
    blocks_q, names = max(candidates, key=lambda c: (len(c[1]), len(c[0])), default=(with_arconvl, []))
    if len(blocks_q) < 2 or len(names) < 3:
        return (
            "Friedman/Holm over q: needs ARConvL and two other methods at two or more q values "
            f"({len(with_arconvl)} q values, {len(names)} methods so far)."
        )
    left_out = [n for n in rows if n not in names]
    waiting = [str(q) for q in qs if q not in blocks_q and any(math.isfinite(means[n, q]) for n in rows)]
    notes = "".join(
        [
            f"; not run at each of these q: {', '.join(left_out)}" if left_out else "",
            f"; left out until every method has run there: q = {', '.join(waiting)}" if waiting else "",
        ]
    )
    blocks = [[means[n, q] for n in names] for q in blocks_q]
    test = friedman(blocks)
    posthoc = holm_vs_control(blocks, names.index("ARConvL"))
    lines = [
        f"Friedman over q = {', '.join(map(str, blocks_q))} (blocks; each cell the mean over its seeds; "
        f"no-momentum rows{notes}): "
        f"statistic {test.statistic:.3g}, p = {test.p:.3g} {test.note}".rstrip(),
        "",
        # identical rankings in every block give the largest statistic, n (k - 1)
        f"With {len(blocks)} blocks and {len(names)} methods the smallest p this test can give is "
        f"{chi2.sf(len(blocks) * (len(names) - 1), len(names) - 1):.3g} "
        "(every block ranking the methods alike).",
        "",
        "| vs ARConvL | rank diff | z | p | p (Holm) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in posthoc:
        lines.append(
            f"| {names[r.group]} | {r.rank_difference:+.2f} | {r.z:.2f} | {r.p:.3g} | {r.p_holm:.3g} |"
        )
    return "\n".join(lines)


def fashion_lt_table(results: Path, table: str = "fashion_lt", rows=FASHION_LT_ROWS) -> str:
    """Final-epoch figures per row; where the runs tracked it (trainer.track_test_best), also the
    balanced accuracy of the test-selected epoch, labelled as the optimistic figure it is."""
    root = results / table
    tracked = any(values(root / row / "all", "test_best_epoch", "balanced_acc") for row, _ in rows)
    extra = ["test-selected epoch (optimistic)"] if tracked else []
    header = "| method | seeds | " + " | ".join([*LT_METRICS, *extra]) + " | beats CE? |"
    lines = [header, "|---|---:|" + "---:|" * (len(LT_METRICS) + len(extra)) + "---|"]
    ce = mean_std(values(root / "ce" / "all", "test_last", "balanced_acc"))
    for row, name in rows:
        folder = root / row / "all"
        bal = mean_std(values(folder, "test_last", "balanced_acc"))
        cells = [fmt(values(folder, "test_last", m)) for m in LT_METRICS]
        if tracked:
            cells.append(fmt(values(folder, "test_best_epoch", "balanced_acc")))
        verdict = "—"
        if row != "ce" and bal.n >= 2 and ce.n >= 2:
            margin = bal.mean - ce.mean
            verdict = "yes" if margin > bal.std + ce.std else f"no ({margin:+.1f})"
        elif row != "ce" and bal.n == 1 and ce.n == 1:
            verdict = f"{bal.mean - ce.mean:+.1f}, one seed: no spread to judge by"
        lines.append(f"| {name} | {bal.n} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines)


def _beats(row: list[float], baseline: list[float]) -> str:
    """Whether ``row``'s mean exceeds ``baseline``'s by more than the two standard deviations added (the
    seeds' spread): "yes (+d)" / "no (+d)"; with one seed on a side the margin alone, marked unjudged."""
    a, b = mean_std(row), mean_std(baseline)
    if a.n == 0 or b.n == 0:
        return "—"
    if a.n < 2 or b.n < 2:
        return f"? ({a.mean - b.mean:+.1f}, one seed: no spread to judge by)"
    margin = a.mean - b.mean
    return f"{'yes' if margin > a.std + b.std else 'no'} ({margin:+.1f})"


def length_table(results: Path) -> str:
    """Every trained row at 30 and at 100 epochs: final-epoch balanced accuracy, and whether it beats CE
    and LA by more than the seeds' spread at each length; the 100-epoch runs' test-selected epoch
    (optimistic: the test set chooses it) beside them."""
    lines = [
        "| method | 30 epochs | beats CE | beats LA | 100 epochs | beats CE | beats LA "
        "| 100 epochs, test-selected epoch (optimistic) |",
        "|---|---:|---|---|---:|---|---|---:|",
    ]
    for table_rows in (FASHION_LT_LONG_ROWS,):
        for row, name in table_rows:
            cells = []
            for table in ("fashion_lt", "fashion_lt_long"):
                root = results / table
                bal = values(root / row / "all", "test_last", "balanced_acc")
                ce = values(root / "ce" / "all", "test_last", "balanced_acc")
                la = values(root / "la" / "all", "test_last", "balanced_acc")
                n = f" (n={len(bal)})" if bal else ""
                cells += [
                    fmt(bal) + n,
                    "—" if row == "ce" else _beats(bal, ce),
                    "—" if row in ("ce", "la") else _beats(bal, la),
                ]
            cells.append(
                fmt(values(results / "fashion_lt_long" / row / "all", "test_best_epoch", "balanced_acc"))
            )
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def posthoc_sweep_table(results: Path) -> str:
    """Balanced accuracy of every post-hoc tau on test (no validation split, so for reference: no tau is
    selected on these figures)."""
    root = results / "fashion_lt"
    lines = ["| τ | " + " | ".join(POSTHOC.values()) + " |", "|---:|" + "---:|" * len(POSTHOC)]
    for tau in POSTHOC_TAUS:
        cells = [
            fmt(values(root / f"ce_posthoc_{a}_tau{tau}" / "all", "test_last", "balanced_acc"))
            for a in POSTHOC
        ]
        lines.append(f"| {tau} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(results: Path) -> str:
    LEFT_OUT.clear()
    ON_GPU.clear()
    tables = _tables(results)
    if ON_GPU:
        tables += "\n\n" + gpu_note(results)
    if not LEFT_OUT:
        return tables
    named = "; ".join(f"`{p.relative_to(results)}` ({why})" for p, why in sorted(LEFT_OUT.items()))
    return f"{tables}\n\nRuns left out of these tables (no finished result): {named}."


def gpu_note(results: Path) -> str:
    """Which seeds ran on a GPU, folder by folder (a cell marked † holds at least one)."""
    folders: dict[tuple[Path, str], list[str]] = {}
    for path, card in sorted(ON_GPU.items()):
        folders.setdefault((path.parent.parent.relative_to(results), card), []).append(path.parent.name[4:])
    named = "; ".join(
        f"`{folder}` seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)} ({card})"
        for (folder, card), seeds in folders.items()
    )
    return (
        "† holds runs computed on a GPU (`scripts/gpu_table.sh`; summary.json's `hardware`), every other run "
        f"on this project's CPU (bfloat16 rounds differently on the two): {named}."
    )


def _tables(results: Path) -> str:
    return "\n".join(
        [
            "##### ARConvL's Fashion-MNIST table (G-mean %, best-validation epoch)",
            "",
            arconvl_table(results),
            "",
            "##### Fashion-MNIST-LT, exp IF 100 (final epoch, %)",
            "",
            fashion_lt_table(results),
            "",
            "##### Fashion-MNIST-LT at 100 epochs (final epoch, %)",
            "",
            fashion_lt_table(results, "fashion_lt_long", FASHION_LT_LONG_ROWS),
            "",
            "##### 30 against 100 epochs: who beats CE and LA by more than the seeds' spread "
            "(balanced accuracy, %)",
            "",
            length_table(results),
            "",
            "##### Post-hoc adjustments of the CE runs, every τ (test balanced accuracy, %; for reference)",
            "",
            posthoc_sweep_table(results),
        ]
    )


def write_block(page: Path, text: str) -> bool:
    """Replace the tables block of ``page`` with ``text``; False when the page has no block."""
    content = page.read_text(encoding="utf-8")
    if START not in content or END not in content:
        return False
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{START}\n{text}\n{END}{tail}", encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument(
        "--write",
        type=Path,
        nargs="?",
        const=RESULTS_PAGE,
        default=None,
        metavar="FILE",
        help="rewrite the tables block of FILE (default: the repository's docs/results.md)",
    )
    args = parser.parse_args(argv)
    text = render(args.results)
    for path, why in sorted(LEFT_OUT.items()):
        print(f"fashion_tables: warning: left out {path}: {why}", file=sys.stderr)
    if args.write is None:
        print(text)
        return 0
    if not write_block(args.write, text):
        print(f"fashion_tables: error: {args.write} has no {START} ... {END} block", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
