#!/usr/bin/env bash
# Re-creates the README's result tables on the embedded mnist_lt (IF 100, 3 seeds) and the ARConvL
# G-mean table (even_minority, q = 10 and 100). Two runs at a time, one thread each; ~30 min on 2 cores.
#   bash scripts/paper_tables.sh [OUT_DIR]      (default results/tables)
# It ends by printing the README tables (scripts/results_tables.py); per-table significance tests:
#   python -m lt_bench.report OUT_DIR/<table> --metric balanced_acc,few,gmean --no-plots
set -euo pipefail
OUT=${1:-results/tables}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

row() {  # row TABLE NAME OVERRIDES...
    local table=$1 name=$2; shift 2
    [[ -f "$OUT/$table/$name/2/summary.json" ]] && return 0   # finished earlier: a re-run resumes
    "$PY" -m lt_bench --multirun "$@" seed=0,1,2 ckpt_path=auto trainer.enable_progress_bar=false print_table=false \
        "hydra.sweep.dir=$OUT/$table/$name" > "$OUT/$table/$name.log" 2>&1 \
        || { echo "row $table/$name failed: see $OUT/$table/$name.log" >&2; return 1; }
}
export -f row; export OUT PY

ARC="dataset.profile=even_minority dataset.val_fraction=0.1 trainer.select_by=val/gmean trainer.max_epochs=50"
mkdir -p "$OUT"/{baselines,ppl,phase,logit_adjustment,arconvl}
{
  echo "baselines ce loss=ce"
  echo "baselines la loss=la"
  echo "baselines ldam_drw experiment=ldam_drw dataset=mnist_lt backbone=convnet trainer.max_epochs=30 dataset.subset_seed=null"
  echo "ppl drw schedule=drw"
  echo "ppl ppw schedule=ppw"
  echo "ppl cri loss=cri"
  echo "ppl cri_ppw loss=cri schedule=ppw"
  echo "ppl ppl_cri method=ppl_cri"
  echo "phase daw loss=asl"
  echo "phase msr method=phase loss=ce"
  echo "phase phase method=phase"
  echo "logit_adjustment vs loss=vs"
  echo "logit_adjustment vs_tla_adrw method=vs_tla_adrw"
  echo "logit_adjustment vs_tla_adrw_sam method=vs_tla_adrw optimizer=sam"
  echo "logit_adjustment kps loss=kps"
  echo "logit_adjustment kps_ga method=kps_ga dataset.batch_size=64"
  for q in 10 100; do
    echo "arconvl ce_q$q $ARC dataset.imbalance_factor=$q loss=ce"
    echo "arconvl la_q$q $ARC dataset.imbalance_factor=$q loss=la"
    # run before the recipe took the authors' momentum-free step: kept with the momentum it was run with
    echo "arconvl arconvl_q$q experiment=arconvl optimizer.momentum=0.9 dataset.imbalance_factor=$q"
  done
} | xargs -P 2 -L 1 bash -c 'row "$@"' _
"$PY" scripts/results_tables.py "$OUT"
