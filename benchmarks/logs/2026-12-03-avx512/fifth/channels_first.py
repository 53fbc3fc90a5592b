"""One-off: the Omniglot network computed channels-first ([C, N, H, W] activations), so that
a convolution is W^T @ P^T with the patches P^T [k*k*Cin, N*H'*W'] built on their first axis:
`matmul_tn(W, P^T)`, whose cotangents (`matmul_nt(P^T, g)`, `matmul(W, g)`) and theirs only
ever materialise transposes of weight-shaped operands, where the NHWC form's weight gradient
`matmul_tn(P, g)` materialises P^T. The same parameter tree as `fometa.OmniglotCNN`.
speed.py's step, both networks one task at a time (as fometa.learner computed it when this
ran, at bf007ce: a vmap of one task), compiled in one process, timed alternately (6 rounds
of 5), and the logits and gradients of the two compared first.

    python channels_first.py [maml|fomaml|reptile] [remat|plain]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # benchmarks/
import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import fometa  # noqa: E402
import fometa.convnets as cn  # noqa: E402
from fometa.matmul import matmul_tn  # noqa: E402
import speed  # noqa: E402
from alternate import print_medians  # noqa: E402

alg = sys.argv[1] if len(sys.argv) > 1 else "maml"
remat = (sys.argv[2] if len(sys.argv) > 2 else "remat") == "remat"


def patches_cf(x, kh, kw, stride):
    """[C, N, H, W] -> [kh*kw*C, N, H', W'], rows ordered (tap row, tap col, channel)."""
    c, n, h, w = x.shape
    ho, pad_h = cn.same_padding(h, kh, stride)
    wo, pad_w = cn.same_padding(w, kw, stride)
    xp = jnp.pad(x, ((0, 0), (0, 0), pad_h, pad_w))
    taps = [jax.lax.slice(xp, (0, 0, i, j),
                          (c, n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1),
                          (1, 1, stride, stride))
            for i in range(kh) for j in range(kw)]
    return jnp.concatenate(taps, axis=0)


class ConvCF(nn.Module):
    features: int
    stride: int

    @nn.compact
    def __call__(self, x):  # [Cin, N, H, W] -> [features, N, H', W']
        kernel = self.param("kernel", cn.kernel_init, (3, 3, x.shape[0], self.features))
        self.param("bias", cn.bias_init, (self.features,))  # cancelled by batch norm
        p = patches_cf(x, 3, 3, self.stride)
        k, n, ho, wo = p.shape
        z = matmul_tn(kernel.reshape(k, self.features), p.reshape(k, n * ho * wo))
        return z.reshape(self.features, n, ho, wo)


class BatchNormCF(nn.Module):
    @nn.compact
    def __call__(self, x):  # statistics over all axes but the first
        c = x.shape[0]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        mean = x.mean((1, 2, 3))
        var = jnp.square(x - mean[:, None, None, None]).mean((1, 2, 3))
        inv = jax.lax.rsqrt(var + cn.BN_EPSILON) * scale
        shift = bias - mean * inv
        return x * inv[:, None, None, None] + shift[:, None, None, None]


class OmniglotCF(nn.Module):
    num_classes: int
    conv: str = "auto"

    @nn.compact
    def __call__(self, x):  # [N, 28, 28, 1]
        x = x.transpose(3, 0, 1, 2)
        for i in range(4):
            x = ConvCF(64, 2, name=f"conv{i}")(x)
            x = nn.relu(BatchNormCF(name=f"norm{i}")(x))
        x = x.transpose(1, 2, 3, 0).reshape(x.shape[1], -1)
        return nn.Dense(self.num_classes, kernel_init=cn.kernel_init, bias_init=cn.bias_init,
                        name="logits")(x)


# The two networks agree: logits and the gradient of a loss, on one parameter tree.
x = jax.random.normal(jax.random.PRNGKey(1), (10, 28, 28, 1))
ref, cf = fometa.OmniglotCNN(5), OmniglotCF(5)
params = ref.init(jax.random.PRNGKey(0), x)
assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(cf.init(
    jax.random.PRNGKey(0), x))
loss = lambda m: jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(m.apply(p, x)))))
g_ref, g_cf = loss(ref)(params), loss(cf)(params)
diff = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-30))
           for a, b in zip(jax.tree_util.tree_leaves(g_ref), jax.tree_util.tree_leaves(g_cf)))
print("logits max abs diff", float(jnp.max(jnp.abs(ref.apply(params, x) - cf.apply(params, x)))),
      "gradient max relative diff", diff)
assert diff < 1e-4

data = speed.make_data("omniglot-5w1s")
steps = {"NHWC": speed.fometa_step("omniglot-5w1s", alg, data, 1, "auto", remat,
                                   tasks_at_once=1)}
original = fometa.OmniglotCNN
fometa.OmniglotCNN = OmniglotCF
steps["channels first"] = speed.fometa_step("omniglot-5w1s", alg, data, 1, "auto", remat,
                                            tasks_at_once=1)
fometa.OmniglotCNN = original
print(alg, "remat" if remat else "plain", "one task at a time",
      "compile", {name: round(s[1], 1) for name, s in steps.items()})
print_medians(steps)
