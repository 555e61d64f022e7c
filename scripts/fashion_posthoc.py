"""The post-hoc rows of the Fashion-MNIST-LT table (docs/results.md), from the CE runs' own checkpoints.

    python scripts/fashion_posthoc.py [--scratch /tmp/lt_bench_tables] [--results results]

For every seed whose CE run (``scripts/run_table.py``, row ``fashion_lt/ce``) is in the scratch folder
with its checkpoint, ``python -m lt_bench.eval ckpt=RUN save=[logits,features]`` evaluates its final model
once on the test set and keeps its logits and features; then every post-hoc adjustment at every tau is
computed from those outputs (:mod:`lt_bench.posthoc`) with the run's own metric, and written as
``results/fashion_lt/ce_posthoc_<adjustment>_tau<tau>/all/seed<k>/summary.json`` in a training summary's
shape (``test_last``), so that ``scripts/fashion_tables.py`` reads the rows like any other. One training
run per seed serves every row. Fashion-MNIST-LT has no validation split, so no tau is *selected*: the
table's rows take tau = 1 (Menon et al.'s Bayes-optimal logit adjustment; Kang et al.'s full
normalisation) and the sweep table shows every tau on test for reference only.

``tau_norm`` keeps the head's bias (so that tau = 0 is the model as trained); ``tau_norm_nobias`` is the
same with the bias dropped, as Kang et al.'s released notebook computes it (``features @ w_tau.T``).

The tau = 0 logit adjustment is the model as trained: it must reproduce the training run's own final test
figures, which is checked (exit 1 when it does not).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from lt_bench.metrics import LongTailMetrics
from lt_bench.posthoc import evaluate_adjusted, load_predictions
from lt_bench.summary import write_json

ROOT = Path(__file__).resolve().parents[1]
TAUS = (0.0, 0.5, 1.0, 1.5, 2.0)
# row name -> (lt_bench.posthoc adjustment, keep the head's bias)
ADJUSTMENTS = {"la": ("la", True), "tau_norm": ("tau_norm", True), "tau_norm_nobias": ("tau_norm", False)}


def row_name(adjustment: str, tau: float) -> str:
    return f"ce_posthoc_{adjustment}_tau{tau:g}"


def evaluate_once(run_dir: Path, eval_dir: Path, python: str) -> Path:
    """``outputs_test.npz`` of the run's final model (evaluated once; kept in the scratch folder)."""
    outputs = eval_dir / "outputs_test.npz"
    if not (eval_dir / "summary.json").is_file():  # written last: the evaluation finished
        # an evaluation that did not finish (lt_bench.eval refuses a folder holding files): start it over
        shutil.rmtree(eval_dir, ignore_errors=True)
        command = [
            python,
            "-m",
            "lt_bench.eval",
            f"ckpt={run_dir}",
            "save=[logits,features]",
            f"hydra.run.dir={eval_dir}",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        subprocess.run(command, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    return outputs


def posthoc_seed(run_dir: Path, eval_dir: Path, results: Path, python: str) -> list[str]:
    trained = json.loads((run_dir / "summary.json").read_text())
    outputs = load_predictions(evaluate_once(run_dir, eval_dir, python))
    d = trained["config"]["dataset"]
    counts = trained["class_counts"]

    def new_metric() -> LongTailMetrics:  # the training run's own metric (its groups)
        return LongTailMetrics(
            num_classes=len(counts),
            class_counts=counts,
            many_threshold=d["many_threshold"],
            few_threshold=d["few_threshold"],
            group_by=d.get("group_by", "threshold"),
        )

    lines = []
    for name, (adjustment, bias) in ADJUSTMENTS.items():
        source = outputs if bias else replace(outputs, head_bias=None)
        for tau in TAUS:
            result = evaluate_adjusted(adjustment, source, tau, new_metric)
            if name == "la" and tau == 0:
                ours, theirs = result["balanced_acc"], trained["test_last"]["balanced_acc"]
                if abs(ours - theirs) > 1e-9:
                    raise SystemExit(f"{run_dir}: tau = 0 gives {ours} but the run's test was {theirs}")
                lines.append(f"{run_dir.name}: tau = 0 reproduces the run's test ({100 * theirs:.2f})")
            result.pop("confusion", None)
            summary = {
                "class_counts": counts,
                "seed": trained["seed"],
                "adjustment": name,
                "tau": tau,
                "source_run": str(run_dir),
                "test_last": result,
            }
            out = results / "fashion_lt" / row_name(name, tau) / "all" / run_dir.name / "summary.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json(out, summary)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/lt_bench_tables"))
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    runs = sorted((args.scratch / "fashion_lt" / "ce" / "all").glob("seed*/summary.json"))
    if not runs:
        print(f"fashion_posthoc: no finished CE run under {args.scratch}/fashion_lt/ce/all", file=sys.stderr)
        return 1
    for summary in runs:
        run_dir = summary.parent
        eval_dir = args.scratch / "fashion_lt_posthoc" / run_dir.name
        for line in posthoc_seed(run_dir, eval_dir, args.results, args.python):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
