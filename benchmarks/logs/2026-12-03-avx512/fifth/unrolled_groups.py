"""One-off: the meta-batch's task groups as independent computations in one program (a
Python loop of vmaps, results concatenated) instead of `jax.lax.map`'s loop, so that XLA:CPU's
thunk executor may run two groups at once; speed.py's step, alternated in one process
(6 rounds of 5 meta-steps) with `jax.lax.map` one at a time and the vmap of every task.

    python unrolled_groups.py [maml|fomaml|reptile] [remat|plain] [group sizes, e.g. 1,3]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import speed  # noqa: E402
from alternate import print_medians  # noqa: E402

alg = sys.argv[1] if len(sys.argv) > 1 else "maml"
remat = (sys.argv[2] if len(sys.argv) > 2 else "remat") == "remat"
sizes = [int(s) for s in (sys.argv[3] if len(sys.argv) > 3 else "1,3").split(",")]
lax_map = jax.lax.map


def unrolled_map(f, xs, batch_size=None):
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    outs = []
    batch_size = batch_size or 1  # from ec80dcb, fometa.learner passes None for 1
    for start in range(0, n, batch_size):
        group = jax.tree_util.tree_map(lambda x: x[start:start + batch_size], xs)
        outs.append(jax.vmap(f)(group))
    return jax.tree_util.tree_map(lambda *o: jnp.concatenate(o), *outs)


data = speed.make_data("omniglot-5w1s")
steps = {}
steps["vmap, all 5"] = speed.fometa_step("omniglot-5w1s", alg, data, 1, "auto", remat)
steps["lax.map, 1"] = speed.fometa_step("omniglot-5w1s", alg, data, 1, "auto", remat,
                                        tasks_at_once=1)
jax.lax.map = unrolled_map
for k in sizes:
    steps[f"unrolled, {k}"] = speed.fometa_step("omniglot-5w1s", alg, data, 1, "auto", remat,
                                                tasks_at_once=k)
jax.lax.map = lax_map
print(alg, "remat" if remat else "plain",
      "compile", {name: round(s[1], 1) for name, s in steps.items()})
print_medians(steps)
