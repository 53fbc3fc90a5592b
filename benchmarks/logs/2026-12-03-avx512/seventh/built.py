"""One-off helper of this folder's scripts: a preset's run as `fometa train` builds it, on
random images of the dataset's shapes (benchmarks/preset_speed.py's synthetic_problem)."""
import sys
from pathlib import Path
from fometa.run import resolve, setup
from fometa.run.training import Chunks, initial_state
from fometa.sharding import task_mesh
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from preset_speed import synthetic_problem


def built(preset):
    """(cfg, run, initial state, mesh, Chunks: the training loop, not yet compiled), and the
    arguments of its first chunk."""
    cfg = resolve(preset=preset)
    run = setup(cfg, synthetic_problem(cfg, None))
    state = initial_state(cfg, run)
    mesh = task_mesh()
    chunks = Chunks(cfg, run, run.train_key, mesh)
    return cfg, run, state, mesh, chunks, (state, chunks._scalar(0), chunks._scalar(1))
