#!/usr/bin/env bash
# One-off checks behind benchmarks/README.md's fourth session of 2026-12-03 (issue 14: MAML's
# Omniglot step, items 1 and 5's first compile); run from the repository root, nothing else
# running:
#   bash benchmarks/logs/2026-12-03-avx512/fourth/run.sh
set -u
D=benchmarks/logs/2026-12-03-avx512/fourth
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
quiet() { grep -v -i -e warn -e "^E[0-9]"; }
for i in 1 2; do python3 "$D/planes.py" maml remat; done 2>&1 | quiet > "$D/planes.txt"
for i in 1 2; do python3 "$D/tn_layout.py" maml remat; done 2>&1 | quiet > "$D/tn_layout.txt"
python3 "$D/planes_profile.py" 2>&1 | quiet > "$D/planes_profile.txt"
python3 benchmarks/logs/2026-12-03-avx512/third/dot_wall.py omniglot-5w1s maml 1 2>&1 | quiet \
  > "$D/dot_wall.txt"
python3 "$D/finite_check.py" 2 maml-omniglot-5w1s maml-mini-imagenet-5w1s mamlpp-omniglot-20w5s \
  2>&1 | quiet > "$D/finite_check.txt"
python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm maml --iters 20 --torch --remat \
  --tasks-at-once 1 2>&1 | grep ratio > "$D/speed_maml_tasks_at_once.txt"
# One task at a time against all at once on the Omniglot presets that rematerialise
# (second-order, 5 inner steps), after the speed workload's MAML gained from it:
for p in maml-omniglot-20w1s maml-omniglot-20w5s anil-omniglot-20w1s anil-omniglot-20w5s \
         mamlpp-omniglot-20w1s mamlpp-omniglot-20w5s; do
  python3 benchmarks/tasks_at_once.py --preset $p --values 1,all --iters 3 --rounds 4
done 2>&1 | quiet | grep -v "^\[" > "$D/tasks_at_once_remat.txt"
# ...and where the rule's edge is: CIFAR-FS's MAML (remat), FOMAML and iMAML on Omniglot
# (several inner steps, no remat):
for p in maml-cifar-fs-5w1s fomaml-omniglot-20w1s imaml-omniglot-20w1s; do
  python3 benchmarks/tasks_at_once.py --preset $p --values 1,all --iters 3 --rounds 4
done 2>&1 | quiet | grep -v "^\[" > "$D/tasks_at_once_boundary.txt"
# ...and the 5-way Omniglot presets (32 tasks, 1 inner step) that a rule by pixels would take:
for p in maml-omniglot-5w5s fomaml-omniglot-5w1s fomaml-omniglot-5w5s meta-sgd-omniglot-5w1s; do
  python3 benchmarks/tasks_at_once.py --preset $p --values 1,all --iters 3 --rounds 4
done 2>&1 | quiet | grep -v "^\[" > "$D/tasks_at_once_5way.txt"
# ...and the other Omniglot presets the rule (320 images per inner step or more) takes:
for p in fomaml-omniglot-20w5s meta-sgd-omniglot-5w5s imaml-omniglot-5w5s imaml-omniglot-20w5s; do
  python3 benchmarks/tasks_at_once.py --preset $p --values 1,all --iters 3 --rounds 4
done 2>&1 | quiet | grep -v "^\[" > "$D/tasks_at_once_rest.txt"
python3 "$D/table.py" 2>&1 | quiet > "$D/table.md"
# The test suite with an empty JAX cache, with tests/conftest.py's xdist_group hook (new)
# and at dc892d2 without it (old, a clone in /tmp/old_clone), one after the other (40 min;
# not run by this script): /tmp/suite_ab.sh was
#   for v in new old; do  # d: this checkout, or /tmp/old_clone for old
#     JAX_COMPILATION_CACHE_DIR=/tmp/jc_$v FOMETA_CACHE_DIR=/tmp/fc_$v \
#       FOMETA_DATA_DIR=/work/shared/data python -m pytest -q --durations=25 > suite_$v.txt
#   done
# (suite_new.txt, suite_old.txt: their summaries, the progress lines left out).
