#!/usr/bin/env bash
# The seventh session's one-off measurements (2026-12-03, the 2-core AVX-512 machine), from
# the repository root: bash benchmarks/logs/2026-12-03-avx512/seventh/run.sh [block ...]
#   phases   a preset's training loop: tracing, lowering and XLA's compile (phases.txt)
#   trace    XLA's compile of maml-mini-imagenet-5w1s under jax.profiler, by event (compile_trace.txt)
#   threads  training loop and evaluation compiled one after the other or in two threads (threads.txt)
#   sigint   Ctrl-C to `python -m fometa train` after each delay, appended to sigint.txt (it
#            holds d48ac1d's run, from a worktree on PYTHONPATH with cwd /tmp, then 0701a57's)
# The cold suite's files (suite_cold_*.txt) came from `bash .ci/run` in a clean clone of
# d48ac1d with JAX_COMPILATION_CACHE_DIR an empty folder and PYTEST_ADDOPTS=--durations=80,
# while two review helpers and other work ran beside it; cache_entries.py read that folder.
set -u
D=benchmarks/logs/2026-12-03-avx512/seventh
blocks=${*:-phases trace threads}
for b in $blocks; do
  case $b in
    phases) for p in maml-omniglot-5w1s maml-mini-imagenet-5w1s mamlpp-omniglot-20w5s \
                 imaml-mini-imagenet-5w1s meta-sgd-mini-imagenet-5w5s reptile-omniglot-5w1s; do
              python $D/phases.py $p 2>&1 | grep "^$p"; done | tee $D/phases.txt ;;
    trace) python $D/compile_trace.py maml-mini-imagenet-5w1s 30 2>&1 \
             | grep -v "^WARNING\|^E0000\|^I0000" | tee $D/compile_trace.txt ;;
    threads) for r in 1 2 3; do for m in seq par; do
               python $D/threads.py maml-omniglot-5w1s $m 2>&1 | grep both; done; done \
             | tee $D/threads.txt ;;
    sigint) python $D/sigint.py 0.1 0.2 0.3 0.5 0.7 0.9 1.2 1.5 2 3 4 6 | tee -a $D/sigint.txt ;;
  esac
done
