"""One-off: stride-2 patches taken from the input's s*s parity planes (a reshape, a
transpose and a split, then contiguous slices) instead of k*k strided slices of the padded
input; MAML's speed.py Omniglot step with remat, both compiled in one process, timed
alternately (6 rounds of 5), and the two steps' outputs compared.

    python planes.py [maml|fomaml|reptile] [remat|plain]
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import fometa.convnets as cn  # noqa: E402
import speed  # noqa: E402

alg = sys.argv[1] if len(sys.argv) > 1 else "maml"
remat = (sys.argv[2] if len(sys.argv) > 2 else "remat") == "remat"
orig = cn.extract_patches


def planes_patches(x, kh, kw, stride=1):
    if stride == 1:
        return orig(x, kh, kw, stride)
    s = stride
    n, h, w, c = x.shape
    ho, (pt, _) = cn.same_padding(h, kh, s)
    wo, (pl, _) = cn.same_padding(w, kw, s)
    ph, pw = ho + (kh - 1) // s, wo + (kw - 1) // s
    xp = jnp.pad(x, ((0, 0), (pt, s * ph - h - pt), (pl, s * pw - w - pl), (0, 0)))
    p = xp.reshape(n, ph, s, pw, s, c).transpose(2, 4, 0, 1, 3, 5).reshape(s * s, n, ph, pw, c)
    planes = jax.lax.split(p, [1] * (s * s), axis=0)
    taps = [jax.lax.slice(planes[(i % s) * s + j % s][0], (0, i // s, j // s, 0),
                          (n, i // s + ho, j // s + wo, c))
            for i in range(kh) for j in range(kw)]
    return jnp.concatenate(taps, axis=-1)


# check values first
x = jax.random.normal(jax.random.PRNGKey(1), (3, 28, 28, 5))
for hw in (28, 14, 7, 4, 9):
    xx = x[:, :hw, :hw]
    assert np.array_equal(np.asarray(orig(xx, 3, 3, 2)), np.asarray(planes_patches(xx, 3, 3, 2))), hw
data = speed.make_data("omniglot-5w1s")
base, cs0, _ = speed.fometa_step("omniglot-5w1s", alg, data, unroll=1, conv="auto", remat=remat)
cn.extract_patches = planes_patches
new, cs1, _ = speed.fometa_step("omniglot-5w1s", alg, data, unroll=1, conv="auto", remat=remat)
cn.extract_patches = orig
print(alg, "remat" if remat else "plain", "compile", round(cs0, 1), round(cs1, 1))
times = {"strided slices": [], "parity planes": []}
for call in (base, new):
    call(); call()
for _ in range(6):
    for name, call in (("strided slices", base), ("parity planes", new)):
        for _ in range(5):
            t = time.perf_counter(); call(); times[name].append(time.perf_counter() - t)
for name, ts in times.items():
    print(name, f"{1e3 * statistics.median(ts):.1f} ms")
