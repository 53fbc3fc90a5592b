#!/usr/bin/env bash
# Issue 13's rows: each successor's Omniglot preset trained for about ${MINUTES:-60} minutes
# of this machine, evaluated ${EVALS:-2} times (halfway and at the end) on
# ${EVAL_TASKS:-1000} tasks in both modes, written to results/ by benchmarks/reproduce.py as
# PRESET+Nits rows. A preset's meta-iterations N are sized once from a timed training chunk
# (rounded down to hundreds, at least 100) and kept in RUNS/PRESET.iters, so that running the
# script again resumes each row from its run directory. Run from the repository root with
# FOMETA_DATA_DIR set, in the background (nohup). ROWS overrides the list; RUNS and OUT the
# folders of the run directories and of the result files (a smoke test writes elsewhere).
set -eu
MINUTES=${MINUTES:-60}
EVAL_TASKS=${EVAL_TASKS:-1000}
EVALS=${EVALS:-2}  # evaluations per row, evenly spaced (2: halfway and at the end)
ROWS=${ROWS:-"meta-sgd-omniglot-5w1s anil-omniglot-20w1s mamlpp-omniglot-20w1s imaml-omniglot-5w1s"}
RUNS=${RUNS:-runs/reproduce}
OUT=${OUT:-results}
export PYTHONUNBUFFERED=1
mkdir -p "$RUNS"
for preset in $ROWS; do
  sized=$RUNS/$preset.iters
  if [ ! -s "$sized" ]; then
    ms=$(python3 benchmarks/preset_speed.py --preset "$preset" --iters 20 --repeats 2 \
         | tail -1 | python3 -c "import json, sys; print(json.load(sys.stdin)[0]['ms_per_meta_iter'])")
    python3 -c "print(max(100, int($MINUTES * 60e3 / $ms) // 100 * 100))" > "$sized"
    echo "$preset: $ms ms per meta-iteration -> $(cat "$sized") meta-iterations"
  fi
  iters=$(cat "$sized")
  python3 benchmarks/reproduce.py --preset "$preset" --variant "${iters}its" \
    --runs "$RUNS" --out "$OUT" -- \
    --meta-iters "$iters" --eval-tasks "$EVAL_TASKS" --eval-every "$((iters / EVALS))"
done
