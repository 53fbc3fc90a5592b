"""MAML, FOMAML and Reptile gradients against closed forms and independent references.

Nothing here compares fometa with itself alone: quadratic tasks have closed forms (numpy,
float64); Adam inner loops are checked against a hand-written Adam (jax.numpy, no optax);
the meta-learner's step against per-task closed forms plus a hand-applied outer update.
Float64 runs inside `jax.enable_x64(True)`, which restores the flag, so other test files
keep float32 defaults. The paper's Taylor expansions are in tests/test_taylor.py.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fometa
from fometa.algorithms import meta_gradient

ALGOS = ("maml", "fomaml", "reptile")
CONTRACT = {"maml": fometa.maml_grad, "fomaml": fometa.fomaml_grad,
            "reptile": fometa.reptile_grad}


def x64(enabled: bool):
    return jax.enable_x64(True) if enabled else contextlib.nullcontext()


def rel_err(x, ref):
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    return np.linalg.norm(x - ref) / np.linalg.norm(ref)


def assert_close_tree(tree, ref, tol):
    """Same tree structure, shapes, and every leaf within `tol` relative (in norm)."""
    assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(ref)
    for x, r in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(ref)):
        assert np.shape(x) == np.shape(r)
        assert rel_err(x, r) <= tol, (rel_err(x, r), x, r)


# --------------------------------------------------------------------------------------
# Quadratic tasks: L_j(p) = 0.5 (p - c_j)^T A_j (p - c_j), A_j symmetric positive definite.
# Params are a flat vector or a dict {"a": p[:SPLIT], "b": p[SPLIT:]}.

DIM, SPLIT = 5, 2


def flat(params):
    if isinstance(params, dict):
        return jnp.concatenate([params["a"], params["b"]])
    return params


def unflat(vec, as_dict):
    vec = np.asarray(vec)
    return {"a": vec[..., :SPLIT], "b": vec[..., SPLIT:]} if as_dict else vec


def quad_loss(params, batch):
    r = flat(params) - batch["c"]
    return 0.5 * r @ batch["A"] @ r


def spd(rng, n, d=DIM):
    m = rng.normal(size=(n, d, d))
    return m @ np.swapaxes(m, -1, -2) / d + 0.5 * np.eye(d)


def quad_task(rng, k, tasks=None):
    """Support {A: [k,d,d], c: [k,d]} and query {A: [d,d], c: [d]} (numpy float64), with
    an optional leading task axis."""
    lead = () if tasks is None else (tasks,)
    n = int(np.prod(lead, dtype=int))
    a_s = spd(rng, n * k).reshape(*lead, k, DIM, DIM)
    a_q = spd(rng, n).reshape(*lead, DIM, DIM)
    support = {"A": a_s, "c": rng.normal(size=(*lead, k, DIM))}
    query = {"A": a_q, "c": rng.normal(size=(*lead, DIM))}
    return support, query


def quad_closed_form(phi, support, query, alpha):
    """Adapted params and the three meta-gradients for one task, in numpy float64."""
    a_s, c_s = np.asarray(support["A"], np.float64), np.asarray(support["c"], np.float64)
    a_q, c_q = np.asarray(query["A"], np.float64), np.asarray(query["c"], np.float64)
    phi = np.asarray(phi, np.float64)
    p, jac = phi.copy(), np.eye(len(phi))
    for a, c in zip(a_s, c_s):  # p_{j+1} = p_j - alpha A_j (p_j - c_j), an affine recursion
        p = p - alpha * a @ (p - c)
        jac = (np.eye(len(phi)) - alpha * a) @ jac  # d p_{j+1} / d phi
    g_query = a_q @ (p - c_q)
    return {"adapted": p, "maml": jac.T @ g_query, "fomaml": g_query, "reptile": phi - p,
            "support_loss": 0.5 * (phi - c_s[0]) @ a_s[0] @ (phi - c_s[0]),
            "query_loss": 0.5 * (p - c_q) @ a_q @ (p - c_q)}


def quad_closed_form_batch(phi, support, query, alpha):
    n = np.shape(support["c"])[0]
    per_task = [quad_closed_form(phi, {k: v[t] for k, v in support.items()},
                                 {k: v[t] for k, v in query.items()}, alpha) for t in range(n)]
    return {key: np.stack([r[key] for r in per_task]) for key in per_task[0]}


def call(name, params, support, query, inner_opt, **kw):
    if name == "adapt":
        return fometa.adapt(quad_loss, params, support, inner_opt, **kw)
    if name == "reptile":
        return fometa.reptile_grad(quad_loss, params, support, inner_opt, **kw)
    return CONTRACT[name](quad_loss, params, support, query, inner_opt, **kw)


@pytest.mark.parametrize("steps", [(0, 1, 3, 7), (2, 5), (0,), (1, 2, 3, 4, 5, 6, 7)])
def test_adapt_records_the_path_at_the_asked_step_counts(steps):
    """`learner.adapt(state, support, steps, each)` (evaluation's inner-steps curve): each
    after exactly those numbers of SGD steps, against the affine recursion in numpy, for a
    vmapped batch of tasks (the recording runs under a lax.cond on the unbatched count)."""
    alpha, k, tasks = 0.2, 7, 3
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        support, _ = quad_task(rng, k, tasks)
        phi = rng.normal(size=DIM)
        learner = fometa.meta_learner("fomaml", quad_loss, alpha)
        state = learner.init(jnp.asarray(phi))
        each = lambda p: {"p": p, "norm": jnp.sum(p ** 2)}
        got = jax.jit(jax.vmap(lambda s: learner.adapt(state, s, steps, each)))(support)
        for t in range(tasks):
            for i, n in enumerate(steps):
                prefix = {key: v[t, :n] for key, v in support.items()}
                want = quad_closed_form(phi, prefix, {"A": np.eye(DIM), "c": np.zeros(DIM)},
                                        alpha)["adapted"] if n else phi
                np.testing.assert_allclose(got["p"][t, i], want, rtol=1e-12)
                np.testing.assert_allclose(got["norm"][t, i], want @ want, rtol=1e-12)


@pytest.mark.parametrize("at", [(0,), (0, 2), (1, 3), (0, 1, 2, 3, 4, 5, 6)])
def test_inner_path_at_step_counts_against_the_affine_recursion(at):
    """`inner_path(at=...)` over all 7 support steps, whatever counts it records: the
    adapted params and every step's loss are the plain loop's (numpy float64 recursion),
    and the records are the params after those counts (0: before any step)."""
    alpha, k = 0.2, 7
    with jax.enable_x64(True):
        rng = np.random.default_rng(5)
        support, _ = quad_task(rng, k)
        phi = rng.normal(size=DIM)
        opt = optax.sgd(alpha)
        adapted, _, losses, path = fometa.inner.inner_path(
            quad_loss, jnp.asarray(phi), support, opt, opt.init(jnp.asarray(phi)),
            lambda p: p, at=at)
        p, params, want_losses = np.array(phi), [np.array(phi)], []
        for a, c in zip(support["A"], support["c"]):
            want_losses.append(0.5 * (p - c) @ a @ (p - c))
            p = p - alpha * a @ (p - c)
            params.append(p)
        np.testing.assert_allclose(adapted, params[-1], rtol=1e-12)
        np.testing.assert_allclose(losses, want_losses, rtol=1e-12)
        np.testing.assert_allclose(path, [params[n] for n in at], rtol=1e-12)


def test_maml_under_disable_jit():
    """The eps_root probe has no compiled program to run under `jax.disable_jit()`
    (debugging): it probes op by op there, and still says what is wrong."""
    support, query = quad_task(np.random.default_rng(6), 2)
    phi = jnp.zeros(DIM)
    with jax.disable_jit():
        grad = fometa.maml_grad(quad_loss, phi, support, query, 0.1)
        with pytest.raises(ValueError, match="eps_root"):
            fometa.maml_grad(quad_loss, phi, support, query, optax.adam(1e-3))
    want = quad_closed_form(phi, support, query, 0.1)["maml"]
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-5)


def test_recorded_step_counts_are_checked():
    learner = fometa.meta_learner("reptile", quad_loss, 0.1)
    state = learner.init(jnp.zeros(DIM))
    support, _ = quad_task(np.random.default_rng(0), 4)
    for steps in ((-1, 3), (), (3, 2), (0, 5)):
        with pytest.raises(ValueError, match=r"steps .* must be whole numbers that increase"):
            learner.adapt(state, support, steps)
    opt = optax.sgd(0.1)
    for at in ((2.0, 3.0), (-1, 2), (3, 2), (5,), ()):
        with pytest.raises(ValueError, match=r"must be increasing whole step counts"):
            fometa.inner.inner_path(quad_loss, jnp.zeros(DIM), support, opt,
                                    opt.init(jnp.zeros(DIM)), lambda p: p, at=at)


# --- 1. closed forms in float64 --------------------------------------------------------

@pytest.mark.parametrize("as_dict, inner_opt_kind", [(False, "float"), (True, "optax_sgd")],
                         ids=["vector-float_lr", "dict-optax_sgd"])
def test_quadratic_closed_forms_float64(as_dict, inner_opt_kind):
    alpha, k = 0.3, 3
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        support, query = quad_task(rng, k)
        phi = rng.normal(size=DIM)
        ref = quad_closed_form(phi, support, query, alpha)
        # The test can tell the order of the inner steps apart: the reversed product differs.
        rev = np.eye(DIM)
        for a in support["A"][::-1]:
            rev = (np.eye(DIM) - alpha * a) @ rev
        assert rel_err(rev.T @ ref["fomaml"], ref["maml"]) > 1e-3

        params = jax.tree_util.tree_map(jnp.asarray, unflat(phi, as_dict))
        sup = jax.tree_util.tree_map(jnp.asarray, support)
        qry = jax.tree_util.tree_map(jnp.asarray, query)
        inner_opt = alpha if inner_opt_kind == "float" else optax.sgd(alpha)
        for name, key in [("adapt", "adapted"), ("maml", "maml"), ("fomaml", "fomaml"),
                          ("reptile", "reptile")]:
            out = call(name, params, sup, qry, inner_opt)
            assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(params)
            for leaf in jax.tree_util.tree_leaves(out):
                assert leaf.dtype == jnp.float64
            assert_close_tree(out, unflat(ref[key], as_dict), 1e-12)


# --- 2. Reptile with one inner step is SGD on the task loss (k = 1, Sec. 5) -------------

def tanh_loss(params, batch):
    h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])
    return 0.5 * jnp.mean((h @ params["w2"] - batch["y"]) ** 2)


def tanh_problem(rng, k, n=6, tasks=None):
    lead = () if tasks is None else (tasks,)
    params = {"w1": rng.normal(size=(2, 3)), "b1": rng.normal(size=3),
              "w2": rng.normal(size=3)}
    support = {"x": rng.normal(size=(*lead, k, n, 2)), "y": rng.normal(size=(*lead, k, n))}
    query = {"x": rng.normal(size=(*lead, n, 2)), "y": rng.normal(size=(*lead, n))}
    return params, support, query


def as_jnp(tree, dtype=None):
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), tree)


@pytest.mark.parametrize("use_x64", [False, True], ids=["f32", "f64"])
def test_reptile_one_step_is_sgd(use_x64):
    alpha = 0.05
    with x64(use_x64):
        dtype = jnp.float64 if use_x64 else jnp.float32
        params, support, _ = tanh_problem(np.random.default_rng(1), k=1)
        params, support = as_jnp(params, dtype), as_jnp(support, dtype)
        direction = fometa.reptile_grad(tanh_loss, params, support, alpha)
        expected = jax.grad(tanh_loss)(params, jax.tree_util.tree_map(lambda x: x[0], support))
        scaled = jax.tree_util.tree_map(lambda d: d / alpha, direction)
        for leaf in jax.tree_util.tree_leaves(scaled):
            assert leaf.dtype == dtype
        assert_close_tree(scaled, expected, 1e-10 if use_x64 else 1e-4)


# --- 4. Adam inner loop against a hand-written Adam -------------------------------------

# b1 is traced (an argument of the jitted functions), so every b1 shares one compile.
ADAM_KW = dict(lr=0.05, b2=0.99, eps=1e-8, eps_root=1e-12)  # eps_root > 0: differentiable


def make_adam(b1):
    return optax.adam(ADAM_KW["lr"], b1=b1, b2=ADAM_KW["b2"], eps=ADAM_KW["eps"],
                      eps_root=ADAM_KW["eps_root"])


def adam_ref(loss_fn, params, support, state, b1, lr, b2, eps, eps_root):
    """Adam written out by hand (no optax). state = (count, mu, nu); returns (params, state)."""
    count, mu, nu = state
    tmap = jax.tree_util.tree_map
    for i in range(jax.tree_util.tree_leaves(support)[0].shape[0]):
        g = jax.grad(loss_fn)(params, tmap(lambda x: x[i], support))
        mu = tmap(lambda m, gg: b1 * m + (1 - b1) * gg, mu, g)
        nu = tmap(lambda v, gg: b2 * v + (1 - b2) * gg * gg, nu, g)
        count = count + 1
        params = tmap(lambda p, m, v: p - lr * (m / (1 - b1 ** count)) / (
            jnp.sqrt(v / (1 - b2 ** count) + eps_root) + eps), params, mu, nu)
    return params, (count, mu, nu)


@functools.lru_cache(maxsize=None)
def jitted_ref_task(algorithm):
    """Reference meta-gradient, final (count, mu, nu) and adapted params for one task of
    `tanh_loss` with an Adam inner loop; jitted (eager second order is slow) and cached."""
    @jax.jit
    def ref(params, support, query, state, b1):
        def adapted_of(p):
            return adam_ref(tanh_loss, p, support, state, b1, **ADAM_KW)

        adapted, final = adapted_of(params)
        if algorithm == "maml":
            grad = jax.grad(lambda p: tanh_loss(adapted_of(p)[0], query))(params)
        elif algorithm == "fomaml":
            grad = jax.grad(tanh_loss)(adapted, query)
        else:
            grad = jax.tree_util.tree_map(lambda p, w: p - w, params, adapted)
        return grad, final, adapted
    return ref


def adam_state(opt, params, count, mu, nu):
    """`opt.init(params)` with the Adam moments replaced (a non-initial, carried state)."""
    state = opt.init(params)
    return (state[0]._replace(count=jnp.asarray(count, jnp.int32), mu=mu, nu=nu),) + state[1:]


def get_adam(state):
    return (optax.tree_utils.tree_get(state, "count"), optax.tree_utils.tree_get(state, "mu"),
            optax.tree_utils.tree_get(state, "nu"))


@jax.jit
def run_all_adam(params, support, query, inner_state, b1):
    """Every fometa entry point on one task with an Adam inner loop, in one compile."""
    opt, out = make_adam(b1), {}
    for algorithm in ALGOS:
        args = (support,) if algorithm == "reptile" else (support, query)
        out[algorithm] = CONTRACT[algorithm](tanh_loss, params, *args, opt,
                                             inner_state=inner_state)
        out[algorithm + "_with_state"] = CONTRACT[algorithm](
            tanh_loss, params, *args, opt, inner_state=inner_state, return_state=True)
    out["adapt"] = fometa.adapt(tanh_loss, params, support, opt, inner_state=inner_state,
                                return_state=True)
    return out


@pytest.mark.parametrize("start", ["fresh", "carried"])
@pytest.mark.parametrize("b1", [0.0, 0.9])
def test_adam_inner_matches_hand_written_adam(b1, start):
    k = 3
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        params, support, query = tanh_problem(rng, k=k)
        params, support, query = as_jnp(params), as_jnp(support), as_jnp(query)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        if start == "fresh":  # inner_state=None: fometa calls opt.init itself
            count0, mu0, nu0, inner_state = 0, zeros, zeros, None
        else:
            count0 = 4
            mu0 = jax.tree_util.tree_map(lambda p: 0.1 * jnp.cos(p), params)
            nu0 = jax.tree_util.tree_map(lambda p: 0.01 * (1 + jnp.sin(p) ** 2), params)
            inner_state = adam_state(make_adam(b1), params, count0, mu0, nu0)
        state0 = (jnp.asarray(count0, jnp.int32), mu0, nu0)
        b1_arr = jnp.asarray(b1)
        out = run_all_adam(params, support, query, inner_state, b1_arr)
        for algorithm in ALGOS:
            ref_grad, (count, mu, nu), ref_adapted = jitted_ref_task(algorithm)(
                params, support, query, state0, b1_arr)
            assert_close_tree(out[algorithm], ref_grad, 1e-9)
            grad2, final = out[algorithm + "_with_state"]
            assert_close_tree(grad2, ref_grad, 1e-9)
            assert jax.tree_util.tree_structure(final) == jax.tree_util.tree_structure(
                make_adam(b1).init(params))
            f_count, f_mu, f_nu = get_adam(final)
            assert f_count.dtype == jnp.int32 and f_count.shape == ()
            assert int(f_count) == count0 + k == int(count)
            assert_close_tree(f_mu, mu, 1e-9)
            assert_close_tree(f_nu, nu, 1e-9)
        adapted, final = out["adapt"]
        assert_close_tree(adapted, ref_adapted, 1e-12)
        assert int(get_adam(final)[0]) == count0 + k
        assert_close_tree(get_adam(final)[2], nu, 1e-9)


# --- 5. vmap over tasks == loop over tasks == closed form; jit == eager -----------------

@pytest.mark.parametrize("algorithm", ALGOS)
def test_vmap_over_tasks_matches_loop(algorithm):
    alpha, k, tasks = 0.2, 2, 3
    rng = np.random.default_rng(3)
    support, query = quad_task(rng, k, tasks)
    phi = rng.normal(size=DIM)
    ref = quad_closed_form_batch(phi, support, query, alpha)[algorithm]
    params, sup, qry = (as_jnp(unflat(phi, True), jnp.float32), as_jnp(support, jnp.float32),
                        as_jnp(query, jnp.float32))

    def one(s, q):
        return call(algorithm, params, s, q, alpha)

    batched = jax.vmap(one)(sup, qry)  # eager
    jitted = jax.jit(jax.vmap(one))(sup, qry)
    one_jit = jax.jit(one)  # one compile for the loop
    loop = [one_jit(jax.tree_util.tree_map(lambda x: x[t], sup),
                    jax.tree_util.tree_map(lambda x: x[t], qry)) for t in range(tasks)]
    loop = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *loop)
    for leaf in jax.tree_util.tree_leaves(batched):
        assert leaf.dtype == jnp.float32 and leaf.shape[0] == tasks
    assert_close_tree(batched, loop, 1e-6)
    assert_close_tree(jitted, batched, 1e-6)
    assert_close_tree(batched, unflat(ref, True), 1e-5)


@pytest.mark.parametrize("algorithm, jit", [("maml", True), ("fomaml", True), ("reptile", True),
                                             ("fomaml", False)])
def test_meta_learner_step_matches_hand_computed(algorithm, jit):
    alpha, k, tasks = 0.2, 2, 3
    rng = np.random.default_rng(4)
    support, query = quad_task(rng, k, tasks)
    phi = rng.normal(size=DIM)
    ref = quad_closed_form_batch(phi, support, query, alpha)
    # Reptile's documented default outer optimizer is reptile_outer(0.1), i.e. SGD(0.1).
    # MAML's and FOMAML's default, Adam(1e-3), would step by about -1e-3 * sign(g) and hide
    # the gradient's size, so those get an explicit SGD (and a check of the default).
    expected = phi - 0.1 * ref[algorithm].mean(0)
    outer = None if algorithm == "reptile" else optax.sgd(0.1)
    learner = fometa.meta_learner(algorithm, quad_loss, alpha, outer)
    state = learner.init(as_jnp(unflat(phi, True), jnp.float32))
    if algorithm != "reptile":
        default = fometa.meta_learner(algorithm, quad_loss, alpha).init(state.params)
        assert jax.tree_util.tree_structure(default.outer_state) == \
            jax.tree_util.tree_structure(optax.adam(1e-3).init(state.params))
    step = jax.jit(learner.step) if jit else learner.step
    new, metrics = step(state, fometa.Task(as_jnp(support, jnp.float32),
                                           as_jnp(query, jnp.float32)))
    assert_close_tree(new.params, unflat(expected, True), 1e-5)
    assert new.step.dtype == jnp.int32 and int(new.step) == 1
    assert set(metrics) == {"support_loss", "query_loss"}
    for name in metrics:
        assert metrics[name].shape == () and metrics[name].dtype == jnp.float32
        np.testing.assert_allclose(metrics[name], ref[name].mean(), rtol=1e-5)
    # learner.adapt: the SGD inner loop from the new params.
    t0 = {key: v[0] for key, v in support.items()}
    adapted = learner.adapt(new, as_jnp(t0, jnp.float32))
    ref_adapted = quad_closed_form(np.asarray(flat(new.params), np.float64), t0,
                                   {key: v[0] for key, v in query.items()}, alpha)["adapted"]
    assert_close_tree(adapted, unflat(ref_adapted, True), 1e-5)


# --- 6. every contract function under jit / vmap / x64 ---------------------------------

# "vmap" is jit(vmap(.)) over tasks: eager vmap is covered by the tests above, and is slow.
@pytest.mark.parametrize("transform, mode", [
    ("eager", "f32"), ("eager", "x64_f64"), ("jit", "f32"), ("jit", "x64_f64"),
    ("jit", "x64_f32"), ("vmap", "f32"), ("vmap", "x64_f64"), ("vmap", "x64_f32")])
@pytest.mark.parametrize("name", ["adapt", "maml", "fomaml", "reptile"])
def test_transforms_and_dtypes(name, transform, mode):
    alpha, k, tasks = 0.2, 2, 2
    key = "adapted" if name == "adapt" else name
    dtype = jnp.float64 if mode == "x64_f64" else jnp.float32
    with x64(mode != "f32"):
        rng = np.random.default_rng(5)
        batched = transform == "vmap"
        support, query = quad_task(rng, k, tasks if batched else None)
        phi = rng.normal(size=DIM)
        params = as_jnp(unflat(phi, True), dtype)
        sup, qry = as_jnp(support, dtype), as_jnp(query, dtype)

        def f(s, q):
            return call(name, params, s, q, alpha)

        if transform == "jit":
            out = jax.jit(f)(sup, qry)
        elif batched:
            out = jax.jit(jax.vmap(f))(sup, qry)
        else:
            out = f(sup, qry)
        ref = (quad_closed_form_batch if batched else quad_closed_form)(
            phi, support, query, alpha)[key]
        lead = (tasks,) if batched else ()
        assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(params)
        for leaf, p in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(params)):
            assert leaf.dtype == dtype and leaf.shape == lead + p.shape
        assert_close_tree(out, unflat(ref, True), 1e-12 if dtype == jnp.float64 else 1e-5)


# --- 7. carry_inner_state (and tasks_at_once, checked against the same references) ------

@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_tasks_at_once_must_be_a_whole_number(bad):
    with pytest.raises(ValueError, match="tasks_at_once must be a whole number >= 1"):
        fometa.meta_learner("fomaml", tanh_loss, 0.1, tasks_at_once=bad)


def test_tasks_at_once_is_for_parallel_tasks():
    with pytest.raises(ValueError, match="sequential_tasks=True they run one after another"):
        fometa.meta_learner("fomaml", tanh_loss, 0.1, tasks_at_once=1, sequential_tasks=True)


def _batched_dots(jaxpr) -> int:
    """dot_generals with batch dimensions in `jaxpr` and every jaxpr nested in it."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (_, _), (lhs_batch, _) = eqn.params["dimension_numbers"]
            count += bool(lhs_batch)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    count += _batched_dots(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    count += _batched_dots(sub)
    return count


def test_one_task_at_a_time_is_unbatched():
    # tasks_at_once=1 maps each task as it is: no product with a batch axis (a vmap of one
    # task would give every per-task product one of size 1), where the vmap of all has them.
    rng = np.random.default_rng(7)
    params, support, query = as_jnp(tanh_problem(rng, k=3, tasks=4))
    counts = {}
    for at_once in (1, None):
        learner = fometa.meta_learner("maml", tanh_loss, 0.1, tasks_at_once=at_once)
        jaxpr = jax.make_jaxpr(learner.step)(learner.init(params), fometa.Task(support, query))
        counts[at_once] = _batched_dots(jaxpr.jaxpr)
    assert counts[1] == 0 and counts[None] > 0, counts


@pytest.mark.parametrize("algorithm, carry, at_once", [
    ("maml", True, None), ("fomaml", True, None), ("reptile", True, None),
    ("reptile", False, None), ("maml", True, 1), ("fomaml", True, 2), ("reptile", True, 2)])
def test_carry_inner_state(algorithm, carry, at_once):
    # Shapes as in the Adam test above, so the jitted references are shared. Whether tasks
    # start fresh does not depend on the algorithm; whether the final states come back
    # does (MAML returns them through value_and_grad's aux), hence the three carry cases.
    # tasks_at_once (1, or 2 of the 3 tasks and then the last) must give the same step.
    b1, outer_lr, k, tasks = 0.9, 0.5, 3, 3
    tmap = jax.tree_util.tree_map
    with jax.enable_x64(True):
        rng = np.random.default_rng(6)
        params, support, query = tanh_problem(rng, k=k, tasks=tasks)
        params, support, query = as_jnp(params), as_jnp(support), as_jnp(query)
        inner = make_adam(b1)
        learner = fometa.meta_learner(algorithm, tanh_loss, inner, optax.sgd(outer_lr),
                                      carry_inner_state=carry, tasks_at_once=at_once)
        state = learner.init(params)
        step = jax.jit(learner.step)
        zeros = tmap(jnp.zeros_like, params)
        ref_params, ref_start = params, (jnp.asarray(0, jnp.int32), zeros, zeros)
        ref = jitted_ref_task(algorithm)
        for it in range(2):
            per_task = [ref(ref_params, tmap(lambda x: x[t], support),
                            tmap(lambda x: x[t], query), ref_start, jnp.asarray(b1))
                        for t in range(tasks)]
            grads, (counts, mus, nus), _ = tmap(lambda *xs: np.stack(xs), *per_task)
            ref_params = tmap(lambda p, g: p - outer_lr * g.mean(0), ref_params, grads)
            assert np.all(counts == counts[0])
            mean_final = (jnp.asarray(counts[0]), tmap(lambda m: m.mean(0), mus),
                          tmap(lambda v: v.mean(0), nus))
            if carry:
                ref_start = mean_final
            state, _ = step(state, fometa.Task(support, query))
            assert_close_tree(state.params, ref_params, 1e-9)
            assert jax.tree_util.tree_structure(state.inner_state) == \
                jax.tree_util.tree_structure(inner.init(params))
            count, mu, nu = get_adam(state.inner_state)
            assert count.dtype == jnp.int32 and count.shape == ()
            if carry:
                assert int(count) == k * (it + 1)
                assert_close_tree(mu, mean_final[1], 1e-9)
                assert_close_tree(nu, mean_final[2], 1e-9)
            else:  # stays at init(params): zero moments, count 0
                assert int(count) == 0
                for leaf in jax.tree_util.tree_leaves((mu, nu)):
                    assert not np.any(np.asarray(leaf))
        # learner.adapt starts from the carried (or fresh) state too.
        s0 = tmap(lambda x: x[0], support)
        ref_adapted, _ = adam_ref(tanh_loss, state.params, s0, ref_start, b1, **ADAM_KW)
        assert_close_tree(learner.adapt(state, s0), ref_adapted, 1e-10)


@pytest.mark.parametrize("algorithm", ALGOS)
def test_sequential_tasks_chain_the_inner_state(algorithm):
    """sequential_tasks: the paper's code runs a meta-batch's tasks one after another through
    one Adam state (reptile.py: the optimizer's slots are not part of the exported model
    state); each task still starts from phi, and the last task's final state carries on."""
    b1, outer_lr, k, tasks = 0.9, 0.5, 3, 3
    tmap = jax.tree_util.tree_map
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        params, support, query = tanh_problem(rng, k=k, tasks=tasks)
        params, support, query = as_jnp(params), as_jnp(support), as_jnp(query)
        learner = fometa.meta_learner(algorithm, tanh_loss, make_adam(b1), optax.sgd(outer_lr),
                                      carry_inner_state=True, sequential_tasks=True)
        state = learner.init(params)
        step = jax.jit(learner.step)
        zeros = tmap(jnp.zeros_like, params)
        ref_params, ref_state = params, (jnp.asarray(0, jnp.int32), zeros, zeros)
        ref = jitted_ref_task(algorithm)
        for it in range(2):
            grads = []
            for t in range(tasks):
                grad, ref_state, _ = ref(ref_params, tmap(lambda x: x[t], support),
                                         tmap(lambda x: x[t], query), ref_state, jnp.asarray(b1))
                grads.append(grad)
            ref_params = tmap(lambda p, *g: p - outer_lr * np.mean(g, axis=0), ref_params, *grads)
            state, _ = step(state, fometa.Task(support, query))
            assert_close_tree(state.params, ref_params, 1e-9)
            count, mu, nu = get_adam(state.inner_state)
            assert int(count) == k * tasks * (it + 1)  # 9 steps a meta-iteration, not 3
            assert_close_tree(mu, ref_state[1], 1e-9)
            assert_close_tree(nu, ref_state[2], 1e-9)


def proximal(lam):
    """A transformation whose state depends on the params it is initialised with: it adds
    lam * (p - anchor), anchor = the params given to init (a proximal pull, as in iMAML)."""
    def init(params):
        return params

    def update(updates, anchor, params):
        return jax.tree_util.tree_map(lambda g, p, a: g + lam * (p - a), updates, params,
                                      anchor), anchor

    return optax.GradientTransformation(init, update)


@pytest.mark.parametrize("carry", [True, False], ids=["carry", "fresh"])
def test_fresh_inner_state_is_init_of_current_params(carry):
    """carry_inner_state=False: each step's tasks start from inner_opt.init(current params),
    not from the state made at learner.init; True: the (mean) state is kept. Closed form
    for SGD on L_j(p) + lam/2 |p - anchor|^2 with quadratic L_j."""
    alpha, lam, eps, k, tasks = 0.2, 0.7, 0.5, 2, 2
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        support, query = quad_task(rng, k, tasks)
        phi0 = rng.normal(size=DIM)
        inner = optax.chain(proximal(lam), optax.sgd(alpha))
        learner = fometa.meta_learner("reptile", quad_loss, inner, fometa.reptile_outer(eps),
                                      carry_inner_state=carry)
        state = learner.init(jnp.asarray(phi0))
        step = jax.jit(learner.step)
        phi = phi0.copy()
        for _ in range(2):
            anchor = phi0 if carry else phi
            ws = []
            for t in range(tasks):
                p = phi.copy()
                for a, c in zip(support["A"][t], support["c"][t]):
                    p = p - alpha * (a @ (p - c) + lam * (p - anchor))
                ws.append(p)
            phi = phi + eps * (np.mean(ws, 0) - phi)  # phi <- phi + eps mean(W - phi)
            state, _ = step(state, fometa.Task(as_jnp(support), as_jnp(query)))
            assert rel_err(state.params, phi) < 1e-12
            assert rel_err(state.inner_state[0], phi0) < 1e-12  # kept or never replaced


# --- 8. programmer errors --------------------------------------------------------------

@pytest.mark.parametrize("name", ["adapt", "maml", "fomaml", "reptile"])
def test_mismatched_support_axes_raise(name):
    params = jnp.zeros(DIM)
    query = {"A": jnp.eye(DIM), "c": jnp.zeros(DIM)}
    bad = {"A": jnp.broadcast_to(jnp.eye(DIM), (3, DIM, DIM)), "c": jnp.zeros((2, DIM))}
    with pytest.raises(ValueError, match="leading axis"):
        call(name, params, bad, query, 0.1)
    scalar_leaf = {"A": jnp.broadcast_to(jnp.eye(DIM), (3, DIM, DIM)), "c": jnp.asarray(0.0)}
    with pytest.raises(ValueError):
        call(name, params, scalar_leaf, query, 0.1)
    with pytest.raises(ValueError):
        call(name, params, {}, query, 0.1)


@pytest.mark.parametrize("bad_opt", ["0.1", None, True, [0.1], jnp.ones(2), optax.adam],
                         ids=["str", "none", "bool", "list", "vector", "factory"])
def test_wrong_inner_opt_type_raises(bad_opt):
    support = {"A": jnp.broadcast_to(jnp.eye(DIM), (2, DIM, DIM)), "c": jnp.zeros((2, DIM))}
    query = {"A": jnp.eye(DIM), "c": jnp.zeros(DIM)}
    for name in ["adapt", "maml", "fomaml", "reptile"]:
        with pytest.raises(TypeError):
            call(name, jnp.zeros(DIM), support, query, bad_opt)
    with pytest.raises(TypeError):
        fometa.meta_learner("reptile", quad_loss, bad_opt)


def test_unknown_algorithm_raises():
    with pytest.raises(ValueError, match="unknown algorithm"):
        fometa.meta_learner("reptil", quad_loss, 0.1)
    support = {"A": jnp.broadcast_to(jnp.eye(DIM), (2, DIM, DIM)), "c": jnp.zeros((2, DIM))}
    opt = optax.sgd(0.1)
    with pytest.raises(ValueError, match="unknown algorithm"):
        meta_gradient("MAML", quad_loss, jnp.zeros(DIM), support, None, opt,
                      opt.init(jnp.zeros(DIM)))


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_missing_query_raises(algorithm):
    learner = fometa.meta_learner(algorithm, quad_loss, 0.1)
    support = {"A": jnp.broadcast_to(jnp.eye(DIM), (3, 2, DIM, DIM)),
               "c": jnp.zeros((3, 2, DIM))}
    with pytest.raises(ValueError, match="query"):
        learner.step(learner.init(jnp.zeros(DIM)), fometa.Task(support, None))


# --- zero inner steps -----------------------------------------------------------------

def test_zero_inner_steps():
    """k = 0: adapt is the identity, MAML = FOMAML = the query gradient at params, Reptile 0."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(8)
        support, query = quad_task(rng, 0)
        phi = rng.normal(size=DIM)
        params, sup, qry = as_jnp(unflat(phi, True)), as_jnp(support), as_jnp(query)
        g = query["A"] @ (phi - query["c"])
        assert_close_tree(call("adapt", params, sup, qry, 0.1), unflat(phi, True), 0)
        for name, ref in [("maml", g), ("fomaml", g), ("reptile", None)]:
            out = call(name, params, sup, qry, 0.1)
            if ref is None:
                assert all(not np.any(np.asarray(x)) for x in jax.tree_util.tree_leaves(out))
            else:
                assert_close_tree(out, unflat(ref, True), 1e-14)
