"""The paper's conv nets: patch convolution against XLA's, batch norm, max-pool, init.

References are independent of the code under test where possible: `lax.conv_general_dilated`
and `lax.reduce_window` with XLA's own "SAME" padding, numpy loops, closed-form statistics.
Float64 runs inside `jax.enable_x64(True)`, which restores the flag afterwards.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fometa import convnets
from fometa.convnets import BatchNorm, Conv, MiniImageNetCNN, OmniglotCNN

NETS = {"omniglot": (OmniglotCNN, (28, 28, 1), 64, 256),
        "miniimagenet": (MiniImageNetCNN, (84, 84, 3), 32, 1152)}


def rel_err(x, ref):
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    return np.linalg.norm(x - ref) / max(np.linalg.norm(ref), 1e-30)


def assert_close_tree(tree, ref, tol):
    """Same structure, shapes and dtypes; every leaf within `tol` relative (in norm)."""
    assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(ref)
    for path, a, b in zip(jax.tree_util.tree_leaves_with_path(tree),
                          jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(ref)):
        assert a.shape == b.shape and a.dtype == b.dtype, path[0]
        assert rel_err(a, b) <= tol, (jax.tree_util.keystr(path[0]), rel_err(a, b))


def reference_conv(x, kernel, stride):
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)


def conv_inputs(key, n, size, cin, cout, kernel_size=3, lead=()):
    kx, kk, kg = jax.random.split(key, 3)
    x = jax.random.normal(kx, (*lead, n, size, size, cin))
    kernel = jax.random.normal(kk, (*lead, kernel_size, kernel_size, cin, cout))
    return x, kernel, kg


def cross_entropy(model, params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, x), y).mean()


def init(model, key, x):
    return jax.jit(model.init)(key, x)


def net_inputs(name, n=6, key=1):
    _, shape, _, _ = NETS[name]
    kx, ky = jax.random.split(jax.random.PRNGKey(key))
    return jax.random.normal(kx, (n, *shape)), jax.random.randint(ky, (n,), 0, 5)


# --- patch convolution -----------------------------------------------------------------

# (size, stride, rows): every size with both strides in the k*k-patch form, and the
# stride-1 sizes again in the row-tap form.
CONV_CASES = ([(size, stride, False) for size in (28, 14, 7, 4, 5, 1, 84) for stride in (1, 2)]
              + [(size, 1, True) for size in (28, 7, 4, 5, 2, 1, 84)])


@pytest.mark.parametrize("size,stride,rows", CONV_CASES)
def test_patch_conv_matches_xla(size, stride, rows):
    x, kernel, kg = conv_inputs(jax.random.PRNGKey(size * 10 + stride), 2, size, 3, 4)
    cot = jax.random.normal(kg, (2, -(-size // stride), -(-size // stride), 4))

    @jax.jit
    def value_and_vjp(a, k):  # gradients w.r.t. input and kernel for a random cotangent
        out, vjp = jax.vjp(lambda a, k: convnets.patch_conv(a, k, stride, rows), a, k)
        ref, vjp_ref = jax.vjp(lambda a, k: reference_conv(a, k, stride), a, k)
        return out, ref, convnets.xla_conv(a, k, stride), vjp(cot), vjp_ref(cot)

    out, ref, xla_out, grads, grads_ref = value_and_vjp(x, kernel)
    assert out.shape == ref.shape == cot.shape
    assert rel_err(out, ref) < 1e-6
    np.testing.assert_allclose(xla_out, ref, rtol=1e-5, atol=1e-5)
    for g, g_ref in zip(grads, grads_ref):
        assert g.shape == g_ref.shape
        assert rel_err(g, g_ref) < 1e-5


@pytest.mark.parametrize("kernel_size,size,stride,rows",
                         [(1, 7, 2, False), (2, 7, 2, False), (2, 6, 1, False), (5, 9, 2, False),
                          (1, 7, 1, True), (2, 6, 1, True), (2, 7, 1, True), (5, 9, 1, True),
                          (5, 2, 1, True)])
def test_patch_conv_other_kernel_sizes(kernel_size, size, stride, rows):
    x, kernel, _ = conv_inputs(jax.random.PRNGKey(0), 2, size, 2, 3, kernel_size)
    ref = reference_conv(x, kernel, stride)
    assert rel_err(convnets.patch_conv(x, kernel, stride, rows), ref) < 1e-6


def test_patch_conv_exact_in_float64():
    with jax.enable_x64(True):
        x, kernel, _ = conv_inputs(jax.random.PRNGKey(3), 2, 7, 3, 4)
        x, kernel = x.astype(jnp.float64), kernel.astype(jnp.float64)
        for stride, rows in ((1, False), (2, False), (1, True)):
            out = convnets.patch_conv(x, kernel, stride, rows)
            assert out.dtype == jnp.float64
            assert rel_err(out, reference_conv(x, kernel, stride)) < 1e-13


@pytest.mark.parametrize("size,stride,rows", [(28, 2, False), (7, 2, False), (4, 2, False),
                                              (21, 1, False), (21, 1, True), (6, 1, True)])
def test_patch_conv_under_vmap_with_per_task_kernels(size, stride, rows):
    tasks = 3
    x, kernel, kg = conv_inputs(jax.random.PRNGKey(size), 4, size, 3, 5, lead=(tasks,))

    def loss(conv_fn, a, k):
        y = conv_fn(a, k, stride)
        return jnp.sum(jnp.sin(y)), y

    def per_task(conv_fn):
        grad = jax.grad(lambda a, k: loss(conv_fn, a, k), argnums=(0, 1), has_aux=True)
        return jax.jit(jax.vmap(grad))(x, kernel)

    (gx, gk), out = per_task(lambda a, k, s: convnets.patch_conv(a, k, s, rows))
    (gx_ref, gk_ref), out_ref = per_task(reference_conv)
    assert out.shape == (tasks, 4, -(-size // stride), -(-size // stride), 5)
    assert rel_err(out, out_ref) < 1e-6
    assert rel_err(gx, gx_ref) < 1e-5
    assert rel_err(gk, gk_ref) < 1e-5
    # Each task used its own kernel: the same as looping over tasks.
    loop = jnp.stack([reference_conv(x[t], kernel[t], stride) for t in range(tasks)])
    assert rel_err(out, loop) < 1e-6


@pytest.mark.parametrize("h,w,kh,kw", [(7, 4, 3, 3), (4, 9, 3, 3), (6, 5, 3, 2), (5, 6, 2, 5),
                                       (1, 6, 3, 3), (3, 2, 1, 4)])
def test_row_taps_non_square(h, w, kh, kw):
    """Images with H != W and kernels with kh != kw: values and both gradients, plain and
    vmapped over per-task kernels, against XLA's convolution."""
    kx, kk, kg = jax.random.split(jax.random.PRNGKey(h * 10 + w), 3)
    x = jax.random.normal(kx, (3, 2, h, w, 4))
    kernel = jax.random.normal(kk, (3, kh, kw, 4, 5))
    cot = jax.random.normal(kg, (3, 2, h, w, 5))

    def value_and_grads(conv_fn):
        def one(a, k, g):
            out, vjp = jax.vjp(conv_fn, a, k)
            return out, vjp(g)
        return jax.jit(jax.vmap(one))(x, kernel, cot)

    out, grads = value_and_grads(lambda a, k: convnets.patch_conv(a, k, 1, rows=True))
    ref, grads_ref = value_and_grads(lambda a, k: reference_conv(a, k, 1))
    assert out.shape == ref.shape == cot.shape
    assert rel_err(out, ref) < 1e-6
    for g, g_ref in zip(grads, grads_ref):
        assert rel_err(g, g_ref) < 1e-5


def test_row_taps_in_bfloat16_round_like_patches():
    """bfloat16 in, bfloat16 out, and within 1.5x of the k*k-patch form's error against the
    float32 convolution (each of the k partial outputs is rounded to bfloat16 by its
    product: measured 1.16x with their sum in float32, 1.27x with it in bfloat16)."""
    x, kernel, _ = conv_inputs(jax.random.PRNGKey(5), 4, 21, 32, 32)
    ref = reference_conv(x, kernel, 1)
    xb, kb = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
    rows = jax.jit(lambda a, k: convnets.patch_conv(a, k, 1, rows=True))(xb, kb)
    patches = jax.jit(lambda a, k: convnets.patch_conv(a, k, 1, rows=False))(xb, kb)
    assert rows.dtype == jnp.bfloat16
    assert rel_err(rows, ref) <= 1.5 * rel_err(patches, ref)


@pytest.mark.parametrize("rows", [False, True])
def test_patch_conv_second_order_matches_xla(rows):
    """MAML differentiates through the inner step's convolutions: a Hessian-vector product
    of a loss of the conv's output, w.r.t. the kernel, against XLA's convolution (float64)."""
    with jax.enable_x64(True):
        x, kernel, kv = conv_inputs(jax.random.PRNGKey(7), 2, 9, 4, 3)
        x, kernel = x.astype(jnp.float64), kernel.astype(jnp.float64)
        v = jax.random.normal(kv, kernel.shape, jnp.float64)

        def hvp(conv_fn):
            loss = lambda k: jnp.sum(jnp.sin(conv_fn(x, k)))
            # reverse over reverse, as MAML's (fometa.matmul's custom VJPs have no JVP)
            return jax.grad(lambda k: jnp.vdot(jax.grad(loss)(k), v))(kernel)

        got = jax.jit(lambda: hvp(lambda a, k: convnets.patch_conv(a, k, 1, rows)))()
        assert rel_err(got, hvp(lambda a, k: reference_conv(a, k, 1))) < 1e-12


def test_patch_conv_takes_row_taps_by_channels_and_stride(monkeypatch):
    """The default (`rows=None`) is row taps exactly for stride 1 from
    ROW_TAPS_MIN_CHANNELS input channels on the CPU; stride 2 refuses them."""
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    floor = convnets.ROW_TAPS_MIN_CHANNELS

    def concatenated_channels(stride, cin):  # the channel count of the patches it builds
        x, kernel, _ = conv_inputs(jax.random.PRNGKey(0), 1, 6, cin, 2)
        jaxpr = jax.make_jaxpr(lambda a, k: convnets.patch_conv(a, k, stride))(x, kernel)
        return [e.outvars[0].aval.shape[-1] for e in jaxpr.eqns
                if e.primitive.name == "concatenate"]

    assert concatenated_channels(1, floor) == [3 * floor]
    assert concatenated_channels(1, floor - 1) == [9 * (floor - 1)]
    assert concatenated_channels(2, floor) == [9 * floor]
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert concatenated_channels(1, floor) == [9 * floor]
    x, kernel, _ = conv_inputs(jax.random.PRNGKey(0), 1, 6, 2, 2)
    with pytest.raises(ValueError, match="stride 1; got stride 2"):
        convnets.patch_conv(x, kernel, 2, rows=True)


def test_resolve_conv(monkeypatch):
    assert convnets.resolve_conv("xla") == "xla"
    assert convnets.resolve_conv("patch") == "patch"
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert convnets.resolve_conv("auto") == "patch"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert convnets.resolve_conv("auto") == "patch"
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert convnets.resolve_conv("auto") == "xla"
    with pytest.raises(ValueError, match="unknown conv"):
        convnets.resolve_conv("fft")
    with pytest.raises(ValueError, match="unknown conv"):
        OmniglotCNN(5, conv="cudnn").init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))


# --- max-pool --------------------------------------------------------------------------

def numpy_max_pool_same(x, window, stride):
    """TF's SAME max-pool by loops: windows clipped to the image, padding never wins.

    Returns the pooled array and, per output, the flat (row * W + col) input position
    of its maximum, where the gradient should go.
    """
    n, h, w, c = x.shape
    ho, wo = -(-h // stride), -(-w // stride)
    top = max((ho - 1) * stride + window - h, 0) // 2
    left = max((wo - 1) * stride + window - w, 0) // 2
    out = np.empty((n, ho, wo, c), x.dtype)
    where = np.empty((n, ho, wo, c), np.int64)
    for i in range(ho):
        for j in range(wo):
            r0, c0 = max(i * stride - top, 0), max(j * stride - left, 0)
            patch = x[:, r0:i * stride - top + window, c0:j * stride - left + window]
            out[:, i, j] = patch.max(axis=(1, 2))
            flat = patch.reshape(n, -1, c).argmax(axis=1)
            pw = patch.shape[2]
            where[:, i, j] = (r0 + flat // pw) * w + c0 + flat % pw
    return out, where


def test_max_pool_small_example():
    x = jnp.arange(9.0).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(convnets.max_pool(x)[0, :, :, 0], [[4, 5], [7, 8]])
    x = -jnp.arange(9.0).reshape(1, 3, 3, 1)  # all negative: padding must not win
    np.testing.assert_array_equal(convnets.max_pool(x)[0, :, :, 0], [[0, -2], [-6, -8]])


@pytest.mark.parametrize("size", [84, 42, 21, 11, 6, 7, 5, 3, 1])
@pytest.mark.parametrize("window,stride", [(2, 2), (3, 2), (3, 1)])
def test_max_pool_same_matches_references(size, window, stride):
    x = jax.random.normal(jax.random.PRNGKey(size), (2, size, size + 1, 3))
    ref, where = numpy_max_pool_same(np.asarray(x), window, stride)
    np.testing.assert_array_equal(convnets.max_pool(x, window, stride), ref)
    np.testing.assert_array_equal(
        convnets.max_pool(x, window, stride),
        nn.max_pool(x, (window, window), (stride, stride), padding="SAME"))
    # No ties in random data: the gradient puts each output's cotangent on its maximum.
    cot = np.asarray(jax.random.normal(jax.random.PRNGKey(1), ref.shape))
    grad = jax.jit(jax.grad(lambda a: jnp.sum(cot * convnets.max_pool(a, window, stride))))(x)
    grad_ref = np.zeros((2, size * (size + 1), 3))
    for b in range(2):
        for ch in range(3):
            np.add.at(grad_ref[b, :, ch], where[b, ..., ch].ravel(), cot[b, ..., ch].ravel())
    np.testing.assert_allclose(grad, grad_ref.reshape(x.shape), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [6, 5])
def test_max_pool_second_order_matches_reduce_window(size):
    # MAML differentiates through the pooling's gradient: the Hessian of a smooth function
    # of the pooled values equals the one through lax.reduce_window (select-and-scatter).
    x = jax.random.normal(jax.random.PRNGKey(size), (1, size, size, 2))
    cot = jax.random.normal(jax.random.PRNGKey(7), (1, 3, 3, 2))
    window = lambda a: jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                             (1, 2, 2, 1), "SAME")
    f = lambda pool: lambda a: jnp.sum(cot * jnp.tanh(pool(a)) ** 2)
    h = jax.jit(jax.hessian(f(convnets.max_pool)))(x)
    np.testing.assert_allclose(h, jax.hessian(f(window))(x), rtol=1e-5, atol=1e-6)
    assert np.count_nonzero(np.asarray(h)) > 0


def test_max_pool_keeps_dtype():
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 5, 5, 2)).astype(jnp.bfloat16)
    assert convnets.max_pool(x).dtype == jnp.bfloat16


# --- batch norm ------------------------------------------------------------------------

def test_batch_norm_uses_batch_statistics():
    key = jax.random.PRNGKey(0)
    shift = jnp.array([0.0, 5.0, -3.0, 100.0])
    spread = jnp.array([1.0, 0.1, 7.0, 30.0])
    x = jax.random.normal(key, (8, 5, 5, 4)) * spread + shift
    bn = BatchNorm()
    params = bn.init(key, x)
    assert jax.tree_util.tree_map(jnp.shape, params) == {"params": {"scale": (4,), "bias": (4,)}}
    y = bn.apply(params, x)
    assert y.shape == x.shape and y.dtype == x.dtype
    xs = np.asarray(x, np.float64)
    var = xs.var(axis=(0, 1, 2))
    # float32 rounding of x itself (5 +- 0.1) is ~1e-5 after normalising.
    np.testing.assert_allclose(np.asarray(y).mean(axis=(0, 1, 2)), 0.0, atol=5e-5)
    np.testing.assert_allclose(np.asarray(y).var(axis=(0, 1, 2)), var / (var + 1e-3), rtol=1e-4)

    # Learned scale and offset apply after normalising: numpy reference, epsilon 1e-3.
    scale, bias = jnp.array([2.0, -1.0, 0.5, 3.0]), jnp.array([0.1, 0.2, -0.3, 4.0])
    y = bn.apply({"params": {"scale": scale, "bias": bias}}, x)
    ref = (xs - xs.mean(axis=(0, 1, 2))) / np.sqrt(var + 1e-3)
    ref = ref * np.asarray(scale) + np.asarray(bias)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


def test_batch_norm_bfloat16_keeps_dtype():
    x = (jax.random.normal(jax.random.PRNGKey(0), (8, 3, 3, 4)) * 3 + 50).astype(jnp.bfloat16)
    bn = BatchNorm()
    y = bn.apply(bn.init(jax.random.PRNGKey(0), x), x)
    assert y.dtype == jnp.bfloat16
    ref = bn.apply(bn.init(jax.random.PRNGKey(0), x), x.astype(jnp.float32))
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, atol=0.05)


@pytest.mark.parametrize("name", sorted(NETS))
def test_network_batch_norm_outputs_are_standardised(name):
    model_cls = NETS[name][0]
    model = model_cls(5, conv="patch")
    x, _ = net_inputs(name, n=10)
    params = init(model, jax.random.PRNGKey(0), x)
    _, state = jax.jit(lambda p, a: model.apply(p, a, capture_intermediates=True,
                                                mutable=["intermediates"]))(params, x)
    inter = state["intermediates"]
    for i in range(4):
        before = np.asarray(inter[f"conv{i}"]["__call__"][0], np.float64)
        after = np.asarray(inter[f"norm{i}"]["__call__"][0], np.float64)
        var = before.var(axis=(0, 1, 2))
        np.testing.assert_allclose(after.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
        np.testing.assert_allclose(after.var(axis=(0, 1, 2)), var / (var + 1e-3), rtol=1e-3)


@pytest.mark.parametrize("name", sorted(NETS))
def test_predictions_depend_on_the_rest_of_the_batch(name):
    """Transductive: with running averages (or per-example norm) logits[0] would not move."""
    model = NETS[name][0](5, conv="patch")
    x, _ = net_inputs(name, n=5)
    params = init(model, jax.random.PRNGKey(0), x)
    apply = jax.jit(model.apply)
    logits = apply(params, x)
    x_other = x.at[1:].set(3.0 * x[1:] + 1.0)
    logits_other = apply(params, x_other)
    np.testing.assert_array_equal(x_other[0], x[0])
    assert np.abs(logits_other[0] - logits[0]).max() > 1e-3
    # Alone, the same example gets yet another prediction.
    assert np.abs(apply(params, x[:1])[0] - logits[0]).max() > 1e-3
    # Batch statistics are symmetric in the examples: permuting the batch permutes logits.
    perm = jnp.array([3, 0, 4, 1, 2])
    np.testing.assert_allclose(apply(params, x[perm]), logits[perm], rtol=1e-4, atol=1e-5)


# --- networks --------------------------------------------------------------------------

def without_conv_biases(grads):
    """The gradient tree minus the conv biases, after checking those are ~0.

    Batch norm right after each conv subtracts the batch mean, so a conv bias cannot
    change the output: its exact gradient is zero and what is left is rounding noise.
    """
    g = dict(grads["params"])
    for i in range(4):
        layer = dict(g[f"conv{i}"])
        scale = np.abs(np.asarray(layer["kernel"])).max()
        assert np.abs(np.asarray(layer.pop("bias"))).max() <= 1e-5 * scale
        g[f"conv{i}"] = layer
    return g


@pytest.mark.parametrize("name", sorted(NETS))
def test_network_shapes_and_param_tree(name):
    model_cls, shape, filters, flat = NETS[name]
    x, _ = net_inputs(name, n=3)
    trees = {conv: init(model_cls(7, conv=conv), jax.random.PRNGKey(0), x)
             for conv in ("patch", "xla")}
    shapes = jax.tree_util.tree_map(jnp.shape, trees["patch"])
    expected = {f"conv{i}": {"kernel": (3, 3, shape[-1] if i == 0 else filters, filters),
                             "bias": (filters,)} for i in range(4)}
    expected.update({f"norm{i}": {"scale": (filters,), "bias": (filters,)} for i in range(4)})
    expected["logits"] = {"kernel": (flat, 7), "bias": (7,)}
    assert shapes == {"params": expected}  # no batch_stats: nothing mutable
    assert_close_tree(trees["xla"], trees["patch"], 0.0)
    out = jax.jit(model_cls(7, conv="patch").apply)(trees["xla"], x)
    assert out.shape == (3, 7) and out.dtype == jnp.float32
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("name", sorted(NETS))
def test_network_patch_and_xla_agree(name):
    """Same params: same logits, loss and gradients, alone and vmapped with per-task params."""
    model_cls = NETS[name][0]
    x, y = net_inputs(name, n=5)

    def value_and_grads(conv):
        model = model_cls(5, conv=conv)

        @jax.jit
        def f(p, a):
            loss, grads = jax.value_and_grad(
                lambda p, a: cross_entropy(model, p, a, y), argnums=(0, 1))(p, a)
            return model.apply(p, a), loss, grads
        return f

    patch, xla = value_and_grads("patch"), value_and_grads("xla")
    params = init(model_cls(5), jax.random.PRNGKey(0), x)
    (logits, loss, (gp, gx)), (logits_ref, loss_ref, (gp_ref, gx_ref)) = \
        patch(params, x), xla(params, x)
    assert rel_err(logits, logits_ref) < 1e-5
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-5)
    assert_close_tree(without_conv_biases(gp), without_conv_biases(gp_ref), 1e-4)
    assert rel_err(gx, gx_ref) < 1e-4

    # Per-task params under vmap, as in the meta-learner: task t as if run alone (xla).
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    task_params = jax.jit(jax.vmap(lambda k: model_cls(5).init(k, x)))(keys)
    xs = jnp.stack([-x, x])
    _, _, (gp_tasks, _) = jax.jit(jax.vmap(patch))(task_params, xs)
    for t in range(2):
        gp_alone = xla(jax.tree_util.tree_map(lambda p: p[t], task_params), xs[t])[2][0]
        assert_close_tree(without_conv_biases(jax.tree_util.tree_map(lambda g: g[t], gp_tasks)),
                          without_conv_biases(gp_alone), 1e-4)


@pytest.mark.parametrize("name", sorted(NETS))
def test_network_gradients_against_float64(name):
    """patch == xla to float64 rounding; the float32 (jitted) gradients match float64."""
    model_cls = NETS[name][0]
    x, y = net_inputs(name, n=4)
    params = init(model_cls(5), jax.random.PRNGKey(0), x)

    def grads(conv, p, a):
        model = model_cls(5, conv=conv)
        return jax.jit(jax.value_and_grad(
            lambda p, a: cross_entropy(model, p, a, y), argnums=(0, 1)))(p, a)

    loss32, (gp32, gx32) = grads("patch", params, x)
    with jax.enable_x64(True):
        x64 = x.astype(jnp.float64)
        params64 = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)
        (loss, (gp, gx)), (loss_ref, (gp_ref, gx_ref)) = \
            grads("patch", params64, x64), grads("xla", params64, x64)
        assert gx.dtype == jnp.float64
        assert abs(float(loss - loss_ref)) < 1e-12
        assert_close_tree(without_conv_biases(gp), without_conv_biases(gp_ref), 1e-10)
        assert rel_err(gx, gx_ref) < 1e-10
    np.testing.assert_allclose(loss32, loss_ref, rtol=1e-5)
    gp_ref32 = jax.tree_util.tree_map(lambda g: np.asarray(g, np.float32), gp_ref)
    assert_close_tree(without_conv_biases(gp32), without_conv_biases(gp_ref32), 1e-4)
    assert rel_err(gx32, gx_ref) < 1e-4


def reference_network(name, params, x):
    """The paper's network written out with the conv biases added and textbook batch norm."""
    p = params["params"]
    for i in range(4):
        x = reference_conv(x, p[f"conv{i}"]["kernel"], 2 if name == "omniglot" else 1)
        x = x + p[f"conv{i}"]["bias"]
        mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
        x = (x - mean) / jnp.sqrt(var + 1e-3) * p[f"norm{i}"]["scale"] + p[f"norm{i}"]["bias"]
        if name != "omniglot":
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1),
                                      "SAME")
        x = jnp.maximum(x, 0.0)
    x = x.reshape(x.shape[0], -1)
    return x @ p["logits"]["kernel"] + p["logits"]["bias"]


@pytest.mark.parametrize("name", sorted(NETS))
def test_network_equals_reference_with_conv_biases_added(name):
    """Leaving the conv biases out (batch norm follows) changes no logit and no gradient.

    Nonzero conv biases and batch-norm parameters, float64: fometa's network against an
    independent forward pass that adds the biases; the conv biases' gradients are exactly
    zero in fometa and rounding noise in the reference.
    """
    model_cls = NETS[name][0]
    x, y = net_inputs(name, n=4)
    params = init(model_cls(5), jax.random.PRNGKey(0), x)
    keys = iter(jax.random.split(jax.random.PRNGKey(7), 16))
    params = {"params": {
        layer: {k: (v + 0.5 * jax.random.normal(next(keys), v.shape) if layer != "logits"
                    else v) for k, v in leaves.items()}
        for layer, leaves in params["params"].items()}}
    with jax.enable_x64(True):
        x64 = x.astype(jnp.float64)
        p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
        for conv in ("patch", "xla"):
            model = model_cls(5, conv=conv)
            np.testing.assert_allclose(jax.jit(model.apply)(p64, x64),
                                       jax.jit(reference_network, static_argnums=0)(
                                           name, p64, x64), rtol=1e-10, atol=1e-10)
            loss = lambda p: cross_entropy(model, p, x64, y)
            loss_ref = lambda p: optax.softmax_cross_entropy_with_integer_labels(
                reference_network(name, p, x64), y).mean()
            g, g_ref = jax.jit(jax.grad(loss))(p64), jax.jit(jax.grad(loss_ref))(p64)
            for i in range(4):
                np.testing.assert_array_equal(g["params"][f"conv{i}"]["bias"], 0.0)
            assert_close_tree(without_conv_biases(g), without_conv_biases(g_ref), 1e-9)


def test_network_keeps_input_dtype():
    x, _ = net_inputs("omniglot", n=4)
    model = OmniglotCNN(5, conv="patch")
    params = init(model, jax.random.PRNGKey(0), x)
    apply = jax.jit(model.apply)
    out = apply(params, x.astype(jnp.bfloat16))
    assert out.dtype == jnp.bfloat16
    assert rel_err(np.asarray(out, np.float32), apply(params, x)) < 0.1
    with jax.enable_x64(True):
        assert apply(params, x.astype(jnp.float64)).dtype == jnp.float64


def test_conv_module_matches_function():
    x, _, _ = conv_inputs(jax.random.PRNGKey(0), 2, 9, 3, 4)
    for conv in ("patch", "xla"):
        layer = Conv(4, 3, 2, conv)
        params = layer.init(jax.random.PRNGKey(1), x)
        p = params["params"]
        ref = reference_conv(x, p["kernel"], 2) + p["bias"]
        assert rel_err(layer.apply(params, x), ref) < 1e-6


# --- initialisation --------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(NETS))
def test_tf_like_init(name):
    model_cls, shape, filters, flat = NETS[name]
    x, _ = net_inputs(name, n=2)
    params = init(model_cls(5), jax.random.PRNGKey(4), x)["params"]
    kernels = {f"conv{i}": (9 * (shape[-1] if i == 0 else filters), 9 * filters) for i in range(4)}
    kernels["logits"] = (flat, 5)
    for layer, (fan_in, fan_out) in kernels.items():
        kernel = np.asarray(params[layer]["kernel"], np.float64)
        np.testing.assert_array_equal(params[layer]["bias"], 0.0)
        var = 2.0 / (fan_in + fan_out)
        bound = np.sqrt(3 * var)  # Glorot uniform: U(-bound, bound)
        assert np.abs(kernel).max() <= bound
        assert np.abs(kernel).max() > 0.95 * bound  # uniform, not a (truncated) normal
        tol = 4 * np.sqrt(0.8 / kernel.size)  # the sample variance's relative std is sqrt(0.8/n)
        assert abs(kernel.var() / var - 1) < tol, (layer, kernel.var(), var)
        assert abs(kernel.mean()) < 4 * np.sqrt(var / kernel.size)
    for i in range(4):
        np.testing.assert_array_equal(params[f"norm{i}"]["scale"], 1.0)
        np.testing.assert_array_equal(params[f"norm{i}"]["bias"], 0.0)
