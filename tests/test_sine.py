"""Sine-wave regression: the task distribution and the end-to-end result of the paper."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fometa.run import chunk_runner, make_learner, make_problem, resolve, train
from fometa.tasks import SineTasks, epoch_batches


def test_epoch_batches_cycle_through_shuffled_epochs():
    idx = np.asarray(epoch_batches(jax.random.PRNGKey(0), 7, 3, 5))
    assert idx.shape == (5, 3) and idx.dtype == np.int32
    flat = idx.reshape(-1)
    assert sorted(flat[:7]) == list(range(7))       # first epoch: a permutation
    assert sorted(flat[7:14]) == list(range(7))     # second epoch too
    assert len(set(flat[14:])) == 1                 # the start of a third


def test_train_task_shapes_and_values():
    tasks = SineTasks()
    task = tasks.train_task(jax.random.PRNGKey(1))
    assert task.support["x"].shape == (5, 10, 1) and task.query["x"].shape == (10, 1)
    # Five batches of ten from the 50-point grid: the grid, each point once.
    grid = np.linspace(-5, 5, 50)
    np.testing.assert_allclose(np.sort(task.support["x"].reshape(-1)), grid, atol=1e-6)
    amp, phase = tasks.function(jax.random.split(jax.random.PRNGKey(1), 4)[0])
    for batch in (task.support, task.query):
        np.testing.assert_allclose(batch["y"], amp * np.sin(batch["x"] + phase), atol=1e-5)
    assert 0.1 <= float(amp) <= 5 and 0 <= float(phase) <= 2 * math.pi
    # No query points: no query, and the same support (the query's key is its own).
    bare = tasks._replace(query_points=0).train_task(jax.random.PRNGKey(1))
    assert bare.query is None
    np.testing.assert_array_equal(bare.support["x"], task.support["x"])


def test_eval_task_repeats_the_same_shots():
    tasks = SineTasks(eval_shots=10, eval_inner_iters=32)
    task = tasks.eval_task(jax.random.PRNGKey(2))
    x = task.support["x"]
    assert x.shape == (32, 10, 1)
    assert bool(jnp.all(x == x[0])) and len(set(np.asarray(x[0, :, 0]).tolist())) == 10
    assert task.query["x"].shape == (50, 1)


def test_amplitudes_and_phases_cover_their_ranges():
    tasks = SineTasks(phase_range=(0.0, math.pi))
    amp, phase = jax.vmap(tasks.function)(jax.random.split(jax.random.PRNGKey(0), 4000))
    assert 0.1 <= float(amp.min()) < 0.3 and 4.8 < float(amp.max()) <= 5.0
    assert 0 <= float(phase.min()) < 0.1 and math.pi - 0.1 < float(phase.max()) <= math.pi


def test_reptile_beats_joint_training_after_adaptation(tmp_path):
    """Paper Sec. 7: Reptile's initialisation adapts; joint training (k = 1) learns the
    mean function ~0 and stays far off after the same 32 adaptation steps."""
    common = dict(meta_iters=10000, eval_tasks=500, log_every=5000)
    reptile = train(resolve("sine", **common), tmp_path / "reptile", progress=False)
    joint = train(resolve("sine", inner_iters=1, **common), tmp_path / "joint", progress=False)
    r, j = reptile["eval"]["mean"], joint["eval"]["mean"]
    assert r < 0.4 * j, (r, j)
    assert r + reptile["eval"]["ci95"] < j - joint["eval"]["ci95"]


@pytest.mark.parametrize("unroll", [2, 8])
def test_unrolled_chunk_of_meta_iterations_gives_the_same_state(unroll):
    """`chunk_runner(unroll=K)` changes how XLA loops, not what the iterations compute."""
    cfg = resolve("sine", algorithm="maml", meta_batch=3)
    problem = make_problem(cfg)
    learner = make_learner(cfg, problem)
    state = learner.init(problem.init_params(jax.random.PRNGKey(0)))
    iterations = jnp.arange(8, dtype=jnp.int32)
    results = [chunk_runner(learner, problem, 3, jax.random.PRNGKey(1), unroll=u)(
        state, iterations) for u in (1, unroll)]
    (s1, m1), (s2, m2) = results
    assert int(s1.step) == int(s2.step) == 8
    for a, b in zip(jax.tree_util.tree_leaves((s1, m1)), jax.tree_util.tree_leaves((s2, m2))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(jax.tree_util.tree_leaves(s1.params)[0]),
                           np.asarray(jax.tree_util.tree_leaves(state.params)[0]))
