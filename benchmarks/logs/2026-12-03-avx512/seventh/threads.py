"""One-off: a preset's training loop and evaluation compiled one after the other (seq) or
in two threads (par), in a fresh process, no on-disk cache; wall seconds of the two.
python threads.py PRESET seq|par (from the repository root)."""
import sys, threading, time
from pathlib import Path
from fometa.run import resolve, setup
from fometa.run.training import Chunks, evaluation, initial_state
from fometa.sharding import task_mesh
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from preset_speed import synthetic_problem

preset, mode = sys.argv[1], sys.argv[2]
cfg = resolve(preset=preset)
run = setup(cfg, synthetic_problem(cfg, None))
state = initial_state(cfg, run)
mesh = task_mesh()
chunks = Chunks(cfg, run, run.train_key, mesh)
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
