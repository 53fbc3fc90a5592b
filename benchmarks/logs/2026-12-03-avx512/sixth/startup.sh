#!/usr/bin/env bash
# One-off (sixth session): initial_state's time, old code (a worktree of c78f4d7 at
# /tmp/old_wt) and new alternated, in fresh processes; then whole `fometa train` runs of
# maml-omniglot-5w1s on the real Omniglot, old and new alternated, with one on-disk
# compilation cache per code (warm after a first run) and with none. `startup.sh train`: only
# the whole runs (the first version ran them from the repository root, where `python -m`
# imported the new code for both: discarded).
set -u
cd "$(dirname "$0")/../../../.."
D=benchmarks/logs/2026-12-03-avx512/sixth
unset JAX_COMPILATION_CACHE_DIR
if [ "${1:-}" != "train" ]; then  # `startup.sh init`: only this part
for round in 1 2 3; do
  for preset in maml-sine maml-omniglot-5w1s maml-mini-imagenet-5w1s; do
    PYTHONPATH=/tmp/old_wt python $D/startup.py $preset
    python $D/startup.py $preset
  done
done > $D/startup.txt 2>/dev/null
fi
[ "${1:-}" = "init" ] && exit 0
train() {  # code cache label; run from /tmp: `python -m` puts the working directory first
  rm -rf /tmp/startup_run
  code=$(cd /tmp && PYTHONPATH=$1 python -c "import fometa; print(fometa.__file__)")
  s=$(date +%s.%N)
  (cd /tmp && PYTHONPATH=$1 python -m fometa train --preset maml-omniglot-5w1s --meta-iters 20 --eval-tasks 20 \
    --run-dir /tmp/startup_run --no-progress --no-plots --compile-cache "$2" > /dev/null 2>&1)
  e=$(date +%s.%N)
  python -c "import json,sys; r=json.load(open('/tmp/startup_run/results.json')); print(json.dumps({'code': sys.argv[1], 'cache': sys.argv[2], 'wall_s': round($e-$s, 1), 'compile_seconds': r.get('compile_seconds')}))" "$code" "$3"
}
rm -rf /tmp/startup_cache_old /tmp/startup_cache_new
for round in 1 2 3; do
  train /tmp/old_wt /tmp/startup_cache_old "warm after round 1"
  train "" /tmp/startup_cache_new "warm after round 1"
done > $D/startup_train.txt
for round in 1 2; do
  train /tmp/old_wt off off
  train "" off off
done >> $D/startup_train.txt
