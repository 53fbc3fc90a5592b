"""One-off: a preset's training loop compiled, its fusions counted by the first N parts of
their op_name (where in the JAX program each comes from). python fusion_sources.py PRESET N
(from the repository root)."""
import sys, re, collections, time
sys.path.insert(0, "benchmarks")
from fometa.run import resolve, setup
from fometa.run.training import Chunks, initial_state
from fometa.sharding import task_mesh
from preset_speed import synthetic_problem
cfg = resolve(preset=sys.argv[1])
run = setup(cfg, synthetic_problem(cfg, None))
state = initial_state(cfg, run)
chunks = Chunks(cfg, run, run.train_key, task_mesh())
r = chunks._runner
lowered = r.lower(state, chunks._scalar(0), chunks._scalar(1))
t0 = time.perf_counter(); c = lowered.compile(); print("compile", time.perf_counter() - t0)
txt = c.as_text()
open("/tmp/hlo_%s.txt" % sys.argv[1], "w").write(txt)
# each fusion instruction line in non-fused computations: "%name = ... fusion(...), kind=..., calls=..., metadata={op_name=...}"
cnt = collections.Counter(); tot = 0
for line in txt.splitlines():
    if " fusion(" in line and "calls=" in line:
        tot += 1
        m = re.search(r'op_name="([^"]*)"', line)
        name = m.group(1) if m else "?"
        parts = name.split("/")
        key = "/".join(p for p in parts[:int(sys.argv[2])])
        cnt[key] += 1
print("fusions", tot)
for k, v in cnt.most_common(40): print(v, k)
