#!/usr/bin/env bash
# The CPU numbers of benchmarks/README.md, in one run (about 15 minutes on 2 cores): run from
# the repository root in an environment with fometa and torch (the CPU wheel) installed, on
# an otherwise idle machine. Logs go to ${OUT:-cpu-out}.
#   1. fometa vs torch.func on the speed workload (both on all cores), every algorithm
#   2. where the time went: each CPU optimisation undone in turn (cpu_ablation.py)
#   3. the Omniglot presets' training chunks (ms per meta-iteration)
#   4. patch vs lax.conv convolutions
#   5. MAML memory against inner steps, with and without remat
. benchmarks/cpu_preamble.sh

for a in fomaml reptile maml; do
  python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm "$a" --iters 20 --json --torch
done 2>&1 | tee "$OUT/speed_omniglot.txt"
python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm maml --iters 20 --json --torch \
  --remat 2>&1 | tee -a "$OUT/speed_omniglot.txt"
for a in fomaml reptile; do
  python3 benchmarks/speed.py --workload miniimagenet-5w1s --algorithm "$a" --iters 5 --json --torch
done 2>&1 | tee "$OUT/speed_miniimagenet.txt"

for a in fomaml reptile maml; do
  python3 benchmarks/cpu_ablation.py --algorithm "$a" --iters 20
done 2>&1 | tee "$OUT/ablation.txt"

python3 benchmarks/preset_speed.py --preset reptile-omniglot-5w1s --preset fomaml-omniglot-5w1s \
  --preset maml-omniglot-5w1s --iters 50 2>&1 | tee "$OUT/presets.txt"
python3 benchmarks/preset_speed.py --preset maml-omniglot-5w1s --iters 50 --remat 2>&1 \
  | tee -a "$OUT/presets.txt"

python3 benchmarks/conv.py --runs 10 2>&1 | tee "$OUT/conv.txt"
python3 benchmarks/memory.py 2>&1 | tee "$OUT/memory.txt"
uptime
