"""One-off: a Perfetto trace of XLA's compile of a preset's training loop; totals by event
name (top level and nested), to see where XLA:CPU's time goes."""
import collections, gzip, json, sys, tempfile, time
from pathlib import Path
import jax
from fometa.run import resolve, setup
from fometa.run.training import Chunks, initial_state
from fometa.sharding import task_mesh
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from preset_speed import synthetic_problem

preset = sys.argv[1]
cfg = resolve(preset=preset)
run = setup(cfg, synthetic_problem(cfg, None))
state = initial_state(cfg, run)
chunks = Chunks(cfg, run, run.train_key, task_mesh())
lowered = chunks._runner.lower(state, chunks._scalar(0), chunks._scalar(1))
d = tempfile.mkdtemp()
t0 = time.perf_counter()
with jax.profiler.trace(d, create_perfetto_trace=True):
    lowered.compile()
print(f"{preset}: xla {time.perf_counter() - t0:.2f} s (under the profiler)")
[path] = list(Path(d).rglob("*.trace.json.gz"))
events = json.load(gzip.open(path))
events = events["traceEvents"] if isinstance(events, dict) else events
tot = collections.Counter(); cnt = collections.Counter()
for e in events:
    if e.get("ph") == "X":
        name = e["name"]
        key = name.split(":")[0] if len(name) > 60 else name
        tot[key] += e["dur"] / 1e6; cnt[key] += 1
for name, s in tot.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 40):
    print(f"{s:8.2f} s {cnt[name]:6d}  {name[:110]}")
