"""One-off: where the wall time of a `speed.py` meta-step goes, from a jax.profiler trace.

    python dot_wall.py WORKLOAD ALGORITHM REMAT(0|1)

Per meta-step (5 profiled): the span from the first operation's start to the last one's
end, the time with any operation running, the time with a YNNPACK dot (ynn_fusion) running,
the time with only other operations running, and those operations' time by kind.
"""
import sys, tempfile, collections
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import jax
import speed, profile_ops
wl, alg, remat = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
data = speed.make_data(wl)
call, _, _ = speed.fometa_step(wl, alg, data, unroll=1, conv="auto", remat=remat)
call(); call()
N = 5
with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp):
        for _ in range(N): call()
    ev = [e for e in profile_ops.op_events(Path(tmp)) if profile_ops.is_op(e[0]) and not e[0].startswith("end:")]
def union(iv):
    iv = sorted(iv); tot = 0; cur = None
    for s, e in iv:
        if cur is None or s > cur[1]:
            if cur: tot += cur[1] - cur[0]
            cur = [s, e]
        else: cur[1] = max(cur[1], e)
    if cur: tot += cur[1] - cur[0]
    return tot
allw = union([(t, t + d) for _, t, d in ev])
ynn = [(t, t + d) for n, t, d in ev if n.startswith("ynn")]
ynnw = union(ynn)
span = max(t + d for _, t, d in ev) - min(t for _, t, d in ev)
print(f"per step: span {span/N/1e3:.1f} ms, busy {allw/N/1e3:.1f}, ynn wall {ynnw/N/1e3:.1f}, non-ynn-only wall {(allw-ynnw)/N/1e3:.1f}")
# non-ynn op time by kind while no ynn running: approximate by op time of non-ynn kinds
kinds = collections.Counter()
for n, t, d in ev:
    if not n.startswith("ynn"): kinds[profile_ops.kind(n)] += d / N / 1e3
for k, v in kinds.most_common(12): print(f"  {k:30s} {v:6.1f} ms")

# The dots' floating-point work per meta-step, from the compiled program: each dot's
# 2 * output size * contracted size, times the trip counts of the loops it sits in.
import functools, re  # noqa: E401,E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import fometa  # noqa: E402
from fometa.tasks.classification import cross_entropy  # noqa: E402
net = speed.WORKLOADS[wl][1]
model = (fometa.OmniglotCNN if net == "omniglot" else fometa.MiniImageNetCNN)(speed.WAYS)
outer = fometa.reptile_outer(speed.REPTILE_EPS) if alg == "reptile" else optax.adam(speed.OUTER_LR)
learner = fometa.meta_learner(speed.VARIANTS[alg][0], functools.partial(cross_entropy, model.apply),
                              speed.INNER_LR, outer, remat=remat)
tasks = fometa.Task({"x": jnp.asarray(data["sx"]), "y": jnp.asarray(data["sy"])},
                    {"x": jnp.asarray(data["qx"]), "y": jnp.asarray(data["qy"])})
state = learner.init(model.init(jax.random.PRNGKey(0), tasks.query["x"][0]))
text = jax.jit(learner.step).lower(state, tasks).compile().as_text()
comps = {c.split("\n")[0].split(" ")[0].lstrip("%"): c for c in re.split(r"\n(?=\S)", text)}
entry = next(n for n, c in comps.items() if c.startswith("ENTRY"))
mult = {entry: 1}
changed = True
while changed:
    changed = False
    for name, c in list(comps.items()):
        if name not in mult:
            continue
        for m in re.finditer(r" while\(.*?body=%([\w.\-]+).*?known_trip_count\":\{\"n\":\"(\d+)\"", c):
            if m.group(1) not in mult:
                mult[m.group(1)] = mult[name] * int(m.group(2))
                changed = True


def dot_flops(c: str) -> float:
    shapes = {m.group(1): m.group(2) for m in re.finditer(r"%([\w.\-]+) = f32\[([\d,]*)\]", c)}
    total = 0.0
    for m in re.finditer(r"= f32\[([\d,]*)\]\S* dot\(%([\w.\-]+), %([\w.\-]+)\), (.*?lhs_contracting_dims=\{([\d,]*)\})", c):
        lhs = [int(x) for x in shapes[m.group(2)].split(",") if x]
        k = np.prod([lhs[int(i)] for i in m.group(5).split(",")])
        total += 2.0 * np.prod([int(x) for x in m.group(1).split(",") if x]) * k
    return total


flops = 0.0
for name, n in mult.items():
    for m in re.finditer(r"fusion\(.*?calls=%([\w.\-]+)", comps[name]):
        flops += n * dot_flops(comps[m.group(1)])
    flops += n * dot_flops(comps[name])
print(f"dots: {flops / 1e9:.2f} GFLOP per meta-step; over the dots' wall time "
      f"{flops / (ynnw / N / 1e6) / 1e9:.0f} GFLOP/s")
