"""One-off: a preset's training loop and evaluation compiled one after the other (seq) or
in two threads (par), in a fresh process, no on-disk cache; wall seconds of the two.
python threads.py PRESET seq|par (from the repository root)."""
import sys, threading, time
from pathlib import Path
from fometa.run.training import evaluation
sys.path.insert(0, str(Path(__file__).resolve().parent))
from built import built

preset, mode = sys.argv[1], sys.argv[2]
cfg, run, state, mesh, chunks, _ = built(preset)
evaluate = evaluation(cfg, run, mesh)
times = {}
def train():
    t = time.perf_counter(); chunks.prepare(state); times["train"] = time.perf_counter() - t
def ev():
    t = time.perf_counter(); evaluate.prepare(state, cfg.eval_tasks); times["eval"] = time.perf_counter() - t
t0 = time.perf_counter()
if mode == "seq":
    train(); ev()
else:
    th = threading.Thread(target=ev); th.start(); train(); th.join()
print(f"{preset} {mode}: both {time.perf_counter() - t0:.2f} s (training {times['train']:.2f}, "
      f"evaluation {times['eval']:.2f})", flush=True)
