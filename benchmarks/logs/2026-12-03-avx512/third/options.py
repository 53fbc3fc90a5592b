"""One-off: a preset's training loop compiled with XLA:CPU compiler options.

    python options.py PRESET ITERS ROUNDS 'base' 'name=value' 'name=value;name=value' ...

Lowers the loop once, compiles each variant (timed), checks a chunk's parameters bit for
bit against the first variant's, then times chunks of ITERS meta-iterations, variants
alternated, ROUNDS times. One JSON line per variant.
"""
import json, statistics, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import jax, numpy as np
from fometa.run import resolve, setup
from fometa.run.training import Chunks, initial_state
from fometa.sharding import task_mesh
from preset_speed import synthetic_problem

preset, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
variants = sys.argv[4:]
def opts(v):
    if v == "base": return {}
    out = {}
    for kv in v.split(";"):
        k, val = kv.split("=")
        out[k] = {"true": True, "false": False}.get(val, int(val) if val.isdigit() else val)
    return out
cfg = resolve(preset=preset)
run = setup(cfg, synthetic_problem(cfg, None))
state = initial_state(cfg, run)
chunks = Chunks(cfg, run, run.train_key, task_mesh())
runner = chunks._runner
lowered = runner.lower(state, chunks._scalar(0), chunks._scalar(1))
compiled, seconds = {}, {}
for v in variants:
    t0 = time.perf_counter()
    compiled[v] = lowered.compile(compiler_options=opts(v))
    seconds[v] = time.perf_counter() - t0
def chunk(v):
    return jax.block_until_ready(compiled[v](state, chunks._scalar(0), chunks._scalar(n), runner.data))
first = jax.tree_util.tree_leaves(chunk(variants[0])[0].params)
same = {v: all(np.array_equal(a, b) for a, b in zip(first, jax.tree_util.tree_leaves(chunk(v)[0].params))) for v in variants}
times = {v: [] for v in variants}
for _ in range(rounds):
    for v in variants:
        t0 = time.perf_counter(); chunk(v); times[v].append((time.perf_counter() - t0) / n)
for v in variants:
    print(json.dumps({"preset": preset, "options": v, "compile_s": round(seconds[v], 2),
                      "ms_per_iter": round(1000 * statistics.median(times[v]), 1),
                      "each_ms": [round(1000 * t, 1) for t in times[v]],
                      "params_equal_to_first": same[v]}), flush=True)
