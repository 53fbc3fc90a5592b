"""One-off: trace+lower, XLA wall and CPU time of a preset's training-loop compile under setting overrides.
python variants.py PRESET [key=value ...] (values parsed as JSON, else strings); one process
per variant, so nothing is reused between them."""
import json, sys, time
from pathlib import Path
from fometa.run import resolve, setup
from fometa.run.training import Chunks, initial_state
from fometa.sharding import task_mesh
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from preset_speed import synthetic_problem


def value(v):
    try:
        return json.loads(v)
    except ValueError:
        return v


preset = sys.argv[1]
over = dict(a.split("=", 1) for a in sys.argv[2:])
cfg = resolve(preset=preset, **{k: value(v) for k, v in over.items()})
run = setup(cfg, synthetic_problem(cfg, None))
state = initial_state(cfg, run)
chunks = Chunks(cfg, run, run.train_key, task_mesh())
args = (state, chunks._scalar(0), chunks._scalar(1))
t0 = time.perf_counter()
lowered = chunks._runner.lower(*args)
t1 = time.perf_counter()
w, c = time.perf_counter(), time.process_time()
compiled = lowered.compile()
w, c = time.perf_counter() - w, time.process_time() - c
n = sum(1 for l in compiled.as_text().splitlines() if " fusion(" in l and "calls=" in l)
print(f"{preset} {over}: trace+lower {t1 - t0:.2f} s, xla wall {w:.2f} s, cpu {c:.2f} s, fusions {n}", flush=True)
