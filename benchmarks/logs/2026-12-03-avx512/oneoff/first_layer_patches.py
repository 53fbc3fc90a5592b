"""One-off: the first layer's 27-channel patches of 250 Mini-ImageNet images (5 tasks x 5 steps x 10) in a vmapped scan, fometa's concatenate against lax.conv_general_dilated_patches."""
import time, jax, jax.numpy as jnp, numpy as np
from fometa.convnets import extract_patches
x = jnp.asarray(np.random.randn(5, 5, 10, 84, 84, 3).astype(np.float32))
def conv_patches(x):
    p = jax.lax.conv_general_dilated_patches(x, (3, 3), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    # channel order of conv_general_dilated_patches is (c, kh, kw): reorder to (kh, kw, c)
    n, h, w, _ = p.shape
    return p.reshape(n, h, w, 3, 9).swapaxes(-1, -2).reshape(n, h, w, 27)
def run(fn):
    def task(xs):
        def step(c, xi):
            return c + fn(xi).sum(), None
        return jax.lax.scan(step, 0.0, xs)[0]
    return jax.jit(jax.vmap(task))
a, b = run(lambda xi: extract_patches(xi, 3, 3)), run(conv_patches)
print(np.allclose(a(x), b(x), rtol=1e-4))
# values equal?
xi = x[0, 0]
print("exact", bool(jnp.array_equal(extract_patches(xi, 3, 3), conv_patches(xi))))
for f, name in ((a, "concat"), (b, "conv"), (a, "concat"), (b, "conv")):
    f(x).block_until_ready(); t0 = time.perf_counter()
    for _ in range(5): f(x).block_until_ready()
    print(name, (time.perf_counter() - t0) / 5 * 1e3, "ms")
