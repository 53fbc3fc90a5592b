"""One-off: a SHA-256 of every leaf of `initial_state` for a preset (random images of its
dataset's shapes), one JSON line; run once with c78f4d7 on PYTHONPATH and once without, to
compare the initial states bit for bit. python bits.py PRESET [--inner-lr-low X]"""
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import jax  # noqa: E402
import numpy as np  # noqa: E402
import fometa  # noqa: E402
from fometa.run import resolve  # noqa: E402
from fometa.run.training import initial_state, setup  # noqa: E402
from preset_speed import synthetic_problem  # noqa: E402

over = {"inner_lr_low": float(sys.argv[3])} if len(sys.argv) > 3 else {}
cfg = resolve(preset=sys.argv[1], **over)
run = setup(cfg, synthetic_problem(cfg, None))
leaves = jax.tree_util.tree_leaves(initial_state(cfg, run))
digest = hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in leaves)).hexdigest()
print(json.dumps({"preset": sys.argv[1], **over, "code": str(Path(fometa.__file__).parents[1]),
                  "leaves": len(leaves), "sha256": digest[:16]}), flush=True)
