#!/usr/bin/env bash
# Issue 10's GPU checks, for a session lent a device: one `run` call (under its 600 s limit;
# about 6 minutes here). Run from the repository root on the GPU machine with the Omniglot
# zips in ${DATA:-.device/data}/omniglot (../shared does not travel: copy them into that
# git-ignored folder and carry it). Everything comes back under ${OUT:-gpu-issue10}: logs,
# and result rows in $OUT/results (copy them into results/, then run results_table.py).
#   1. matmul precision: speed of the Reptile and MAML Omniglot presets with XLA's default
#      (TF32 on Hopper) and with full float32 products
#   2. its accuracy: reptile-omniglot-5w1s at 10,000 meta-iterations both ways
#   3. a second seed of the 5-way rows at the full budget (the paper's +/- likely spans runs)
set -u
OUT=${OUT:-gpu-issue10}
mkdir -p "$OUT/results"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export FOMETA_DATA_DIR=${DATA:-.device/data} FOMETA_CACHE_DIR=/tmp/fometa-cache
R="python3 benchmarks/reproduce.py --runs /tmp/gpu-runs --out $OUT/results"
nvidia-smi -L
for p in default float32; do
  timeout 40 python3 benchmarks/preset_speed.py --preset reptile-omniglot-5w1s \
    --preset maml-omniglot-5w1s --iters 200 --repeats 2 --matmul-precision $p \
    | tee -a "$OUT/precision-speed.txt"
done
for p in default float32; do
  timeout 60 $R --preset reptile-omniglot-5w1s --variant "10k-$p" \
    -- --meta-iters 10000 --matmul-precision $p | tee -a "$OUT/precision-accuracy.txt"
done
timeout 240 $R --preset reptile-omniglot-5w1s --also reptile-omniglot-5w5s --seeds 2 \
  --variant gpu | tee "$OUT/seeds.txt"
