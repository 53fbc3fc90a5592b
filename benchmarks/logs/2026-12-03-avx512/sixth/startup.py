"""One-off: the seconds `fometa.run.training.initial_state` takes in a fresh process (the
network's initialisation and the learner's state; no on-disk compilation cache), for a
preset on random images of its dataset's shapes. Which fometa is imported (PYTHONPATH)
decides old or new code.

    python startup.py PRESET
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import jax  # noqa: E402
import fometa  # noqa: E402
from fometa.run import resolve  # noqa: E402
from fometa.run.training import initial_state, setup  # noqa: E402
from preset_speed import synthetic_problem  # noqa: E402

cfg = resolve(preset=sys.argv[1])
run = setup(cfg, synthetic_problem(cfg, None))
t0 = time.perf_counter()
state = jax.block_until_ready(initial_state(cfg, run))
seconds = time.perf_counter() - t0
print(json.dumps({"preset": cfg.preset if hasattr(cfg, "preset") else sys.argv[1],
                  "code": str(Path(fometa.__file__).parents[1]),
                  "initial_state_s": round(seconds, 2)}), flush=True)
