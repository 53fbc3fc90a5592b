"""One-off: the compile-time floor of MAML on Mini-ImageNet 5-way 1-shot in plain JAX.

An independent, minimal meta-step written as a researcher would write it from the MAML
paper (no fometa import), with the shapes of fometa's presets:
- mini-imagenet (maml-mini-imagenet-5w1s): 84x84x3, 4 x (3x3 conv of 32 filters, batch norm,
  ReLU, 2x2 max-pool), dense; 5 inner SGD steps of lr 0.01 on 5 support images, the query
  loss on 75, a meta-batch of 4 tasks;
- omniglot (maml-omniglot-20w1s): 28x28x1, 4 x (3x3 conv of 64 filters with stride 2, batch
  norm, ReLU), dense; 5 inner steps of lr 0.1 on 20 support images, 20 queries, 16 tasks.
The inner loop is a lax.scan, the tasks are vmapped, jax.grad goes through it all, then an
Adam step (optax). No task sampler, no loop over meta-iterations, no checks: less than
fometa's training loop holds. Prints trace+lower seconds, XLA seconds, and ms per step.

    python plain_maml.py DATASET CONV REMAT  # CONV: lax (lax.conv) | patch (patches + matmul)
"""
import sys, time
import jax, jax.numpy as jnp, optax
from jax import lax

dataset, conv_kind, remat = sys.argv[1], sys.argv[2], sys.argv[3] == "remat"
if dataset == "mini-imagenet":
    WAYS, SHOTS, QUERIES, STEPS, BATCH, LR = 5, 1, 15, 5, 4, 0.01
    SIZE, CHANNELS, FILTERS, STRIDE, FEATURES = 84, 3, 32, 1, 5 * 5 * 32
else:
    WAYS, SHOTS, QUERIES, STEPS, BATCH, LR = 20, 1, 1, 5, 16, 0.1
    SIZE, CHANNELS, FILTERS, STRIDE, FEATURES = 28, 1, 64, 2, 2 * 2 * 64


def conv(x, w):
    if conv_kind == "lax":
        return lax.conv_general_dilated(x, w, (STRIDE, STRIDE), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    n, h, wd, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([xp[:, i:i + h:STRIDE, j:j + wd:STRIDE]
                               for i in range(3) for j in range(3)], -1)
    return patches @ w.reshape(9 * c, -1)


def net(p, x):
    for i in range(4):
        x = conv(x, p[f"w{i}"]) + p[f"b{i}"]
        m = x.mean((0, 1, 2)); v = x.var((0, 1, 2))
        x = (x - m) * lax.rsqrt(v + 1e-3) * p[f"g{i}"] + p[f"o{i}"]
        x = jax.nn.relu(x)
        if STRIDE == 1:
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return x.reshape(x.shape[0], -1) @ p["wd"] + p["bd"]


def loss(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(net(p, x), y).mean()


def task_loss(p, xs, ys, xq, yq):
    def step(p, _):
        g = jax.grad(loss)(p, xs, ys)
        return jax.tree.map(lambda a, b: a - LR * b, p, g), None
    if remat:
        step = jax.checkpoint(step)
    p, _ = lax.scan(step, p, None, length=STEPS)
    return loss(p, xq, yq)


def meta_loss(p, xs, ys, xq, yq):
    return jax.vmap(task_loss, (None, 0, 0, 0, 0))(p, xs, ys, xq, yq).mean()


opt = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(1e-3))


@jax.jit
def train_step(p, s, xs, ys, xq, yq):
    l, g = jax.value_and_grad(meta_loss)(p, xs, ys, xq, yq)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, l


k = jax.random.split(jax.random.key(0), 16)
p, c = {}, CHANNELS
for i in range(4):
    p[f"w{i}"] = jax.random.normal(k[i], (3, 3, c, FILTERS)) * 0.1; c = FILTERS
    p[f"b{i}"] = jnp.zeros(c); p[f"g{i}"] = jnp.ones(c); p[f"o{i}"] = jnp.zeros(c)
p["wd"] = jax.random.normal(k[5], (FEATURES, WAYS)) * 0.1; p["bd"] = jnp.zeros(WAYS)
s = opt.init(p)
xs = jax.random.uniform(k[6], (BATCH, WAYS * SHOTS, SIZE, SIZE, CHANNELS))
ys = jnp.tile(jnp.arange(WAYS).repeat(SHOTS), (BATCH, 1))
xq = jax.random.uniform(k[7], (BATCH, WAYS * QUERIES, SIZE, SIZE, CHANNELS))
yq = jnp.tile(jnp.arange(WAYS).repeat(QUERIES), (BATCH, 1))
args = (p, s, xs, ys, xq, yq)
t0 = time.perf_counter(); lowered = train_step.lower(*args); t1 = time.perf_counter()
compiled = lowered.compile(); t2 = time.perf_counter()
out = compiled(*args); jax.block_until_ready(out)
t3 = time.perf_counter()
steps = 3 if t3 - t2 < 5 else 0  # a slow step (lax.conv's fallback) is timed by its first call
for _ in range(steps):
    out = compiled(out[0], out[1], xs, ys, xq, yq)
jax.block_until_ready(out); t4 = time.perf_counter()
if not steps:
    t3, t4, steps = t2, t3, 1
fusions = compiled.as_text().count(" fusion(")
print(f"plain {dataset} conv={conv_kind} remat={remat}: trace+lower {t1 - t0:.2f} s  XLA {t2 - t1:.2f} s  "
      f"first compile {t2 - t0:.2f} s  {fusions} fusion calls  step {(t4 - t3) / steps * 1e3:.0f} ms")
