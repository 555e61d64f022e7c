"""8,142 classes (iNaturalist 2018): the evaluation metric's state, one validation pass, summary.json.

    python benchmarks/many_classes.py [--classes 8142] [--samples 24426] [--batch 1000] [--results 3]
    PYTHONPATH=/tmp/before python benchmarks/many_classes.py ...   # an older lt_bench (git archive copy)

Runs against whichever ``lt_bench`` is importable, so one script measures two versions: the same
random logits (seeded) go through ``LongTailMetrics.update`` in ``--batch``-sized batches, then ``compute``
— the metric work of one validation epoch, the forward pass left out (it does not change) —, and a
summary holding ``--results`` such results (a training run with a validation split writes ``test``,
``test_last`` and ``val``) is written the way that version writes it. Printed: the metric state's bytes
(what DDP all-reduces after every validation epoch, per process), the peak resident memory the pass
adds, the pass's time, and the summary's size and write time. Run it from anywhere but the checkout's
root when measuring another copy (the working directory is on ``sys.path``).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

import lt_bench
from lt_bench.metrics import LongTailMetrics
from lt_bench.summary import write_json


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=8142)
    parser.add_argument("--samples", type=int, default=24426, help="iNat2018's val2018 (its test set)")
    parser.add_argument("--batch", type=int, default=1000, help="dataset.eval_batch_size")
    parser.add_argument(
        "--results", type=int, default=3, help="results in the summary (test, test_last, val)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--signal", type=float, default=3.5, help="added to each target logit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    c, n = args.classes, args.samples
    g = torch.Generator().manual_seed(0)
    targets = torch.arange(n) % c
    logits = torch.randn(n, c, generator=g)  # made before the measurement: the forward pass's output
    # a target-logit bonus, so that per-class recalls take every value (1/3, 2/3, ...) as a trained model's
    # do, and summary.json holds full-length numbers rather than zeros
    logits[torch.arange(n), targets] += args.signal
    counts = [max(1, int(1000 * 0.01 ** (j / (c - 1)))) for j in range(c)]
    print(f"lt_bench from {Path(lt_bench.__file__).parent}; {c} classes, {n} samples, batch {args.batch}")

    before = rss_mib()
    metric = LongTailMetrics(c, counts)
    state = sum(t.numel() * t.element_size() for t in metric.metric_state.values() if torch.is_tensor(t))
    start = time.perf_counter()
    for i in range(0, n, args.batch):
        metric.update(logits[i : i + args.batch], targets[i : i + args.batch])
    updated = time.perf_counter()
    result = metric.compute()
    done = time.perf_counter()
    peak = rss_mib() - before
    print(
        f"METRIC state {state / 2**20:.3f} MiB ({state} bytes) per process (all-reduced per validation epoch)"
    )
    print(f"PASS update {updated - start:.3f} s + compute {done - updated:.3f} s = {done - start:.3f} s")
    print(f"PEAK resident memory added by the pass: {peak:.0f} MiB")
    print(f"FIGURES top1 {result['top1']:.4f}, balanced {result['balanced_acc']:.4f}")

    summary = {"class_counts": counts, **{f"result{k}": dict(result) for k in range(args.results)}}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "summary.json"
        start = time.perf_counter()
        try:  # this version keeps matrices beside summary.json (confusion_<key>.npy) when it keeps them
            from lt_bench.summary import split_off_confusion

            split_off_confusion(summary)
        except ImportError:  # an older one writes them inside it
            pass
        write_json(path, summary)
        written = time.perf_counter() - start
        size = path.stat().st_size
    print(
        f"SUMMARY {args.results} results: {size / 2**20:.3f} MiB ({size} bytes), written in {written:.2f} s"
    )


if __name__ == "__main__":
    main()
