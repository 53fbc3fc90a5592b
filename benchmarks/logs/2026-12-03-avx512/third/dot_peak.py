"""One-off: YNNPACK's speed (XLA:CPU's jitted matmul) on a large product and on the
Omniglot network's batched layer products (5 tasks), in GFLOP/s, median of repeated calls."""
import time, jax, jax.numpy as jnp, numpy as np
def bench(shape_a, shape_b, n=50):
    a = jnp.asarray(np.random.rand(*shape_a).astype(np.float32)); b = jnp.asarray(np.random.rand(*shape_b).astype(np.float32))
    f = jax.jit(lambda a, b: jnp.matmul(a, b))
    f(a, b).block_until_ready()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(a, b).block_until_ready(); ts.append(time.perf_counter() - t)
    t = np.median(ts)
    fl = 2 * np.prod(shape_a) * shape_b[-1]
    print(shape_a, shape_b, f"{t*1e3:.3f} ms {fl/t/1e9:.1f} GFLOP/s")
bench((2048, 2048), (2048, 2048), 10)
bench((5, 490, 576), (5, 576, 64))
bench((5, 160, 576), (5, 576, 64))
bench((5, 490, 64), (5, 64, 576))
bench((5, 576, 490), (5, 490, 64))
bench((2450, 576), (576, 64))
