#!/usr/bin/env bash
# One-off checks behind benchmarks/README.md's "tried and dropped" of 2026-12-03; run from
# the repository root: bash benchmarks/logs/2026-12-03-avx512/oneoff/run.sh
set -u
D=benchmarks/logs/2026-12-03-avx512/oneoff
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
for f in "" "--xla_cpu_use_onednn=true"; do
  echo "XLA_FLAGS=$f"
  XLA_FLAGS="$f" python3 benchmarks/speed.py --workload miniimagenet-5w1s --algorithm fomaml --conv xla --iters 3 --warmup 1
done 2>&1 | grep -v -i warn | tee "$D/onednn_xla_conv.txt"
python3 "$D/first_layer_patches.py" 2>&1 | grep -v -i warn | tee "$D/first_layer_patches.txt"
S=xla_cpu_parallel_codegen_split_count
{ python3 "$D/compile_flags.py" maml-omniglot-5w1s "[{}, {\"$S\": 1}, {\"$S\": 2}, {\"$S\": 4}, {\"$S\": 8}, {\"xla_cpu_use_fusion_emitters\": false}]" 10
  python3 "$D/compile_flags.py" maml-omniglot-5w1s "[{\"xla_cpu_use_fusion_emitters\": false}, {\"$S\": 8}, {\"$S\": 4}, {\"$S\": 2}, {\"$S\": 1}, {}]" 10
} 2>&1 | grep -v -i warn | tee "$D/compile_flags.txt"
for n in 1 2; do python3 "$D/replicated_memory.py" $n; done 2>&1 | grep -v -i warn | tee "$D/replicated_memory.txt"
