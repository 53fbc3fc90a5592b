#!/usr/bin/env bash
# The on-disk cache of compiled programs (`fometa train --compile-cache`, on by default).
# "presets": every preset's training loop and evaluation compiled by one process into an
# empty cache (cold), then by a second process that loads them (warm). "seeds": `fometa
# train --preset maml-omniglot-5w1s` (a short run on the real Omniglot in FOMETA_DATA_DIR;
# skipped without it) with seed 1, then seed 2, then seed 2 again, into one empty cache,
# with JAX's own log of what it loaded. Nothing else running.
#   OUT=benchmarks/logs/DATE-MACHINE/compile_cache [PARTS="presets seeds"] bash benchmarks/compile_cache.sh
# Writes cold.json, warm.json (compile_times.py's JSON lists), cache_size.txt, table.md;
# seeds.txt.
set -eu
OUT=${OUT:-benchmarks/logs/compile_cache}
PARTS=${PARTS:-presets seeds}
mkdir -p "$OUT"
CACHE=$(mktemp -d)
SEEDS=$(mktemp -d)
trap 'rm -rf "$CACHE" "$SEEDS"' EXIT
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
unset JAX_COMPILATION_CACHE_DIR JAX_COMPILATION_CACHE_MAX_SIZE
if [[ " $PARTS " == *" presets "* ]]; then
  for pass in cold warm; do
    python benchmarks/compile_times.py --compile-cache "$CACHE" --json | tail -1 > "$OUT/$pass.json"
  done
  du -sh "$CACHE" | cut -f1 > "$OUT/cache_size.txt"
  python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
cold, warm = (json.load(open(f"{out}/{p}.json")) for p in ("cold", "warm"))
lines = ["| preset | training, cold | training, warm | evaluation, cold | evaluation, warm |",
         "| --- | --- | --- | --- | --- |"]
for c, w in zip(cold, warm):
    assert c["preset"] == w["preset"]
    lines.append(f"| {c['preset']} | {c['train_compile_s']:.1f} | {w['train_compile_s']:.1f} "
                 f"| {c['eval_compile_s']:.1f} | {w['eval_compile_s']:.1f} |")
worst = max(max(w["train_compile_s"], w["eval_compile_s"]) for w in warm)
lines.append(f"\nwarm, the slowest program: {worst:.1f} s; cache size: "
             f"{open(f'{out}/cache_size.txt').read().strip()}")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
fi
if [[ " $PARTS " == *" seeds "* && -z "${FOMETA_DATA_DIR:-}" ]]; then
  echo "compile_cache.sh: FOMETA_DATA_DIR is not set; the seeds part is skipped" >&2
elif [[ " $PARTS " == *" seeds "* ]]; then
  for seed in 1 2 2; do
    rm -rf "$SEEDS/run"
    JAX_DEBUG_LOG_MODULES=jax._src.compiler fometa train --preset maml-omniglot-5w1s \
      --meta-iters 20 --eval-tasks 20 --seed $seed --run-dir "$SEEDS/run" \
      --compile-cache "$SEEDS/cache" --no-progress --no-plots > /dev/null 2> "$SEEDS/log"
    python - "$SEEDS/run/results.json" $seed "$SEEDS/log" <<'PY'
import json, re, sys
r = json.load(open(sys.argv[1]))
loaded = sorted(set(re.findall(r"cache hit for '(jit_\w+_chunk)'", open(sys.argv[3]).read())))
print("seed", sys.argv[2], "compile_seconds", round(r["compile_seconds"], 2),
      "wall_seconds", round(r["wall_seconds"], 2), "loaded", ",".join(loaded) or "nothing")
PY
  done > "$OUT/seeds.txt"
  cat "$OUT/seeds.txt"
fi
