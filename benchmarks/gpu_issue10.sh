#!/usr/bin/env bash
# Issue 10's GPU checks, for a session lent a device (about 12 minutes of device time).
# Run from the repository root on the GPU machine with the Omniglot zips copied into
# ${DATA:-.device/data}/omniglot (../shared does not travel: copy them into a git-ignored
# folder and carry it). Writes results/*.json rows and logs under ${OUT:-gpu-issue10}.
#   1. matmul precision: speed of the Reptile and MAML Omniglot presets with XLA's default
#      (TF32 on Hopper) and full float32 products
#   2. its accuracy: reptile-omniglot-5w1s at 20,000 meta-iterations both ways (10,000 tasks)
#   3. more seeds of the 5-way rows at the full budget (the paper's +/- likely spans runs)
set -u
OUT=${OUT:-gpu-issue10}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export FOMETA_DATA_DIR=${DATA:-.device/data} FOMETA_CACHE_DIR=${OUT}/cache
nvidia-smi -L
for p in default float32; do
  timeout 90 python3 benchmarks/preset_speed.py --preset reptile-omniglot-5w1s \
    --preset maml-omniglot-5w1s --iters 200 --repeats 2 --matmul-precision $p \
    | tee -a "$OUT/precision-speed.txt"
done
for p in default float32; do
  timeout 150 python3 benchmarks/reproduce.py --preset reptile-omniglot-5w1s \
    --variant "20k-$p" --runs "$OUT/runs" -- --meta-iters 20000 --matmul-precision $p \
    | tee -a "$OUT/precision-accuracy.txt"
done
timeout 360 python3 benchmarks/reproduce.py --preset reptile-omniglot-5w1s --seeds 3 \
  --also reptile-omniglot-5w5s --variant gpu --runs "$OUT/runs" -- --matmul-precision float32 \
  | tee "$OUT/seeds.txt"
python3 benchmarks/results_table.py
