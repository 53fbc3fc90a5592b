#!/usr/bin/env bash
# One-off checks behind benchmarks/README.md's third session of 2026-12-03 (MAML's Omniglot
# step on a slow day: where its wall time goes; compile time: threefry's lowering, XLA:CPU's
# option presets); run from the repository root, nothing else running:
#   bash benchmarks/logs/2026-12-03-avx512/third/run.sh
set -u
# (speed_maml_remat_0740.txt: the first block's command with --json, run by hand before the
# script, its ratio lines kept.)
D=benchmarks/logs/2026-12-03-avx512/third
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
for i in 1 2 3; do
  python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm maml --iters 20 --torch --remat
done 2>&1 | grep "ratio" > "$D/speed_maml_remat.txt"
python3 "$D/dot_wall.py" omniglot-5w1s maml 1 2>&1 | grep -v -i warn > "$D/dot_wall.txt"
python3 "$D/dot_peak.py" 2>&1 | grep -v -i warn > "$D/dot_peak.txt"
for p in fomaml-mini-imagenet-5w1s maml-mini-imagenet-5w1s; do
  for v in rolled unrolled rolled unrolled; do python3 "$D/prng_lowering.py" $v $p; done
done 2>&1 | grep -v -i warn > "$D/prng_lowering.txt"
python3 "$D/options.py" maml-omniglot-5w1s 10 3 base \
  'xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_COMPILE' 'xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME' \
  'xla_cpu_enable_concurrency_optimized_scheduler=false' 2>&1 | grep -v -i warn > "$D/options.txt"
python3 "$D/remat_policy.py" 2>&1 | grep -v -i warn > "$D/remat_policy.txt"
