#!/usr/bin/env bash
# Issue 13's rows at the papers' full budgets, for a session lent a device: one `run` call
# per row set (each call is limited to 600 s; ROWS picks the presets, default the four
# successors' Omniglot rows that cpu_issue13.sh ran at a few minutes on the CPU). Run from
# the repository root on the GPU machine with the Omniglot zips in
# ${DATA:-.device/data}/omniglot (../shared does not travel: copy them into that git-ignored
# folder and carry it). First the speed of each preset's compiled training chunk, then each
# row for as long as ${SECONDS_PER_ROW:-120} s allows (a row cut short by the timeout
# writes no result: give it a call of its own, with ROWS and SECONDS_PER_ROW set from the
# speeds printed first); everything comes back under ${OUT:-gpu-issue13}: logs, and result
# rows in $OUT/results (copy them into results/, then run results_table.py).
set -u
OUT=${OUT:-gpu-issue13}
ROWS=${ROWS:-"meta-sgd-omniglot-5w1s anil-omniglot-20w1s mamlpp-omniglot-20w1s imaml-omniglot-5w1s"}
mkdir -p "$OUT/results"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export FOMETA_DATA_DIR=${DATA:-.device/data} FOMETA_CACHE_DIR=/tmp/fometa-cache
nvidia-smi -L
for preset in $ROWS; do
  timeout 90 python3 benchmarks/preset_speed.py --preset "$preset" --iters 200 --repeats 2 \
    | tee -a "$OUT/speed.txt"
done
for preset in $ROWS; do
  timeout "${SECONDS_PER_ROW:-120}" python3 benchmarks/reproduce.py --preset "$preset" \
    --runs /tmp/gpu-runs --out "$OUT/results" | tee -a "$OUT/rows.txt"
done
