"""One-off: what the eighth session's start-up checks cost a run: `check_shapes` (the problem's
functions from their shapes) and `data_digest` (config.json's "data"), per preset, on random
images of the dataset's shapes (Mini-ImageNet at its full 600 images per class)."""
import sys, time
from pathlib import Path
import jax
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from preset_speed import synthetic_problem
from fometa.run import resolve
from fometa.run.problems import check_shapes
from fometa.run.training import data_digest

for preset in sys.argv[1:]:
    cfg = resolve(preset=preset)
    problem = synthetic_problem(cfg, 600 if "mini" in preset else None)
    t0 = time.perf_counter()
    check_shapes(problem, jax.random.key(0), cfg.inner_iters, cfg.eval_inner_iters)
    t1 = time.perf_counter()
    digest = data_digest(problem.data)
    t2 = time.perf_counter()
    size = sum(x.nbytes for x in jax.tree_util.tree_leaves(problem.data))
    print(f"{preset}: check_shapes {t1 - t0:.2f} s, data_digest {t2 - t1:.3f} s "
          f"({size / 2**20:.0f} MiB, {digest})", flush=True)
