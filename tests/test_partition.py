"""Leaves kept out of the inner and outer updates: a flax model's batch statistics, the body
of an ANIL-style model; per-step dropout keys carried by the support batch."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import fometa
from fometa.partition import by_path, collections, only


class Net(nn.Module):
    @nn.compact
    def __call__(self, x, key):
        h = nn.BatchNorm(use_running_average=False)(nn.Dense(16)(x))
        h = nn.Dropout(0.3, deterministic=False)(nn.relu(h), rng=key)
        return nn.Dense(1, name="head")(h)


net = Net()


def loss_fn(variables, batch):
    # Batch statistics from the current batch; the updated running averages are dropped.
    out, _ = net.apply(variables, batch["x"], batch["key"], mutable=["batch_stats"])
    return jnp.mean((out - batch["y"]) ** 2)


def tasks(seed, n=3, steps=2):
    """n regression tasks; each inner step's batch carries its own dropout key."""
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    x = jax.random.normal(k[0], (n, steps, 8, 2))
    support = {"x": x, "y": jnp.sin(x[..., :1]), "key": jax.random.split(k[1], n * steps)
               .reshape(n, steps, 2)}
    xq = jax.random.normal(k[2], (n, 8, 2))
    query = {"x": xq, "y": jnp.sin(xq[..., :1]), "key": jax.random.split(k[3], n)}
    return fometa.Task(support, query)


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


def test_batch_statistics_stay_out_of_both_loops():
    variables = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jax.random.PRNGKey(1))
    assert set(variables) == {"params", "batch_stats"}
    learner = fometa.meta_learner("maml", loss_fn, 0.1, optax.adam(1e-2),
                                  trainable=collections(("params",)))
    state = learner.init(variables)
    for seed in range(3):
        state, metrics = jax.jit(learner.step)(state, tasks(seed))
    np.testing.assert_array_equal(flat(state.params["batch_stats"]),
                                  flat(variables["batch_stats"]))
    assert not np.allclose(flat(state.params["params"]), flat(variables["params"]))
    # The same meta-steps on the params alone, the statistics closed over as constants.
    fixed = variables["batch_stats"]
    plain = fometa.meta_learner("maml", lambda p, b: loss_fn({"params": p, "batch_stats": fixed}, b),
                                0.1, optax.adam(1e-2))
    ref = plain.init(variables["params"])
    for seed in range(3):
        ref, _ = jax.jit(plain.step)(ref, tasks(seed))
    np.testing.assert_allclose(flat(state.params["params"]), flat(ref.params), rtol=1e-5,
                               atol=1e-7)


def test_dropout_keys_come_with_each_inner_step():
    variables = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jax.random.PRNGKey(1))
    task = jax.tree_util.tree_map(lambda a: a[0], tasks(7, steps=3))
    _, _, losses = fometa.inner_loop(loss_fn, variables, task.support, optax.sgd(0.0),
                                     optax.sgd(0.0).init(variables))
    # A zero learning rate: the losses differ only by the steps' batches and dropout keys.
    same_batch = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a[:1], a.shape), task.support)
    same_batch["key"] = task.support["key"]
    _, _, dropout_only = fometa.inner_loop(loss_fn, variables, same_batch, optax.sgd(0.0),
                                           optax.sgd(0.0).init(variables))
    assert len(set(np.asarray(dropout_only).tolist())) == 3  # three keys, three masks
    assert losses.shape == (3,)


def test_inner_loop_can_adapt_the_head_only():
    variables = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jax.random.PRNGKey(1))
    head = by_path(lambda path: "head" in path)
    learner = fometa.meta_learner("fomaml", loss_fn, 0.5, optax.sgd(0.1),
                                  trainable=collections(("params",)), inner_trainable=head)
    state = learner.init(variables)
    task = jax.tree_util.tree_map(lambda a: a[0], tasks(3))
    adapted = learner.adapt(state, task.support)
    for name, before in variables["params"].items():
        changed = not np.array_equal(flat(adapted["params"][name]), flat(before))
        assert changed == (name == "head"), name
    new, _ = learner.step(state, tasks(3))  # the outer loop changes the body too
    assert not np.array_equal(flat(new.params["params"]["Dense_0"]),
                              flat(variables["params"]["Dense_0"]))


def test_only_keeps_no_state_for_fixed_leaves():
    params = {"a": jnp.ones(3), "b": jnp.ones(2)}
    opt = only(optax.adam(0.1), {"a": True, "b": False})
    updates, _ = opt.update({"a": jnp.ones(3), "b": jnp.ones(2)}, opt.init(params), params)
    assert np.all(np.asarray(updates["b"]) == 0) and np.all(np.asarray(updates["a"]) < 0)
