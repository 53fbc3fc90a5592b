#!/usr/bin/env bash
# Issue 14's CPU numbers in one run (about 20 minutes on 2 cores): run from the repository
# root in an environment with fometa and torch (the CPU wheel), on an otherwise idle machine
# (pause background jobs). Logs go to ${OUT:-cpu-out}.
#   1. MAML on Omniglot vs torch.func, with remat (fometa's command-line default on a CPU
#      from 2 inner steps; since the fifth session of 2026-12-03 the default also computes
#      the tasks one at a time: `speed.py --as-train`) and without remat
#   2. Mini-ImageNet vs torch.func for all three algorithms
#   3. Mini-ImageNet row taps against k*k patches (conv_taps.py)
#   4. Mini-ImageNet meta-steps per HLO op kind (profile_ops.py)
. benchmarks/cpu_preamble.sh

{ python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm maml --iters 20 --json --torch --remat
  python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm maml --iters 20 --json --torch
} 2>&1 | tee "$OUT/speed_omniglot_maml.txt"
{ for a in fomaml reptile; do
    python3 benchmarks/speed.py --workload miniimagenet-5w1s --algorithm "$a" --iters 5 --json --torch
  done
  python3 benchmarks/speed.py --workload miniimagenet-5w1s --algorithm maml --iters 3 --json --torch --remat
} 2>&1 | tee "$OUT/speed_miniimagenet.txt"
{ for a in fomaml reptile; do
    python3 benchmarks/conv_taps.py --workload miniimagenet-5w1s --algorithm "$a" --iters 5 --json
  done
  python3 benchmarks/conv_taps.py --workload miniimagenet-5w1s --algorithm maml --remat --iters 3 --json
} 2>&1 | tee "$OUT/conv_taps_miniimagenet.txt"
{ for a in fomaml reptile; do
    python3 benchmarks/profile_ops.py --workload miniimagenet-5w1s --algorithm "$a" --iters 3 --json
  done
  python3 benchmarks/profile_ops.py --workload miniimagenet-5w1s --algorithm maml --remat --iters 2 --json
} 2>&1 | tee "$OUT/profile_miniimagenet.txt"
uptime
