"""One-off: a preset's training loop compile split into tracing, lowering and XLA, with a
cProfile of tracing+lowering (top functions by cumulative and own time)."""
import cProfile, pstats, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from built import built

preset = sys.argv[1]
profile = len(sys.argv) > 2 and sys.argv[2] == "profile"
cfg, run, state, mesh, chunks, args = built(preset)
runner = chunks._runner
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
