"""One-off: the compile of a preset's task sampler alone (`fometa.run.loop.task_batch` of a
meta-batch, as the training loop draws it), twice. python sampler_compile.py PRESET (from
the repository root)."""
import sys, time
sys.path.insert(0, "benchmarks")
import jax
from fometa.run import resolve, setup
from fometa.run.loop import task_batch
from preset_speed import synthetic_problem
cfg = resolve(preset=sys.argv[1])
run = setup(cfg, synthetic_problem(cfg, None))
p = run.problem
def f(key, data):
    prob = p.with_data(data) if p.with_data else p
    return task_batch(prob, key, cfg.meta_batch)
for i in range(2):
    t0 = time.perf_counter(); lo = jax.jit(f).lower(jax.random.key(i), p.data); t1 = time.perf_counter()
    c = lo.compile(); t2 = time.perf_counter()
    n = sum(1 for l in c.as_text().splitlines() if " fusion(" in l and "calls=" in l)
    print(f"trace+lower {t1-t0:.2f} s  compile {t2-t1:.2f} s  fusions {n}")
    jax.clear_caches()
