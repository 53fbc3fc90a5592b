"""One-off: a preset's training loop compile split into tracing, lowering and XLA, with a
cProfile of tracing+lowering (top functions by cumulative and own time)."""
import cProfile, pstats, sys, time
from pathlib import Path
from fometa.run import resolve, setup
from fometa.run.training import Chunks, initial_state
from fometa.sharding import task_mesh
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from preset_speed import synthetic_problem

preset = sys.argv[1]
profile = len(sys.argv) > 2 and sys.argv[2] == "profile"
cfg = resolve(preset=preset)
run = setup(cfg, synthetic_problem(cfg, None))
state = initial_state(cfg, run)
chunks = Chunks(cfg, run, run.train_key, task_mesh())
runner = chunks._runner
args = (state, chunks._scalar(0), chunks._scalar(1))
prof = cProfile.Profile() if profile else None
t0 = time.perf_counter()
if prof: prof.enable()
traced = runner.trace(*args)
t1 = time.perf_counter()
lowered = traced.lower()
if prof: prof.disable()
t2 = time.perf_counter()
if not profile:
    compiled = lowered.compile()
t3 = time.perf_counter()
print(f"{preset}: trace {t1-t0:.2f} s, lower {t2-t1:.2f} s, xla {t3-t2:.2f} s, "
      f"jaxpr eqns {len(traced.jaxpr.eqns)}, stablehlo chars {len(lowered.as_text())}")
if prof:
    st = pstats.Stats(prof)
    st.sort_stats("cumulative").print_stats(45)
    st.sort_stats("tottime").print_stats(25)
