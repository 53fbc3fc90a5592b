"""One-off: one task at a time as `jax.lax.map(f, tasks)` (each task unbatched) instead of
`jax.lax.map(f, tasks, batch_size=1)` (a vmap of one task: batch axes of size 1 in every
product), each forced whichever path fometa.learner takes (ec80dcb made the unbatched one
its own; the runs of plain_map.txt and plain_map_more.txt came before it, those of
plain_map_miniimagenet.txt after this script forced both); speed.py's step, alternated in
one process (6 rounds of 5 meta-steps) with the other and the vmap of all five.

    python plain_map.py [maml|fomaml|reptile] [remat|plain] [omniglot-5w1s|miniimagenet-5w1s]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import jax  # noqa: E402
import speed  # noqa: E402
from alternate import print_medians  # noqa: E402

alg = sys.argv[1] if len(sys.argv) > 1 else "maml"
remat = (sys.argv[2] if len(sys.argv) > 2 else "remat") == "remat"
workload = sys.argv[3] if len(sys.argv) > 3 else "omniglot-5w1s"
lax_map = jax.lax.map


def plain_map(f, xs, batch_size=None):  # before ec80dcb's learner: the unbatched path
    return lax_map(f, xs) if batch_size == 1 else lax_map(f, xs, batch_size=batch_size)


def batch_of_one(f, xs, batch_size=None):  # from ec80dcb's learner on: the old path
    return lax_map(f, xs, batch_size=1 if batch_size is None else batch_size)


data = speed.make_data(workload)
# fometa.learner's lax.map call is the step's only one: patched, it takes the path named.
steps = {"vmap, all 5": speed.fometa_step(workload, alg, data, 1, "auto", remat)}
jax.lax.map = batch_of_one
steps["lax.map, batch_size=1"] = speed.fometa_step(workload, alg, data, 1, "auto", remat,
                                                   tasks_at_once=1)
jax.lax.map = plain_map
steps["lax.map, unbatched"] = speed.fometa_step(workload, alg, data, 1, "auto", remat,
                                                tasks_at_once=1)
jax.lax.map = lax_map
print(workload, alg, "remat" if remat else "plain",
      "compile", {name: round(s[1], 1) for name, s in steps.items()})
print_medians(steps)
