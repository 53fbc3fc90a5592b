#!/usr/bin/env bash
# One-off checks behind benchmarks/README.md's "tried and dropped" of the second session of
# 2026-12-03; run from the repository root, nothing else running:
#   bash benchmarks/logs/2026-12-03-avx512/second/run.sh
set -u
D=benchmarks/logs/2026-12-03-avx512/second
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{ python3 "$D/task_groups.py" 4 omniglot-5w1s 6
  python3 "$D/task_groups.py" 4 miniimagenet-5w1s 2
} 2>&1 | grep -v -i warn > "$D/task_groups.txt"
python3 "$D/compile_anatomy.py" maml-mini-imagenet-5w1s 2>&1 | grep -v -i warn > "$D/compile_anatomy.txt"
python3 "$D/small_fusions.py" maml-mini-imagenet-5w1s base,nofinite,flat,nofinite+flat 2 2>&1 \
  | grep -v -i warn > "$D/small_fusions.txt"
python3 "$D/opt_level.py" maml-omniglot-5w1s 20 5 3,2,1 2>&1 | grep -v -i warn > "$D/opt_level.txt"
for u in 1 5 1 5; do
  python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm maml --iters 20 --remat --unroll $u
done 2>&1 | grep -v -i warn | grep "ms (" > "$D/unroll.txt"
