#!/usr/bin/env bash
# One task at a time (`fometa train --tasks-at-once 1`, the default on a CPU for
# Mini-ImageNet and, since later sessions, large or rematerialised Omniglot
# meta-batches; `speed.py --tasks-at-once 1`) against every task at once (the vmap of the
# whole task batch) and against torch.func, the three alternated in one process, on
# speed.py's workload (5 tasks); the same on Omniglot without torch (where the vmap stayed the
# default when this ran); the training chunks of the presets whose tasks run in parallel,
# one at a time against all at once (`tasks_at_once.py`); the Mini-ImageNet presets'
# compile times; and `fometa train` on the real Mini-ImageNet sample with each setting
# (FOMETA_DATA_DIR; the preset's 4 tasks at once is its vmap). About 30 minutes on 2 cores: run
# from the repository root in an environment with fometa and torch (the CPU wheel), on an
# otherwise idle machine. Logs go to ${OUT:-cpu-out}.
. benchmarks/cpu_preamble.sh

{ for a in fomaml reptile; do
    python3 benchmarks/speed.py --workload miniimagenet-5w1s --algorithm "$a" \
      --tasks-at-once 1 --iters 12 --block 2 --json --torch
  done
  python3 benchmarks/speed.py --workload miniimagenet-5w1s --algorithm maml --remat \
    --tasks-at-once 1 --iters 6 --block 2 --json --torch
} 2>&1 | tee "$OUT/tasks_at_once_miniimagenet.txt"
{ python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm maml --remat \
    --tasks-at-once 1 --iters 20 --json
  for a in fomaml reptile; do
    python3 benchmarks/speed.py --workload omniglot-5w1s --algorithm "$a" --tasks-at-once 1 \
      --iters 20 --json
  done
} 2>&1 | tee "$OUT/tasks_at_once_omniglot.txt"
{ python3 benchmarks/tasks_at_once.py --preset fomaml-mini-imagenet-5w1s --iters 3 --rounds 4
  python3 benchmarks/tasks_at_once.py --preset maml-mini-imagenet-5w1s --iters 2 --rounds 3
  python3 benchmarks/tasks_at_once.py --preset maml-omniglot-5w1s --iters 10 --rounds 4
} 2>&1 | tee "$OUT/tasks_at_once_presets.txt"
# Every other Mini-ImageNet preset whose tasks run in parallel (the default covers them too).
{ for p in maml-mini-imagenet-5w5s fomaml-mini-imagenet-5w5s meta-sgd-mini-imagenet-5w1s \
      anil-mini-imagenet-5w1s mamlpp-mini-imagenet-5w1s; do
    python3 benchmarks/tasks_at_once.py --preset "$p" --iters 2 --rounds 3
  done
  python3 benchmarks/tasks_at_once.py --preset imaml-mini-imagenet-5w1s --iters 1 --rounds 2
} 2>&1 | tee "$OUT/tasks_at_once_other_presets.txt"
python3 benchmarks/compile_times.py --preset maml-mini-imagenet-5w1s \
  --preset fomaml-mini-imagenet-5w1s --preset reptile-mini-imagenet-5w1s 2>&1 \
  | tee "$OUT/compile_times_miniimagenet.txt"
if [ -n "${FOMETA_DATA_DIR:-}" ]; then
  for n in "" 4; do
    run="$OUT/train_fomaml_mini${n:+_at_once_$n}"
    rm -rf "$run"
    fometa train --preset fomaml-mini-imagenet-5w1s --meta-iters 40 --log-every 10 \
      --eval-tasks 20 --no-progress --no-plots --run-dir "$run" ${n:+--tasks-at-once $n} \
      > /dev/null
    python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print(sys.argv[2], \
{k: r[k] for k in ('tasks_at_once', 'train_seconds', 'compile_seconds', 'eval')})" \
      "$run/results.json" "tasks_at_once=${n:-default}"
    rm -rf "$run"
  done 2>&1 | tee "$OUT/train_fomaml_miniimagenet.txt"
fi
