"""One-off: a preset's training loop lowered once and compiled with each compiler_options dict of argv[2] (JSON list); compile seconds and ms per meta-iteration. python compile_flags.py PRESET JSON [ITERS]"""
import sys, time, json
sys.path.insert(0, "benchmarks")  # run from the repository root
import jax
from fometa.run import resolve, setup
from fometa.run.training import Chunks, initial_state
from fometa.sharding import task_mesh
from preset_speed import synthetic_problem

preset = sys.argv[1]
opts_list = json.loads(sys.argv[2])
iters = int(sys.argv[3]) if len(sys.argv) > 3 else 10
cfg = resolve(preset=preset)
run = setup(cfg, synthetic_problem(cfg, None))
state = initial_state(cfg, run)
mesh = task_mesh()
chunks = Chunks(cfg, run, run.train_key, mesh)
r = chunks._runner
t0 = time.perf_counter()
lowered = r.lower(state, chunks._scalar(0), chunks._scalar(1))
print("lower", round(time.perf_counter() - t0, 1), flush=True)
for opts in opts_list:
    t0 = time.perf_counter()
    try:
        c = lowered.compile(compiler_options=opts)
    except Exception as e:
        print(opts, "ERROR", str(e)[:200]); continue
    ct = time.perf_counter() - t0
    out = c(state, chunks._scalar(0), chunks._scalar(2), r.data); jax.block_until_ready(out)
    t0 = time.perf_counter()
    out = c(state, chunks._scalar(0), chunks._scalar(iters), r.data); jax.block_until_ready(out)
    rt = (time.perf_counter() - t0) / iters * 1e3
    print(f"{json.dumps(opts):60s} compile {ct:5.1f} s  step {rt:7.1f} ms", flush=True)
