#!/usr/bin/env bash
# The sixth session's one-off measurements (2026-12-03, the 2-core AVX-512 machine, nothing
# else running), from the repository root. The options block ran at c78f4d7; the others with
# the initial state's change in the working tree (it leaves the training loop and the
# sampler's programs as they were); startup.sh compares against a worktree of c78f4d7 at
# /tmp/old_wt (`git worktree add /tmp/old_wt c78f4d7`), with FOMETA_DATA_DIR set.
# The blocks are grouped by subject, not in the order they ran.
set -eu
D=benchmarks/logs/2026-12-03-avx512/sixth
O=benchmarks/logs/2026-12-03-avx512/third/options.py
unset JAX_COMPILATION_CACHE_DIR
# XLA:CPU options (the first process's second `base` hit the in-memory cache: see README)
python $O maml-omniglot-5w1s 5 3 base 'xla_cpu_max_isa=AVX2' 'xla_cpu_emitter_verification_level=0' \
  'xla_cpu_experimental_ynn_fusion_type=' 'xla_cpu_use_xnnpack=false' \
  'xla_cpu_copy_insertion_use_region_analysis=false' base > $D/options.txt
for order in "base xla_cpu_use_xnnpack=false xla_cpu_emitter_verification_level=0" \
             "xla_cpu_emitter_verification_level=0 xla_cpu_use_xnnpack=false base"; do
  python $O maml-omniglot-5w1s 5 3 $order >> $D/options.txt
done
# where the first compile goes: the task sampler
python $D/sampler_compile.py maml-omniglot-5w1s 2>&1 | tail -2 > $D/sampler_compile.txt
python $D/sampler_parts.py 2>&1 | grep -v "^$" > $D/sampler_parts.txt
python $D/floyd_loop.py 2>&1 | grep -v "^$" > $D/floyd_loop.txt
python $D/fusion_sources.py maml-omniglot-5w1s 6 2>&1 | tail -42 > $D/fusion_sources.txt
# the initial state in two programs: initial_state alone, then whole runs (at 10c64c9, the
# jit inside the problems' init_params); then initial_state alone again after the review's
# version (the jit in initial_state, same programs), which rewrote startup.txt
bash $D/startup.sh
bash $D/startup.sh init
# run by hand from /tmp before the change (c78f4d7), then with its first version (one jit
# around both), the real Omniglot, into /tmp/train.prof and /tmp/train2.prof:
#   python -m cProfile -o /tmp/train.prof -m fometa train --preset maml-omniglot-5w1s \
#     --meta-iters 2 --eval-tasks 2 --run-dir /tmp/prof_run --no-progress --no-plots --compile-cache off
python $D/startup_profile.py > $D/startup_profile.txt
python $D/options_valid.py > $D/options_valid.txt
# the initial state bit for bit, c78f4d7 against now (after the review's version: the jit in initial_state)
for args in "maml-sine" "maml-omniglot-5w1s" "maml-mini-imagenet-5w1s" "meta-sgd-omniglot-5w1s --inner-lr-low 0.005"; do
  PYTHONPATH=/tmp/old_wt python $D/bits.py $args
  python $D/bits.py $args
done > $D/bits.txt
# fometa eval's template as shapes only (a change tried and dropped; the worktree of e2eeeb5
# at /tmp/old2, the change in the working tree)
bash $D/eval_startup.sh > $D/eval_startup.txt
