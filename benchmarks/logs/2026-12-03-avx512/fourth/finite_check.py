"""One-off: the training loop's finiteness check, one check per leaf (before) against one
check over all leaves raveled into one vector (`fometa.learner.all_finite`); each preset's
training loop compiled with both, alternated, in one process; fusions counted in the
compiled program.

    python finite_check.py ROUNDS PRESET ...
"""
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import fometa.learner as fl  # noqa: E402
from fometa.run import resolve, setup  # noqa: E402
from fometa.run.training import Chunks, initial_state  # noqa: E402
from fometa.sharding import task_mesh  # noqa: E402
from preset_speed import synthetic_problem  # noqa: E402

new = fl.all_finite  # run before it landed, with per_leaf as fometa.learner's own


def per_leaf(tree):
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
                              if jnp.issubdtype(x.dtype, jnp.inexact)]))


rounds, presets = int(sys.argv[1]), sys.argv[2:]
for preset in presets:
    cfg = resolve(preset=preset)
    run = setup(cfg, synthetic_problem(cfg, None))
    state = initial_state(cfg, run)
    for r in range(rounds):
        for name, fn in (("per leaf", per_leaf), ("one vector", new)):
            fl.all_finite = fn
            chunks = Chunks(cfg, run, run.train_key, task_mesh())
            t0 = time.perf_counter()
            lowered = chunks._runner.lower(state, chunks._scalar(0), chunks._scalar(1))
            t1 = time.perf_counter()
            text = lowered.compile().as_text()
            t2 = time.perf_counter()
            fusions = len(re.findall(r"^\s+%\S+ = \S+ fusion\(", text, re.M))
            print(f"{preset:28s} {name:10s} round {r}: trace+lower {t1 - t0:5.2f} s, "
                  f"XLA {t2 - t1:5.2f} s, {fusions} fusions", flush=True)
fl.all_finite = new
