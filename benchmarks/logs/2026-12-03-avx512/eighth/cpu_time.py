"""One-off: wall and process CPU time of XLA's compile of a preset's training loop (how many
of the 2 cores XLA keeps busy)."""
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "seventh"))
from built import built

for preset in sys.argv[1:]:
    cfg, run, state, mesh, chunks, args = built(preset)
    lowered = chunks._runner.lower(*args)
    w, c = time.perf_counter(), time.process_time()
    lowered.compile()
    w, c = time.perf_counter() - w, time.process_time() - c
    print(f"{preset}: xla wall {w:.2f} s, cpu {c:.2f} s, cores busy {c / w:.2f}", flush=True)
