"""One-off: can one program overlap two halves of a task batch on XLA:CPU, as two devices do?

    python task_groups.py TASKS [WORKLOAD] [ROUNDS]

Five inner SGD steps of the speed.py workload's network on each task's support (the
adaptation that every algorithm's meta-step starts with), three ways, alternated in blocks
of 5 calls: `single` vmaps all tasks in one scan (fometa's form); `separate` vmaps each half
of the tasks in a scan of its own (two independent while loops); `joint` runs both halves'
steps, each vmapped, in one scan body. Prints the median ms per call and, from a profile
of 3 calls, for how long 0, 1 and 2+ operations ran at once (ms per call).
"""
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import fometa  # noqa: E402
import profile_ops  # noqa: E402
import speed  # noqa: E402
from fometa.tasks.classification import cross_entropy  # noqa: E402

T = int(sys.argv[1])
WORKLOAD = sys.argv[2] if len(sys.argv) > 2 else "omniglot-5w1s"
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 6
data = speed.make_data(WORKLOAD, tasks=T)
model = (fometa.OmniglotCNN if "omniglot" in WORKLOAD else fometa.MiniImageNetCNN)(5)
loss_fn = functools.partial(cross_entropy, model.apply)
support = {"x": jnp.asarray(data["sx"]), "y": jnp.asarray(data["sy"])}  # [T, steps, ...]
params = model.init(jax.random.PRNGKey(0), support["x"][0, 0])
H = T // 2


def step(p, batch):
    g = jax.grad(loss_fn)(p, batch)
    return jax.tree_util.tree_map(lambda a, c: a - 0.1 * c, p, g)


def adapt(params, sup):  # [tasks, steps, ...] -> adapted params [tasks, ...]
    return jax.vmap(lambda s: jax.lax.scan(lambda p, b: (step(p, b), None), params, s)[0])(sup)


def halves(sup):
    return (jax.tree_util.tree_map(lambda x: x[:H], sup),
            jax.tree_util.tree_map(lambda x: x[H:], sup))


def cat(a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x, y]), a, b)


def separate(params, sup):
    a, b = halves(sup)
    return cat(adapt(params, a), adapt(params, b))


def joint(params, sup):
    a, b = (jax.tree_util.tree_map(lambda x: jnp.swapaxes(x, 0, 1), s) for s in halves(sup))
    pa, pb = (jax.tree_util.tree_map(lambda x, n=n: jnp.broadcast_to(x, (n,) + x.shape), params)
              for n in (H, T - H))

    def body(carry, batches):
        (pa, pb), (ba, bb) = carry, batches
        return (jax.vmap(step)(pa, ba), jax.vmap(step)(pb, bb)), None

    (pa, pb), _ = jax.lax.scan(body, (pa, pb), (a, b))
    return cat(pa, pb)


fns = {"single": jax.jit(adapt), "separate": jax.jit(separate), "joint": jax.jit(joint)}
outs = {k: f(params, support) for k, f in fns.items()}
for k in ("separate", "joint"):
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree_util.tree_leaves(outs["single"]), jax.tree_util.tree_leaves(outs[k])))
    print(f"{k}: largest difference from single {diff:.2e}")
times = {k: [] for k in fns}
for _ in range(ROUNDS):
    for k, f in fns.items():
        jax.block_until_ready(f(params, support))
        for _ in range(5):
            t0 = time.perf_counter()
            jax.block_until_ready(f(params, support))
            times[k].append(time.perf_counter() - t0)
for k, f in fns.items():
    trace = tempfile.mkdtemp()
    with jax.profiler.trace(trace):
        for _ in range(3):
            jax.block_until_ready(f(params, support))
    events = [e for e in profile_ops.op_events(Path(trace)) if profile_ops.is_op(e[0])]
    at_once = {n: round(v / 3000, 1) for n, v in profile_ops.running(events).items()}
    print(f"{WORKLOAD} {T} tasks {k:8s} {1000 * statistics.median(times[k]):8.2f} ms; "
          f"ops at once (ms per call, profiled) {at_once}", flush=True)
