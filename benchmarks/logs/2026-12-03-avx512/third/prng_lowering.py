"""One-off: XLA's compile of a preset's training loop with threefry's CPU lowering as jax
0.10 has it (a rolled `fori_loop` of 5 rounds per random-number call: a while loop each)
or unrolled (jax's lowering for the other backends: straight-line code, one fusion).

    python prng_lowering.py rolled|unrolled PRESET

The unrolled variant re-registers the lowering in this process only (a global change that
fometa could not make for its users; measured to see whether the task sampler's ~20 loops
are worth avoiding). One JSON line: trace+lower and XLA seconds, fusions, while loops.
"""
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
variant, preset = sys.argv[1], sys.argv[2]
if variant == "unrolled":
    from jax._src.random import threefry2x32 as threefry  # noqa: E402
    from jax.interpreters import mlir  # noqa: E402
    mlir.register_lowering(threefry.threefry2x32_p, threefry._threefry2x32_lowering_rule,
                           platform="cpu")
from fometa.run import resolve, setup  # noqa: E402
from fometa.run.training import Chunks, initial_state  # noqa: E402
from fometa.sharding import task_mesh  # noqa: E402
from preset_speed import synthetic_problem  # noqa: E402

cfg = resolve(preset=preset)
run = setup(cfg, synthetic_problem(cfg, None))
state = initial_state(cfg, run)
chunks = Chunks(cfg, run, run.train_key, task_mesh())
t0 = time.perf_counter()
lowered = chunks._runner.lower(state, chunks._scalar(0), chunks._scalar(1))
t1 = time.perf_counter()
text = lowered.compile().as_text()
t2 = time.perf_counter()
print(json.dumps({"preset": preset, "threefry": variant, "trace_lower_s": round(t1 - t0, 2),
                  "xla_s": round(t2 - t1, 2),
                  "fusions": len(re.findall(r"^\s+%\S+ = \S+ fusion\(", text, re.M)),
                  "while_loops": len(re.findall(r" while\(", text))}), flush=True)
