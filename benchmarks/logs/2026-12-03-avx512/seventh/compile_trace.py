"""One-off: a Perfetto trace of XLA's compile of a preset's training loop; totals by event
name (top level and nested), to see where XLA:CPU's time goes."""
import collections, gzip, json, sys, tempfile, time
from pathlib import Path
import jax
sys.path.insert(0, str(Path(__file__).resolve().parent))
from built import built

preset = sys.argv[1]
cfg, run, state, mesh, chunks, args = built(preset)
lowered = chunks._runner.lower(*args)
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
