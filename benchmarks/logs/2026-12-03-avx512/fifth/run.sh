#!/usr/bin/env bash
# One-off checks behind benchmarks/README.md's fifth session of 2026-12-03 (issue 14, item 1:
# MAML twice as fast as torch.func by default); run from the repository root, nothing else
# running:
#   bash benchmarks/logs/2026-12-03-avx512/fifth/run.sh
# speed_tasks_at_once_by_hand.txt came before it, by hand: speed.py --workload omniglot-5w1s
# --iters 20 --torch --tasks-at-once 1 for MAML (with --remat) twice, FOMAML and Reptile once.
# The blocks down to channels_first.txt ran at bf007ce (one task at a time a vmap of one task);
# from plain_map_more.txt on, before and after ec80dcb as each says (the unbatched task). At
# a later commit the first blocks measure the code of that commit, not bf007ce's.
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
# One task at a time unbatched (lax.map without batch_size; taken in ec80dcb), and the Omniglot
# network channels-first (no transposes of the patches in any derivative; dropped).
python3 "$D/plain_map.py" maml remat 2>&1 | quiet > "$D/plain_map.txt"
python3 "$D/channels_first.py" maml remat 2>&1 | quiet > "$D/channels_first.txt"
for a in "maml remat" "maml remat" "fomaml plain" "reptile plain"; do
  python3 "$D/plain_map.py" $a 2>&1 | quiet
done > "$D/plain_map_more.txt"
# (After ec80dcb; plain_map.py forces each path. A first run of these, whose batch_size=1
# column took ec80dcb's unbatched path too, was discarded.)
for a in "fomaml plain" "maml remat"; do
  python3 "$D/plain_map.py" $a miniimagenet-5w1s 2>&1 | quiet
done > "$D/plain_map_miniimagenet.txt"
# After fometa.learner's one task at a time went unbatched (lax.map without batch_size):
# MAML as fometa train runs it against torch.func again, three processes; two presets' chunks
# one at a time against all at once; every preset's first compile again.
for i in 1 2 3; do
  python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm maml --iters 20 --torch \
    --as-train 2>&1 | grep ratio
done > "$D/speed_maml_as_train_unbatched.txt"
for p in maml-omniglot-20w1s fomaml-omniglot-5w5s maml-mini-imagenet-5w1s; do
  python3 benchmarks/tasks_at_once.py --preset $p --values 1,all --iters 3 --rounds 4
done 2>&1 | quiet | grep -v "^\[" > "$D/tasks_at_once_unbatched.txt"
python3 benchmarks/compile_times.py --json 2>/dev/null | tail -1 > "$D/compile_times_unbatched.json"
python3 "$D/compile_table.py" benchmarks/logs/2026-12-02-avx512/compile_times_all.json \
  "$D/compile_times_all.json" "$D/compile_times_unbatched.json" > "$D/compile_table.md"
# The 160-image Omniglot presets, which stayed vmapped, one at a time unbatched.
for p in fomaml-omniglot-5w1s maml-omniglot-5w1s meta-sgd-omniglot-5w1s imaml-omniglot-5w1s; do
  python3 benchmarks/tasks_at_once.py --preset $p --values 1,all --iters 3 --rounds 4
done 2>&1 | quiet | grep -v "^\[" > "$D/tasks_at_once_160.txt"
