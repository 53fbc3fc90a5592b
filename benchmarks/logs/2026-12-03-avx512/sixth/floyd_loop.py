"""One-off: `fometa.tasks.sampling.distinct`'s unrolled Floyd steps against the same steps
in a `fori_loop` and as a k x k fixed point: the same draws (checked), and their compile."""
import time, jax, jax.numpy as jnp
from fometa.tasks.sampling import distinct
def distinct_loop(key, n, k):
    kr, kp = jax.random.split(key)
    draws = jax.random.randint(kr, (k,), 0, jnp.arange(n - k + 1, n + 1, dtype=jnp.int32), dtype=jnp.int32)
    pos = jnp.arange(k)
    def step(i, picked):
        taken = jnp.any((picked == draws[i]) & (pos < i))
        return picked.at[i].set(jnp.where(taken, n - k + i, draws[i]))
    picked = jax.lax.fori_loop(0, k, step, jnp.zeros((k,), jnp.int32))
    return jax.random.permutation(kp, picked)
def distinct_vec(key, n, k):
    # picked[i] = draws[i] unless draws[i] equals an earlier picked value; earlier picked values are
    # draws[j] (kept) or n-k+j (replaced). closed form via k x k comparisons, iterated k times (fixed point)
    kr, kp = jax.random.split(key)
    draws = jax.random.randint(kr, (k,), 0, jnp.arange(n - k + 1, n + 1, dtype=jnp.int32), dtype=jnp.int32)
    alt = n - k + jnp.arange(k, dtype=jnp.int32)
    earlier = jnp.arange(k)[None, :] < jnp.arange(k)[:, None]  # [i, j]: j < i
    picked = draws
    def body(_, picked):
        taken = jnp.any((picked[None, :] == draws[:, None]) & earlier, axis=1)
        return jnp.where(taken, alt, draws)
    picked = jax.lax.fori_loop(0, k, body, draws)
    return jax.random.permutation(kp, picked)
ways, per, mb = 5, 11, 5
keys = jax.random.split(jax.random.key(0), 64)
for n, k in [(20, 11), (4800, 5), (20, 2), (50, 10), (5, 5)]:
    a = jax.vmap(lambda kk: distinct(kk, n, k))(keys)
    b = jax.vmap(lambda kk: distinct_loop(kk, n, k))(keys)
    c = jax.vmap(lambda kk: distinct_vec(kk, n, k))(keys)
    print(n, k, bool((a == b).all()), bool((a == c).all()))
def t(name, f, *a):
    for _ in range(2):
        jax.clear_caches()
        t0 = time.perf_counter(); c = jax.jit(f).lower(*a).compile(); dt = time.perf_counter() - t0
        n = sum(1 for l in c.as_text().splitlines() if " fusion(" in l and "calls=" in l)
        print(f"{name:30s} {dt:5.2f} s fusions {n:4d}")
keys = jax.random.split(jax.random.key(0), mb)
for nm, fn in [("unrolled", distinct), ("fori", distinct_loop), ("vec", distinct_vec)]:
    t("picks " + nm, lambda k: jax.vmap(lambda k: jax.vmap(lambda k: fn(k, 20, per))(jax.random.split(k, ways)))(k), keys)
    t("classes " + nm, lambda k: jax.vmap(lambda k: fn(k, 4800, ways))(k), keys)
