#!/usr/bin/env bash
# One-off (sixth session): `fometa eval --run-dir R --json` of a finished maml-omniglot-5w1s
# run (20 meta-iterations, 20 evaluation tasks, real Omniglot), the checkpoint template
# computed by initial_state (a worktree of e2eeeb5 at /tmp/old2) against its shapes only
# (jax.eval_shape), alternated, 3 rounds, one on-disk compilation cache warmed by the
# training run; from /tmp (`python -m` puts the working directory first). Needs
# FOMETA_DATA_DIR.
set -eu
cd /tmp
unset JAX_COMPILATION_CACHE_DIR
rm -rf /tmp/eval_startup_run /tmp/eval_startup_cache
python -m fometa train --preset maml-omniglot-5w1s --meta-iters 20 --eval-tasks 20 \
  --run-dir /tmp/eval_startup_run --no-progress --no-plots \
  --compile-cache /tmp/eval_startup_cache > /dev/null 2>&1
for round in 1 2 3; do
  for code in /tmp/old2 ""; do
    where=$(PYTHONPATH=$code python -c "import fometa; print(fometa.__file__)")
    s=$(date +%s.%N)
    mean=$(PYTHONPATH=$code python -m fometa eval --run-dir /tmp/eval_startup_run --json \
      --compile-cache /tmp/eval_startup_cache 2>/dev/null | python -c "import json,sys; print(json.load(sys.stdin)['eval']['mean'])")
    e=$(date +%s.%N)
    python -c "import json,sys; print(json.dumps({'code': sys.argv[1], 'wall_s': round($e-$s, 2), 'eval_mean': float(sys.argv[2])}))" "$where" "$mean"
  done
done
