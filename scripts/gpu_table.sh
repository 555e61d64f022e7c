#!/usr/bin/env bash
# ARConvL's Fashion-MNIST table as one batch on a lent GPU (issue 26, item 4): the small-image runs that take
# 10-30 minutes each on one CPU core run many at once on one GPU. Three steps:
#
#   bash scripts/gpu_table.sh prepare     # here: what the device machine lacks (hydra, omegaconf, antlr4,
#                                         # the Fashion-MNIST files) into .gpu/, which git ignores
#   device run, carry [".gpu"], timeout_s 600:
#       bash scripts/gpu_table.sh run     # there: the jobs not yet in results/, JOBS at a time; no job starts
#                                         # after STOP_AFTER s, and at HARD_STOP s the finished ones are packed
#                                         # into $OUT/results.tgz
#   bash scripts/gpu_table.sh collect DIR # here: unpack DIR/results.tgz into results/, never over a result
#
# The runs are scripts/run_table.py's, resumable as on the CPU; each summary.json records the card it ran on
# (its "hardware" key) and scripts/fashion_tables.py marks the cells that hold a GPU seed. Settings (env):
# JOBS (16), STOP_AFTER (240), HARD_STOP (540), VALUES (20,1), SEEDS (0,1,2), ROWS (the seven rows of the
# paper), SPEC / ONLY (the table file and table), RESULTS (results), PY (python3), ALLOW_CPU=1 to run
# without a GPU (the check of this script on a CPU machine), GPU_DIR (.gpu).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-arconvl_no_momentum,cpl_no_momentum,gcpl_no_momentum,focal_inverse_no_momentum,cb_no_momentum,cb_focal_no_momentum,la_no_momentum}
SPEC=${SPEC:-scripts/tables/fashion.yaml}
ONLY=${ONLY:-arconvl_fashion}
RESULTS=${RESULTS:-results}
GPU_DIR=${GPU_DIR:-.gpu}                  # what travels to the device machine (carry)
DATA=/usr/share/datasets/fashion-mnist   # the table's dataset.root
PACKAGES="hydra omegaconf antlr4"        # what lt_bench needs beyond the device image's torch and lightning

prepare() {
  local site
  site=$(${PY:-.venv/bin/python} -c 'import omegaconf, os; print(os.path.dirname(os.path.dirname(omegaconf.__file__)))')
  rm -rf "$GPU_DIR" && mkdir -p "$GPU_DIR/site" "$GPU_DIR/fashion-mnist"
  for p in $PACKAGES; do cp -r "$site/$p" "$GPU_DIR/site/"; done
  find "$GPU_DIR/site" -name __pycache__ -prune -exec rm -rf {} +
  cp "$DATA"/*-ubyte.gz "$GPU_DIR/fashion-mnist/"
  grep -qx "/$GPU_DIR/" .git/info/exclude 2>/dev/null || echo "/$GPU_DIR/" >> .git/info/exclude
  echo "gpu_table: $GPU_DIR/ holds $(du -sh "$GPU_DIR" | cut -f1); call the device with carry [\"$GPU_DIR\"]"
}

run() {
  local py=${PY:-python3} out=${OUT:-gpu_out} log
  [ -d "$GPU_DIR/site" ] || { echo "gpu_table: no $GPU_DIR/site: run 'bash scripts/gpu_table.sh prepare' here first" >&2; exit 2; }
  export PYTHONPATH="$(cd "$GPU_DIR/site" && pwd):$PWD" OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
  if [ ! -e "$DATA" ] && [ -d "$GPU_DIR/fashion-mnist" ]; then  # the device machine: root, no data set
    mkdir -p "$(dirname "$DATA")" && ln -s "$(cd "$GPU_DIR/fashion-mnist" && pwd)" "$DATA"
  fi
  if [ -z "${ALLOW_CPU:-}" ]; then
    "$py" -c 'import torch; assert torch.cuda.is_available(), "no GPU"; print("gpu_table:", torch.cuda.get_device_name(), "torch", torch.__version__)'
  fi
  mkdir -p "$out"
  log="$out/run_table.log"
  # run_table's exit status is 1 when a job failed: the finished ones are packed all the same
  timeout --signal=KILL "${HARD_STOP:-540}" "$py" scripts/run_table.py "$SPEC" --only "$ONLY" --rows "$ROWS" \
    --values "${VALUES:-20,1}" --seeds "${SEEDS:-0,1,2}" --jobs "${JOBS:-16}" --python "$py" \
    --results "$RESULTS" --scratch /tmp/lt_bench_tables --stop-after "${STOP_AFTER:-240}" 2>&1 | tee "$log" || true
  local new
  new=$(awk '$1 == "done" || $1 == "collected" {print $2}' "$log")
  if [ -z "$new" ]; then echo "gpu_table: no job finished in this call"; exit 1; fi
  # shellcheck disable=SC2086  # one job folder per word
  tar czf "$out/results.tgz" -C "$RESULTS" $new
  echo "gpu_table: $(echo "$new" | wc -l) finished jobs in $out/results.tgz"
}

collect() {
  local archive=${1:?give the folder holding results.tgz}/results.tgz
  [ -f "$archive" ] || { echo "gpu_table: $archive does not exist" >&2; exit 2; }
  mkdir -p "$RESULTS"
  tar xzf "$archive" -C "$RESULTS" --skip-old-files   # a result already here (a CPU run, say) is kept
  tar tzf "$archive" | grep -c 'summary.json$' | sed 's/^/gpu_table: unpacked jobs: /'
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  collect) collect "${2:-}" ;;
  *) echo "usage: bash scripts/gpu_table.sh prepare | run | collect DIR" >&2; exit 2 ;;
esac
