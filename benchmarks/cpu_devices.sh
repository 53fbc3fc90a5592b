#!/usr/bin/env bash
# The CPU as two JAX devices (`fometa train --devices 2`; `speed.py --devices 2`) against the
# same step on one of them and against torch.func, the three alternated in one process, on 4
# tasks per meta-step (a multiple of 2; speed.py's default is 5); then each step in a plain
# one-device process (no split), and the per-op profile of FOMAML's Mini-ImageNet step with
# the operations running at once. About 20 minutes on 2 cores: run from the repository root
# in an environment with fometa and torch (the CPU wheel), on an otherwise idle machine.
# Logs go to ${OUT:-cpu-out}.
. benchmarks/cpu_preamble.sh

python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm maml --remat --tasks 4 \
  --devices 2 --iters 20 --json --torch 2>&1 | tee "$OUT/devices_omniglot_maml.txt"
{ for a in fomaml reptile; do
    python3 benchmarks/speed.py --workload miniimagenet-5w1s --algorithm "$a" --tasks 4 \
      --devices 2 --iters 12 --block 2 --json --torch
  done
} 2>&1 | tee "$OUT/devices_miniimagenet.txt"
{ for a in fomaml reptile; do
    python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm "$a" --tasks 4 \
      --devices 2 --iters 20 --json --torch
  done
} 2>&1 | tee "$OUT/devices_omniglot_first_order.txt"
{ python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm maml --remat --tasks 4 \
    --iters 20 --json
  for a in fomaml reptile; do
    python3 benchmarks/speed.py --workload miniimagenet-5w1s --algorithm "$a" --tasks 4 \
      --iters 12 --json
    python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm "$a" --tasks 4 \
      --iters 20 --json
  done
} 2>&1 | tee "$OUT/one_device_process.txt"
python3 benchmarks/profile_ops.py --workload miniimagenet-5w1s --algorithm fomaml --iters 3 \
  --json 2>&1 | tee "$OUT/profile_fomaml_miniimagenet.txt"
uptime
