"""One-off: a preset's training loop compiled at several `xla_backend_optimization_level`s.

    python opt_level.py PRESET ITERS ROUNDS LEVELS   (LEVELS e.g. 3,2,1; 3 is XLA's default)

Lowers the loop once (random images of the dataset's shapes, as compile_times.py), compiles
it at each level (timed), runs a chunk of ITERS meta-iterations from the same state at each
level (are the parameters bit for bit those of the first level?), then times chunks of ITERS
iterations, levels alternated, ROUNDS times. One JSON line per level.
"""
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import jax  # noqa: E402
import numpy as np  # noqa: E402

from fometa.run import resolve, setup  # noqa: E402
from fometa.run.training import Chunks, initial_state  # noqa: E402
from fometa.sharding import task_mesh  # noqa: E402
from preset_speed import synthetic_problem  # noqa: E402

preset, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
levels = [int(x) for x in sys.argv[4].split(",")]
cfg = resolve(preset=preset)
run = setup(cfg, synthetic_problem(cfg, None))
state = initial_state(cfg, run)
chunks = Chunks(cfg, run, run.train_key, task_mesh())
runner = chunks._runner
lowered = runner.lower(state, chunks._scalar(0), chunks._scalar(1))
compiled, seconds = {}, {}
for level in levels:
    t0 = time.perf_counter()
    compiled[level] = lowered.compile(compiler_options={"xla_backend_optimization_level": level})
    seconds[level] = time.perf_counter() - t0


def chunk(level):
    return jax.block_until_ready(
        compiled[level](state, chunks._scalar(0), chunks._scalar(n), runner.data))


first = jax.tree_util.tree_leaves(chunk(levels[0])[0].params)
same = {level: all(np.array_equal(a, b) for a, b in zip(
    first, jax.tree_util.tree_leaves(chunk(level)[0].params))) for level in levels}
times = {level: [] for level in levels}
for _ in range(rounds):
    for level in levels:
        t0 = time.perf_counter()
        chunk(level)
        times[level].append((time.perf_counter() - t0) / n)
for level in levels:
    print(json.dumps({"preset": preset, "level": level, "compile_s": round(seconds[level], 2),
                      "ms_per_iter": round(1000 * statistics.median(times[level]), 1),
                      "each_ms": [round(1000 * t, 1) for t in times[level]],
                      "params_equal_to_first_level": same[level]}), flush=True)
