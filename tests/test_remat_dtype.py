"""Rematerialised inner loops (`remat`) and bfloat16 mixed precision (`dtype`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fometa
from fometa.algorithms import meta_gradient
from fometa.run import resolve
from fometa.run import Splits, classification_problem, make_learner, make_problem
from fometa.run.problems import uses_remat

ALGOS = ("maml", "fomaml", "reptile")


def small_problem(steps=3, batch=6, tasks=2):
    """A small tanh MLP on random regression tasks: remat does not depend on the network,
    and this keeps the second-order compiles of these tests short."""
    model = fometa.MLP(hidden=(32, 32), out=1, activation="tanh")
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    support = {"x": jax.random.normal(keys[0], (tasks, steps, batch, 4)),
               "y": jax.random.normal(keys[1], (tasks, steps, batch, 1))}
    query = {"x": jax.random.normal(keys[2], (tasks, batch, 4)),
             "y": jax.random.normal(keys[3], (tasks, batch, 1))}

    def loss_fn(p, b):
        return jnp.mean((model.apply(p, b["x"]) - b["y"]) ** 2)

    params = model.init(keys[4], query["x"][0])
    return loss_fn, params, fometa.Task(support, query)


def assert_trees_close(a, b, rtol, atol=0.0):
    """Leafwise allclose; `atol` is relative to the largest magnitude in `b`."""
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    scale = max(float(np.max(np.abs(y))) for y in jax.tree_util.tree_leaves(b))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol * scale)


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("inner", ["sgd", "adam"])
def test_remat_gives_the_same_meta_gradient(algorithm, inner):
    loss_fn, params, tasks = small_problem()
    # eps_root: MAML through Adam's sqrt(nu) is NaN where a gradient is exactly 0.
    opt = optax.sgd(0.1) if inner == "sgd" else optax.adam(0.01, b1=0.0, eps_root=1e-12)
    support, query = jax.tree_util.tree_map(lambda x: x[0], (tasks.support, tasks.query))

    @jax.jit
    def grads(params):
        plain = meta_gradient(algorithm, loss_fn, params, support, query, opt,
                              opt.init(params))
        remat = meta_gradient(algorithm, loss_fn, params, support, query, opt,
                              opt.init(params), remat=True)
        return plain, remat

    plain, remat = grads(params)
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(plain))
    assert_trees_close(remat, plain, rtol=1e-5, atol=1e-5)


def test_adapt_with_remat_differentiates_the_same():
    loss_fn, params, tasks = small_problem()
    support, query = jax.tree_util.tree_map(lambda x: x[0], (tasks.support, tasks.query))

    def query_loss(p, remat):
        return loss_fn(fometa.adapt(loss_fn, p, support, 0.1, remat=remat), query)

    plain = jax.jit(jax.grad(lambda p: query_loss(p, False)))(params)
    remat = jax.jit(jax.grad(lambda p: query_loss(p, True)))(params)
    assert_trees_close(remat, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algorithm", ALGOS)
def test_meta_learner_with_remat_steps_the_same(algorithm):
    loss_fn, params, tasks = small_problem()
    states = {}
    for remat in (False, True):
        learner = fometa.meta_learner(algorithm, loss_fn, 0.1, optax.sgd(1.0), remat=remat)
        state = learner.init(params)
        new, metrics = jax.jit(learner.step)(state, tasks)
        # The meta-gradient itself: params - new params under outer SGD(1).
        states[remat] = (jax.tree_util.tree_map(jnp.subtract, params, new.params), metrics)
    assert_trees_close(states[True], states[False], rtol=1e-5, atol=1e-5)


def test_remat_shrinks_maml_memory_with_many_inner_steps():
    """Without remat MAML keeps every inner step's activations for the backward pass."""
    loss_fn, params, tasks = small_problem(steps=50, batch=64, tasks=1)
    temp = {}
    for remat in (False, True):
        learner = fometa.meta_learner("maml", loss_fn, 0.1, remat=remat)
        compiled = jax.jit(learner.step).lower(learner.init(params), tasks).compile()
        temp[remat] = compiled.memory_analysis().temp_size_in_bytes
    assert temp[True] < 0.5 * temp[False], temp


@pytest.mark.parametrize("algorithm, inner_iters, remat, expected", [
    ("maml", 1, True, True), ("maml", 2, False, False),
    ("maml", 1, None, False),    # one inner step: remat only adds work (measured)
    ("maml", 2, None, True),     # two or more, second order, on the CPU: on by default
    ("fomaml", 2, None, False),  # nothing is differentiated through the inner loop
])
def test_config_remat_reaches_the_learner(algorithm, inner_iters, remat, expected):
    cfg = resolve("sine", algorithm=algorithm, meta_batch=2, inner_batch=None, train_shots=5,
                  inner_iters=inner_iters, remat=remat)
    problem = make_problem(cfg)
    learner = make_learner(cfg, problem)
    jaxpr = str(jax.make_jaxpr(learner.step)(
        learner.init(problem.init_params(jax.random.PRNGKey(0))),
        jax.vmap(problem.train_task)(jax.random.split(jax.random.PRNGKey(1), 2))))
    assert ("checkpoint" in jaxpr or "remat" in jaxpr) == expected
    assert uses_remat(cfg, "cpu") == expected
    assert uses_remat(cfg, "gpu") == bool(remat)  # unmeasured on GPUs: off unless asked


def _floats(tree):
    return [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


def _tasks(problem, n, seed=1):
    return jax.vmap(problem.train_task)(jax.random.split(jax.random.PRNGKey(seed), n))


@pytest.mark.parametrize("algorithm", ALGOS)
def test_bfloat16_sine_is_close_to_float32_and_keeps_float32_state(algorithm):
    out = {}
    for dtype in ("float32", "bfloat16"):
        cfg = resolve("sine", algorithm=algorithm, meta_batch=2, dtype=dtype)
        problem = make_problem(cfg)
        learner = make_learner(cfg, problem)
        state = learner.init(problem.init_params(jax.random.PRNGKey(0)))
        tasks = _tasks(problem, 2)
        new, metrics = jax.jit(learner.step)(state, tasks)
        for leaf in _floats((new.params, new.outer_state, new.inner_state)):
            assert leaf.dtype == jnp.float32
        for value in metrics.values():
            assert value.dtype == jnp.float32
        loss = problem.loss_fn(state.params, jax.tree_util.tree_map(lambda x: x[0, 0],
                                                                    tasks.support))
        assert loss.dtype == jnp.float32
        out[dtype] = (loss, metrics, new.params)
    (l32, m32, p32), (l16, m16, p16) = out["float32"], out["bfloat16"]
    np.testing.assert_allclose(l16, l32, rtol=3e-2)
    for k in m32:
        np.testing.assert_allclose(m16[k], m32[k], rtol=3e-2, atol=1e-3)
    assert_trees_close(p16, p32, rtol=5e-2, atol=1e-2)


def test_bfloat16_network_computes_in_bfloat16():
    images = np.random.default_rng(0).integers(0, 256, (12, 12, 28, 28, 1), dtype=np.uint8)
    splits = Splits(images, images)
    out = {}
    for dtype in ("float32", "bfloat16"):
        cfg = resolve("omniglot", conv="xla", ways=3, shots=2, train_shots=2, queries=1, inner_iters=2,
                      inner_batch=3, eval_inner_iters=2, eval_inner_batch=3, meta_batch=2,
                      dtype=dtype)
        problem = classification_problem(cfg, splits)
        learner = make_learner(cfg, problem)
        state = learner.init(jax.jit(problem.init_params)(jax.random.PRNGKey(0)))
        tasks = _tasks(problem, 2)
        batch = jax.tree_util.tree_map(lambda x: x[0, 0], tasks.support)
        jaxpr = str(jax.make_jaxpr(problem.loss_fn)(state.params, batch))
        assert ("bf16[" in jaxpr) == (dtype == "bfloat16")
        new, metrics = jax.jit(learner.step)(state, tasks)
        for leaf in _floats((new.params, new.outer_state, new.inner_state)):
            assert leaf.dtype == jnp.float32
        out[dtype] = jax.jit(problem.loss_fn)(state.params, batch), metrics
    (l32, m32), (l16, m16) = out["float32"], out["bfloat16"]
    assert l16.dtype == jnp.float32
    np.testing.assert_allclose(l16, l32, rtol=3e-2)
    for k in m32:
        np.testing.assert_allclose(m16[k], m32[k], rtol=5e-2)
