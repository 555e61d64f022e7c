"""Print the embedded-data result tables of docs/results.md from the sweeps `scripts/paper_tables.sh` wrote.

    python scripts/results_tables.py [OUT_DIR]      (default results/tables)

One row per sweep directory (three seeds each), mean ± sample std in percent of the selected model's test
figures (`summary.json` "test"), in the order of docs/results.md ("Results on the embedded dataset"). The
tables there are maintained by hand from this output: their LDAM-DRW rows are labelled by recipe, and the
`loss=ldam schedule=drw` row (1/n weights) is an earlier run this script no longer makes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lt_bench.stats import mean_std

# the kaidic/LDAM-DRW recipe on the embedded digits, drawn like the other rows (subset follows the seed)
LDAM_DRW = (
    "experiment=ldam_drw dataset=mnist_lt backbone=convnet trainer.max_epochs=30 dataset.subset_seed=null"
)

TABLES = {
    "Baselines (issue: foundation)": [
        ("baselines/ce", "CE", "loss=ce"),
        ("baselines/la", "LA", "loss=la"),
        ("baselines/ldam_drw", "LDAM + DRW", LDAM_DRW),
    ],
    "PPL + CRI": [
        ("baselines/ce", "CE", "loss=ce"),
        ("ppl/drw", "DRW", "schedule=drw"),
        ("ppl/ppw", "PPW", "schedule=ppw"),
        ("ppl/cri", "CRI", "loss=cri"),
        ("ppl/cri_ppw", "CRI + PPW", "loss=cri schedule=ppw"),
        ("ppl/ppl_cri", "CRI + PPW + PPmix", "method=ppl_cri"),
    ],
    "PHASE": [
        ("phase/daw", "DAW only", "loss=asl"),
        ("phase/msr", "MSR only", "method=phase loss=ce"),
        ("phase/phase", "PHASE (DAW + MSR)", "method=phase"),
    ],
    "Logit-adjustment family": [
        ("baselines/ce", "CE", "loss=ce"),
        ("baselines/ldam_drw", "LDAM + DRW", LDAM_DRW),
        ("logit_adjustment/vs", "VS", "loss=vs"),
        ("logit_adjustment/vs_tla_adrw", "VS + TLA + ADRW", "method=vs_tla_adrw"),
        ("logit_adjustment/vs_tla_adrw_sam", "VS + TLA + ADRW + SAM", "method=vs_tla_adrw optimizer=sam"),
        ("logit_adjustment/kps", "KPS", "loss=kps"),
        ("logit_adjustment/kps_ga", "KPS-GA", "method=kps_ga dataset.batch_size=64"),
    ],
    "ARConvL setting (even_minority, G-mean)": [
        ("arconvl/ce_q10", "CE, q = 10", "loss=ce"),
        ("arconvl/la_q10", "LA, q = 10", "loss=la"),
        ("arconvl/arconvl_q10", "ARConvL, q = 10", "experiment=arconvl"),
        ("arconvl/ce_q100", "CE, q = 100", "loss=ce"),
        ("arconvl/la_q100", "LA, q = 100", "loss=la"),
        ("arconvl/arconvl_q100", "ARConvL, q = 100", "experiment=arconvl"),
    ],
}
METRICS = ("balanced_acc", "few", "gmean")


def cell(summaries: list[dict], metric: str) -> str:
    stat = mean_std([s["test"].get(metric) for s in summaries])
    if stat.n == 0:
        return "—"
    return f"{100 * stat.mean:.2f} ± {100 * stat.std:.2f}" if stat.n > 1 else f"{100 * stat.mean:.2f}"


def main(out: Path) -> int:
    for title, rows in TABLES.items():
        print(f"\n#### {title}\n")
        print("| method | overrides | seeds | balanced acc | few | G-mean |")
        print("|---|---|---:|---:|---:|---:|")
        for folder, name, overrides in rows:
            summaries = [json.loads(p.read_text()) for p in sorted((out / folder).glob("*/summary.json"))]
            cells = " | ".join(cell(summaries, m) for m in METRICS)
            print(f"| {name} | `{overrides}` | {len(summaries)} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/tables")))
