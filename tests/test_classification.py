"""The on-device episode sampler and the two evaluation modes."""

import collections
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import fometa
from fometa.tasks.classification import FewShotTasks, accuracies, cross_entropy, sample_episode
from fometa.tasks.sampling import FLOYD_MAX, distinct

# One pytest-xdist worker runs this module: its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("classification")


C, N, S = 12, 6, 5  # classes, examples per class, image side


@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(0).randint(0, 256, (C, N, S, S, 1)).astype(np.uint8)


def identify(images, x):
    """(class, example, rotation) of a sampled image, found by brute force."""
    target = np.asarray(x)
    for r in range(4):
        rotated = np.rot90(images, r, axes=(2, 3))
        hits = np.argwhere((rotated == target).all(axis=(2, 3, 4)))
        if len(hits):
            assert len(hits) == 1
            return int(hits[0, 0]), int(hits[0, 1]), r
    raise AssertionError("sampled image not found in the split")


@pytest.mark.parametrize("rotate", [False, True])
@pytest.mark.parametrize("jit", [False, True])
def test_train_task_is_balanced_disjoint_and_consistently_labelled(images, rotate, jit):
    tasks = FewShotTasks(jnp.asarray(images), jnp.asarray(images), ways=3, train_shots=4,
                         queries=2, inner_iters=3, inner_batch=4, rotate_train=rotate)
    sample = jax.jit(tasks.train_task) if jit else tasks.train_task
    seen_rotations = set()
    for seed in range(3):
        task = sample(jax.random.PRNGKey(seed))
        assert task.support["x"].shape == (3, 4, S, S, 1) and task.support["x"].dtype == jnp.uint8
        assert task.support["y"].shape == (3, 4) and task.support["y"].dtype == jnp.int32
        assert task.query["x"].shape == (6, S, S, 1) and task.query["y"].shape == (6,)
        # 3 batches of 4 from a pool of 12: exactly one epoch, so each example once.
        sup = [identify(images, x) + (int(y),) for x, y in
               zip(task.support["x"].reshape(-1, S, S, 1), task.support["y"].reshape(-1))]
        qry = [identify(images, x) + (int(y),) for x, y in zip(task.query["x"], task.query["y"])]
        # A rotated character is a class of its own, so identity is (class, example, rotation).
        assert len({s[:3] for s in sup}) == 12                       # no repeats in the pool
        assert not {s[:3] for s in sup} & {q[:3] for q in qry}       # support and query disjoint
        by_label = {}
        for c, _, r, y in sup + qry:
            by_label.setdefault(y, set()).add((c, r))
        assert sorted(by_label) == [0, 1, 2]
        assert all(len(v) == 1 for v in by_label.values())          # one (class, rotation) a label
        assert len(set().union(*by_label.values())) == 3             # distinct per label
        counts = np.bincount([s[3] for s in sup], minlength=3)
        assert counts.tolist() == [4, 4, 4]                           # balanced
        assert np.bincount([q[3] for q in qry]).tolist() == [2, 2, 2]
        seen_rotations |= {s[2] for s in sup}
    if not rotate:
        assert seen_rotations == {0}


@pytest.mark.parametrize("tail", [None, 2])
def test_no_queries_leaves_the_query_out_and_uses_every_image(images, tail):
    """queries=0 (the paper's code: Reptile and FOML draw no training query) gives a None
    query, so a pool may take all N images of a class; Reptile's step does not read it."""
    tasks = FewShotTasks(jnp.asarray(images), jnp.asarray(images), ways=3, train_shots=N,
                         queries=0, inner_iters=3, inner_batch=6, rotate_train=False,
                         tail_shots=tail)
    task = jax.jit(tasks.train_task)(jax.random.PRNGKey(0))
    assert task.query is None
    found = [identify(images, x)[:2] for x in task.support["x"].reshape(-1, S, S, 1)]
    assert len(set(found)) == 3 * N  # every image of the 3 classes once
    loss = lambda p, b: cross_entropy(lambda w, x: x.reshape(len(x), -1) / 255.0 @ w, p, b)
    learner = fometa.meta_learner("reptile", loss, 0.1)
    state = learner.init(jnp.zeros((S * S, 3)))
    batch = jax.tree_util.tree_map(lambda a: a[None], task)
    with_query = batch._replace(query={"x": batch.support["x"][:, 0],
                                       "y": batch.support["y"][:, 0]})
    np.testing.assert_array_equal(learner.step(state, batch)[0].params,
                                  learner.step(state, with_query)[0].params)


def test_rotations_are_classes_of_their_own(images):
    """Asking for all 4 x 12 (class, rotation) pairs yields each exactly once."""
    x, y = sample_episode(jax.random.PRNGKey(1), jnp.asarray(images), 4 * C, 1, rotate=True)
    found = {identify(images, img)[::2] for img in x[:, 0]}
    assert found == {(c, r) for c in range(C) for r in range(4)}
    assert y[:, 0].tolist() == list(range(4 * C))


def test_eval_task_has_one_query_per_class_and_the_support_as_context(images):
    tasks = FewShotTasks(jnp.asarray(images), jnp.asarray(images), ways=4, shots=2,
                         eval_inner_iters=7, eval_inner_batch=3)
    task = tasks.eval_task(jax.random.PRNGKey(0))
    assert task.support["x"].shape == (7, 3, S, S, 1)
    assert task.query["x"].shape == (4, S, S, 1) and sorted(task.query["y"].tolist()) == [0, 1, 2, 3]
    assert task.query["context"].shape == (8, S, S, 1)
    ctx = {identify(images, x)[:2] for x in task.query["context"]}
    used = {identify(images, x)[:2] for x in task.support["x"].reshape(-1, S, S, 1)}
    assert used <= ctx and len(ctx) == 8
    assert not ctx & {identify(images, x)[:2] for x in task.query["x"]}


def draws(draw, n: int, k: int, samples: int) -> np.ndarray:
    """`samples` draws of `draw(key, n, k)`, int32 [samples, k], each k distinct of range(n)."""
    keys = jax.random.split(jax.random.PRNGKey(7), samples)
    out = np.asarray(jax.vmap(lambda key: draw(key, n, k))(keys))
    assert out.dtype == np.int32 and out.min() >= 0 and out.max() < n
    assert all(len(set(row)) == k for row in out)  # distinct in every draw
    return out


def ordered_choice_counts(draw, n: int, k: int, samples: int) -> np.ndarray:
    """How often each ordered choice of k distinct values of range(n) came out of `draw`."""
    counts = collections.Counter(map(tuple, draws(draw, n, k, samples)))
    assert len(counts) <= math.perm(n, k)
    return np.array([counts.get(c, 0) for c in itertools.permutations(range(n), k)])


@pytest.mark.parametrize("n,k", [(6, 3), (5, 5), (FLOYD_MAX + 2, FLOYD_MAX + 1)])
def test_distinct_draws_every_ordered_choice_equally_often(n, k):
    """The law of choice(replace=False): every ordered k of range(n) alike (a chi-square
    test against the uniform law, which Floyd's subset without the shuffle fails), and
    beyond FLOYD_MAX each value at each position alike."""
    if k <= FLOYD_MAX:
        counts = ordered_choice_counts(distinct, n, k, 2000 * math.perm(n, k))
        assert scipy.stats.chisquare(counts).pvalue > 1e-4
        return
    out = draws(distinct, n, k, 20000)
    for position in (0, k - 1):
        assert scipy.stats.chisquare(np.bincount(out[:, position], minlength=n)).pvalue > 1e-4


def test_bad_episode_sizes_raise(images):
    with pytest.raises(ValueError, match="13 ways but the split has only 12 classes"):
        sample_episode(jax.random.PRNGKey(0), jnp.asarray(images), 13, 1, rotate=False)
    with pytest.raises(ValueError, match="7 examples per class but a class has only 6"):
        sample_episode(jax.random.PRNGKey(0), jnp.asarray(images), 2, 7, rotate=False)
    sample_episode(jax.random.PRNGKey(0), jnp.asarray(images), 48, 1, rotate=True)  # 4 x 12


def test_two_evaluation_modes_batch_differently():
    """A fake network that is right only for batches of support + 1, and only in the last
    row: non-transductive accuracy 1, transductive accuracy 1/ways."""
    ways, shots = 5, 2
    labels = jnp.arange(ways)
    query = {"x": labels.astype(jnp.float32)[:, None], "y": labels,
             "context": jnp.full((ways * shots, 1), -1.0)}

    def apply(params, x):
        right = jax.nn.one_hot(x[:, 0].astype(jnp.int32), ways)
        wrong = jax.nn.one_hot(jnp.zeros(x.shape[0], jnp.int32), ways)
        if x.shape[0] == ways * shots + 1:
            return wrong.at[-1].set(right[-1])
        return wrong

    acc = accuracies(apply, None, query)
    assert float(acc["accuracy"]) == 1.0
    assert float(acc["accuracy_transductive"]) == pytest.approx(1 / ways)


def test_cross_entropy_matches_a_closed_form():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    batch = {"x": logits, "y": jnp.array([0, 2])}
    expected = np.mean([-(2 - np.log(np.exp(2) + 1 + np.exp(-1))), np.log(3)])
    assert float(cross_entropy(lambda p, x: x, None, batch)) == pytest.approx(expected, rel=1e-6)
