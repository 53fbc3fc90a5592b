#!/usr/bin/env bash
# One device session (see README, "Speed"): run from the repository root on a GPU machine
# with jax[cuda], flax, optax, tqdm, matplotlib and pillow, with the Omniglot zips in
# $FOMETA_DATA_DIR/omniglot. Writes logs and the run directory under ${OUT:-gpu-out}.
#   1. meta-iterations/s of Reptile on Omniglot 5-way 1-shot (sizes step 2)
#   2. the paper's full Reptile Omniglot 5-way 1-shot run (100,000 meta-iterations),
#      shortened only if step 1 says it would not fit in TRAIN_BUDGET_S
#   3. meta-iterations/s of every algorithm on both datasets, XLA vs patch convolutions
#   4. the convolution tests on the GPU at full f32 precision
set -u
OUT=${OUT:-gpu-out}
TRAIN_BUDGET_S=${TRAIN_BUDGET_S:-200}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export FOMETA_CACHE_DIR=${FOMETA_CACHE_DIR:-/tmp/fometa-cache}
nvidia-smi -L
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"

timeout 60 python3 benchmarks/preset_speed.py --preset reptile-omniglot-5w1s --conv xla \
  --iters 500 --repeats 2 | tee "$OUT/speed_reptile.txt"
iters=$(python3 - "$OUT/speed_reptile.txt" "$TRAIN_BUDGET_S" <<'PY'
import json, sys
rows = json.loads(open(sys.argv[1]).read().splitlines()[-1])
fit = int(float(sys.argv[2]) * 1e3 / rows[0]["ms_per_meta_iter"]) // 10000 * 10000
print(max(10000, min(100000, fit)))
PY
) || iters=20000
echo "full run: $iters meta-iterations"
timeout 300 python3 -m fometa train --preset reptile-omniglot-5w1s --meta-iters "$iters" \
  --log-every 10000 --run-dir "$OUT/run" --no-progress 2>&1 | tee "$OUT/run.txt"

timeout 120 python3 benchmarks/preset_speed.py --preset reptile-omniglot-5w1s \
  --preset fomaml-omniglot-5w1s --preset maml-omniglot-5w1s --preset reptile-mini-imagenet-5w1s \
  --preset fomaml-mini-imagenet-5w1s --preset maml-mini-imagenet-5w1s --conv xla --conv patch \
  --iters 100 --repeats 2 --eval-tasks 500 | tee "$OUT/speed_all.txt"

JAX_DEFAULT_MATMUL_PRECISION=highest timeout 45 python3 -m pytest -q -p no:cacheprovider \
  tests/test_convnets.py 2>&1 | tail -3 | tee "$OUT/tests.txt"
