"""The paper's Taylor expansion of the meta-gradients (Nichol et al. 2018, Sec. 5.1-5.2).

With phi_1 = phi and k SGD steps phi_{i+1} = phi_i - alpha * grad L_i(phi_i) on minibatch
losses L_1..L_k, and g_i = grad L_i(phi), H_i = hess L_i(phi) (all at the initial point):

    grad L_i(phi_i) = g_i - alpha * H_i sum_{j<i} g_j + O(alpha^2)

so that, with query loss L_{k+1},

    g_FOMAML  = g_{k+1} - alpha H_{k+1} sum_{j<=k} g_j                              + O(alpha^2)
    g_MAML    = prod_{j=1..k} (I - alpha H_j(phi_j)) grad L_{k+1}(phi_{k+1})
              = g_FOMAML - alpha sum_{j<=k} H_j g_{k+1}                              + O(alpha^2)
    g_Reptile = (phi - W) / alpha = sum_{i<=k} [g_i - alpha H_i sum_{j<i} g_j]        + O(alpha^2)

Averaging over all orderings of a fixed set of k minibatch losses (exchangeable
minibatches), every ordered pair (i, j), i != j, is equally likely, so with
AvgGrad = mean_i g_i and AvgGradInner = mean_{i != j} H_i g_j:

    MAML    (k-1 inner steps + query):  AvgGrad - 2 (k-1) alpha AvgGradInner
    FOMAML  (k-1 inner steps + query):  AvgGrad -   (k-1) alpha AvgGradInner
    Reptile (k inner steps):          k AvgGrad - k (k-1) / 2 alpha AvgGradInner

(k = 2 gives the paper's eqs.: AvgGrad - 2a AvgGradInner, AvgGrad - a AvgGradInner,
2 AvgGrad - a AvgGradInner.) The tests check the residual of each formula shrinks like
alpha^2, using a tanh network so that the Hessians vary with the parameters. All in float64.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fometa

D_IN, HIDDEN, N_POINTS = 2, 4, 5
N_PARAMS = HIDDEN * D_IN + 2 * HIDDEN + 1
ALPHA0 = 0.02
ALPHAS = (ALPHA0, ALPHA0 / 2, ALPHA0 / 4)


@pytest.fixture(autouse=True)
def _x64():
    """Every test in this module runs in float64; the flag is restored afterwards."""
    with jax.enable_x64(True):
        yield


def net_loss(p, batch):
    """Mean squared error of a one-hidden-layer tanh network with flat params `p`."""
    w1 = p[:HIDDEN * D_IN].reshape(HIDDEN, D_IN)
    b1 = p[HIDDEN * D_IN:HIDDEN * D_IN + HIDDEN]
    w2 = p[HIDDEN * D_IN + HIDDEN:HIDDEN * D_IN + 2 * HIDDEN]
    b2 = p[-1]
    pred = jnp.tanh(batch["x"] @ w1.T + b1) @ w2 + b2
    return 0.5 * jnp.mean((pred - batch["y"]) ** 2)


def make_problem(num_batches, seed):
    rng = np.random.default_rng(seed)
    phi = rng.normal(scale=0.8, size=N_PARAMS)
    x = rng.uniform(-2.0, 2.0, size=(num_batches, N_POINTS, D_IN))
    y = np.sin(x @ np.array([1.5, -1.0])) + 0.3 * rng.normal(size=(num_batches, N_POINTS))
    return phi, {"x": x, "y": y}


@jax.jit
def _grads_and_hessians(phi, batches):
    in_axes = (None, 0)
    return (jax.vmap(jax.grad(net_loss), in_axes)(phi, batches),
            jax.vmap(jax.hessian(net_loss), in_axes)(phi, batches))


def derivatives_at(phi, batches):
    """g_i and H_i of each minibatch loss at phi, as numpy float64 (independent of fometa)."""
    n = batches["x"].shape[0]
    g, h = map(np.asarray, _grads_and_hessians(jnp.asarray(phi), as_jnp(batches)))
    assert g.dtype == np.float64 and h.shape == (n, N_PARAMS, N_PARAMS)
    return g, h


def as_jnp(tree):
    return jax.tree_util.tree_map(jnp.asarray, tree)


def _index(batches, idx):
    return jax.tree_util.tree_map(lambda leaf: jnp.asarray(leaf[np.asarray(idx)]), batches)


def leading_order(algorithm, g, h, alpha, k):
    """The paper's expansions to O(alpha), per minibatch sequence (batches 0..k-1 support,
    batch k query for MAML/FOMAML). Returns (zeroth order, through first order)."""
    if algorithm == "reptile":
        zeroth = g[:k].sum(0)
        first = sum(h[i] @ g[j] for i in range(k) for j in range(i))
    else:
        zeroth = g[k]
        first = sum(h[k] @ g[j] for j in range(k))
        if algorithm == "maml":
            first = first + sum(h[j] @ g[k] for j in range(k))
    return zeroth, zeroth - alpha * first


def measured_fn(algorithm):
    """The normalised meta-gradient, jitted with the SGD step size traced."""
    if algorithm == "reptile":
        def f(phi, support, query, alpha):
            return fometa.reptile_grad(net_loss, phi, support, alpha) / alpha
    else:
        contract = fometa.maml_grad if algorithm == "maml" else fometa.fomaml_grad

        def f(phi, support, query, alpha):
            return contract(net_loss, phi, support, query, alpha)
    return jax.jit(f)


def observed_orders(residuals):
    r = np.asarray(residuals)
    return np.log2(r[:-1] / r[1:])


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile"])
def test_taylor_expansion_per_sequence(algorithm, k):
    phi, batches = make_problem(k + 1, seed=10 + k)
    g, h = derivatives_at(phi, batches)
    support, query = _index(batches, np.arange(k)), _index(batches, k)
    f = measured_fn(algorithm)
    res, res0 = [], []
    for alpha in ALPHAS:
        out = f(jnp.asarray(phi), support, query, jnp.asarray(alpha))
        assert out.shape == (N_PARAMS,) and out.dtype == jnp.float64
        zeroth, lead = leading_order(algorithm, g, h, alpha, k)
        res.append(rel(np.asarray(out), lead))
        res0.append(rel(np.asarray(out), zeroth))
    orders = observed_orders(res)
    assert np.all((orders > 1.7) & (orders < 2.3)), (res, orders)
    # The O(alpha) term is really there: dropping it leaves a first-order residual.
    orders0 = observed_orders(res0)
    assert np.all((orders0 > 0.7) & (orders0 < 1.3)), (res0, orders0)


def expectation_coefficients(algorithm, k, alpha):
    return {"maml": (1.0, -2 * (k - 1) * alpha),
            "fomaml": (1.0, -(k - 1) * alpha),
            "reptile": (float(k), -k * (k - 1) / 2 * alpha)}[algorithm]


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile"])
def test_taylor_expansion_in_expectation(algorithm, k):
    """Exact average over all k! orderings of k fixed minibatches (the paper's expectations)."""
    phi, batches = make_problem(k, seed=20 + k)
    g, h = derivatives_at(phi, batches)
    avg_grad = g.mean(0)
    avg_grad_inner = np.mean([h[i] @ g[j] for i in range(k) for j in range(k) if i != j],
                             axis=0)
    perms = np.array(list(itertools.permutations(range(k))))
    if algorithm == "reptile":
        support, query = _index(batches, perms), _index(batches, perms[:, 0])  # query unused
    else:
        support, query = _index(batches, perms[:, :-1]), _index(batches, perms[:, -1])
    f = measured_fn(algorithm)
    batched = jax.jit(jax.vmap(f, in_axes=(None, 0, 0, None)))
    res, res0 = [], []
    for alpha in ALPHAS:
        out = batched(jnp.asarray(phi), support, query, jnp.asarray(alpha))
        assert out.shape == (len(perms), N_PARAMS) and out.dtype == jnp.float64
        mean = np.asarray(out).mean(0)
        c1, c2 = expectation_coefficients(algorithm, k, alpha)
        res.append(rel(mean, c1 * avg_grad + c2 * avg_grad_inner))
        res0.append(rel(mean, c1 * avg_grad))
    orders = observed_orders(res)
    assert np.all((orders > 1.7) & (orders < 2.3)), (res, orders)
    orders0 = observed_orders(res0)
    assert np.all((orders0 > 0.7) & (orders0 < 1.3)), (res0, orders0)
