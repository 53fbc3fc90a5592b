"""One-off: the compile of each part of an Omniglot 5-way task batch's sampling (5 tasks,
11 examples per class), each twice: which random-number calls cost the time."""
import time, jax, jax.numpy as jnp
from fometa.tasks.sampling import distinct, epoch_batches
from fometa.tasks.classification import _rotate
imgs = jnp.zeros((1200, 20, 28, 28, 1), jnp.uint8)
ways, per, mb = 5, 11, 5
def t(name, f, *a):
    for _ in range(2):
        jax.clear_caches()
        t0 = time.perf_counter(); c = jax.jit(f).lower(*a).compile(); dt = time.perf_counter() - t0
        n = sum(1 for l in c.as_text().splitlines() if " fusion(" in l and "calls=" in l)
        w = c.as_text().count(" while(")
        print(f"{name:30s} {dt:5.2f} s fusions {n:4d} whiles {w}")
keys = jax.random.split(jax.random.key(0), mb)
t("split only", lambda k: jax.vmap(lambda k: jax.random.split(k, 2))(k), keys)
t("randint", lambda k: jax.vmap(lambda k: jax.random.randint(k, (5,), 0, 100))(k), keys)
t("permutation(5)", lambda k: jax.vmap(lambda k: jax.random.permutation(k, 5))(k), keys)
t("distinct classes", lambda k: jax.vmap(lambda k: distinct(k, 4800, ways))(k), keys)
t("distinct picks", lambda k: jax.vmap(lambda k: jax.vmap(lambda k: distinct(k, 20, per))(jax.random.split(k, ways)))(k), keys)
x = jnp.zeros((mb, ways, per, 28, 28, 1), jnp.uint8); r = jnp.zeros((mb, ways), jnp.int32)
t("rotate switch", lambda x, r: jax.vmap(jax.vmap(_rotate))(x, r), x, r)
t("epoch_batches 50/10/5", lambda k: jax.vmap(lambda k: epoch_batches(k, 50, 10, 5))(k), keys)
