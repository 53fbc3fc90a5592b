#!/usr/bin/env bash
# One-off checks behind benchmarks/README.md's eighth session of 2026-12-03 (issue 14, item 5:
# every first compile under 10 s); run from the repository root, nothing else running:
#   bash benchmarks/logs/2026-12-03-avx512/eighth/run.sh
set -u
D=benchmarks/logs/2026-12-03-avx512/eighth
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
unset JAX_COMPILATION_CACHE_DIR
quiet() { grep -v -i -e warn -e "^E[0-9]" -e "^\["; }
# Every preset's first compile (one process, no on-disk cache), and the table against the
# fifth session's run of the same command.
python3 benchmarks/compile_times.py --json 2>/dev/null | tail -1 > "$D/compile_times_all.json"
python3 benchmarks/logs/2026-12-03-avx512/fifth/compile_table.py \
  benchmarks/logs/2026-12-03-avx512/fifth/compile_times_all.json "$D/compile_times_all.json" \
  > "$D/compile_table.md"
# How many cores XLA's compile keeps busy (process CPU seconds over wall seconds), the same
# program three times in fresh processes, to see the machine's own spread.
for i in 1 2 3; do
  python3 "$D/cpu_time.py" maml-mini-imagenet-5w1s maml-omniglot-5w1s mamlpp-omniglot-20w5s 2>&1 | quiet
done > "$D/cpu_time.txt"
# Where the fusion emitters' time goes, by the fusions' op_name.
for p in maml-mini-imagenet-5w1s mamlpp-omniglot-20w5s; do
  python3 "$D/fusion_groups.py" $p 6 2>&1 | quiet | awk 'NR <= 12 || /sampler share/'
done > "$D/fusion_groups.txt"
# The settings that change the program's shape: the defaults against remat off and all tasks
# at once, fresh processes.
for v in "" "remat=false" "tasks_at_once=4" "remat=false tasks_at_once=4"; do
  python3 "$D/variants.py" maml-mini-imagenet-5w1s $v 2>&1 | quiet | tail -1
done > "$D/variants.txt"
python3 "$D/options_unknown.py" 2>/dev/null > "$D/options_unknown.txt"
python3 "$D/startup_checks.py" reptile-sine maml-omniglot-5w1s maml-mini-imagenet-5w1s imaml-mini-imagenet-5w1s 2>&1 | quiet > "$D/startup_checks.txt"
