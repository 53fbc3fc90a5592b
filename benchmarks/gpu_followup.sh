#!/usr/bin/env bash
# The GPU checks issue 4 still lacks, for the next session that is lent a device (about 10
# minutes of device time; no data needed: the benchmarks use random images). Run from the
# repository root on the GPU machine (jax[cuda], flax, optax, tqdm, matplotlib, pillow, and
# pytest for step 6). Writes logs under ${OUT:-gpu-followup}. Each step has its own timeout
# and a failure does not stop the next one.
#   1. every preset after the CPU changes (task mean as a dot, conv biases left out, batch
#      norm folded), MAML on Mini-ImageNet included: ms and meta-iterations/s
#   2. the scan over meta-iterations: plain, unrolled 10x, and with CUDA-graph command
#      buffers for loops (--xla_gpu_enable_command_buffer with WHILE)
#   3. bfloat16 vs float32 speed, and MAML with and without remat
#   4. the speed workload (speed.py) for all three algorithms on both datasets, and
#      Mini-ImageNet's row taps against k*k patches (conv_taps.py)
#   5. bfloat16 accuracy (dtype.py) on the GPU
#   6. the numerics tests on the GPU at full float32 precision
set -u
OUT=${OUT:-gpu-followup}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
P="python3 benchmarks/preset_speed.py"

timeout 150 $P --preset reptile-omniglot-5w1s --preset fomaml-omniglot-5w1s \
  --preset maml-omniglot-5w1s --preset reptile-mini-imagenet-5w1s \
  --preset fomaml-mini-imagenet-5w1s --preset maml-mini-imagenet-5w1s --conv patch \
  --iters 100 --repeats 2 | tee "$OUT/presets.txt"

for u in 1 10; do
  timeout 40 $P --preset reptile-omniglot-5w1s --preset fomaml-omniglot-5w1s --iters 200 \
    --repeats 2 --chunk-unroll $u | tee -a "$OUT/loop.txt"
done
XLA_FLAGS=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,CONDITIONAL,WHILE \
  timeout 40 $P --preset reptile-omniglot-5w1s --preset fomaml-omniglot-5w1s --iters 200 \
  --repeats 2 2>&1 | tail -3 | tee -a "$OUT/loop.txt"

timeout 60 $P --preset reptile-omniglot-5w1s --preset reptile-mini-imagenet-5w1s --iters 100 \
  --repeats 2 --dtype bfloat16 | tee "$OUT/bf16.txt"
timeout 60 $P --preset maml-mini-imagenet-5w1s --iters 50 --repeats 2 --remat \
  | tee "$OUT/remat.txt"

for w in omniglot-5w1s miniimagenet-5w1s; do
  for a in fomaml reptile maml; do
    timeout 40 python3 benchmarks/speed.py --workload $w --algorithm $a --iters 20 --json | tail -1
  done
done | tee "$OUT/speed.txt"
for a in fomaml reptile; do  # the CPU's row taps (fometa.convnets.row_tap_conv) on the GPU
  timeout 60 python3 benchmarks/conv_taps.py --workload miniimagenet-5w1s --algorithm $a \
    --iters 20 --json | tail -1
done | tee "$OUT/conv_taps.txt"

timeout 90 python3 benchmarks/dtype.py 2>&1 | tail -6 | tee "$OUT/dtype.txt"

JAX_DEFAULT_MATMUL_PRECISION=highest timeout 90 python3 -m pytest -q -p no:cacheprovider \
  tests/test_convnets.py tests/test_matmul.py tests/test_algorithms.py 2>&1 | tail -3 \
  | tee "$OUT/tests.txt"
