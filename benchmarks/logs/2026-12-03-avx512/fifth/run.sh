#!/usr/bin/env bash
# One-off checks behind benchmarks/README.md's fifth session of 2026-12-03 (issue 14, item 1:
# MAML twice as fast as torch.func by default); run from the repository root, nothing else
# running:
#   bash benchmarks/logs/2026-12-03-avx512/fifth/run.sh
# speed_tasks_at_once_by_hand.txt came before it, by hand, from the same commands as its first
# block without --as-train (--tasks-at-once 1, and --remat for MAML), MAML twice.
set -u
D=benchmarks/logs/2026-12-03-avx512/fifth
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
quiet() { grep -v -i -e warn -e "^E[0-9]"; }
# MAML as fometa train runs it by default (remat, now one task at a time), against all tasks at
# once and torch.func, alternated in one process; three processes.
for i in 1 2 3; do
  python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm maml --iters 20 --torch \
    --as-train 2>&1 | grep ratio
done > "$D/speed_maml_as_train.txt"
# The one Omniglot preset the new rule takes (remat, 160 images per step).
python3 benchmarks/tasks_at_once.py --preset mamlpp-omniglot-20w1s --values 1,all --iters 3 \
  --rounds 4 2>&1 | quiet | grep -v "^\[" > "$D/tasks_at_once_mamlpp.txt"
# Tried and dropped: the groups as independent computations in one program.
python3 "$D/unrolled_groups.py" maml remat 1,3 2>&1 | quiet > "$D/unrolled_groups.txt"
# Every preset's first compile after this session's rule (one process, no on-disk cache).
python3 benchmarks/compile_times.py --json 2>/dev/null | tail -1 > "$D/compile_times_all.json"
