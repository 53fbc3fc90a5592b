#!/usr/bin/env bash
# One-off checks behind benchmarks/README.md's ninth session (2026-12-04; issue 14, item 5:
# every first compile under 10 s); run from the repository root, nothing else running:
#   bash benchmarks/logs/2026-12-04-avx512/ninth/run.sh
# Fresh processes, alternated, no on-disk cache: fometa's training loop of two second-order
# presets (tracing, lowering, XLA) against plain_maml.py, a minimal MAML meta-step in plain
# JAX with the same shapes (lax.conv or 3x3 patches, with and without remat).
set -u
D=benchmarks/logs/2026-12-04-avx512/ninth
P=benchmarks/logs/2026-12-03-avx512/seventh/phases.py
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
unset JAX_COMPILATION_CACHE_DIR
for round in 1 2; do
  for p in maml-mini-imagenet-5w1s maml-omniglot-20w1s; do
    python3 $P $p 2>&1 | grep "^$p"
  done
  for d in mini-imagenet omniglot; do
    for v in "lax noremat" "patch noremat" "patch remat"; do
      python3 $D/plain_maml.py $d $v 2>&1 | grep "^plain"
    done
  done
done | tee $D/floor.txt
# Every preset's first compile, one fresh process per preset (as `fometa train` starts), no
# on-disk cache; the table against the eighth session's one-process run.
python3 -c "from fometa.run import PRESETS; print(*PRESETS)" | tr ' ' '\n' | while read p; do
  python3 benchmarks/compile_times.py --preset "$p" --json 2>/dev/null | tail -1
done | python3 -c "import json, sys; print(json.dumps([r for l in sys.stdin for r in json.loads(l)]))" \
  > $D/compile_times_fresh.json
python3 benchmarks/logs/2026-12-03-avx512/fifth/compile_table.py \
  benchmarks/logs/2026-12-03-avx512/eighth/compile_times_all.json $D/compile_times_fresh.json \
  > $D/compile_table.md
