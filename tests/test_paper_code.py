"""What the papers' code computes, written out independently here in numpy: the loss scales
(Reptile's summed cross-entropy with its carried TF Adam; MAML's cross-entropy over K), the
paper's code's first-order MAML (`--foml`, `--foml-tail`) and `--replacement` sampling.

Sources: openai/supervised-reptile (models.py: `minimize(self.loss)` on the unreduced
per-example loss vector, `AdamOptimizer(beta1=0)`; reptile.py: `FOML`, `_mini_batches`) and
cbfinn/maml (utils.py: `xent(...) / FLAGS.update_batch_size`; maml.py: `fast_weights =
weights - update_lr * gradients`).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fometa
from fometa.run import Splits, classification_problem, resolve
from fometa.run.problems import INNER_OPTIMIZERS, LOSS_REDUCTIONS
from fometa.tasks.classification import FewShotTasks, cross_entropy

WAYS, K, DIM = 5, 2, 7  # a task of WAYS classes with K examples each, DIM features


def softmax_task(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(WAYS * K, DIM)).astype(np.float32)
    y = np.repeat(np.arange(WAYS), K).astype(np.int32)
    w = (0.3 * rng.normal(size=(DIM, WAYS))).astype(np.float32)
    b = (0.1 * rng.normal(size=WAYS)).astype(np.float32)
    return {"w": w, "b": b}, {"x": x, "y": y}


def linear(params, x):
    return x @ params["w"] + params["b"]


def per_example_grads(params, batch):
    """d/dparams of each example's cross-entropy for logits x W + b: x^T (softmax - onehot)."""
    x, y = batch["x"].astype(np.float64), batch["y"]
    logits = x @ params["w"].astype(np.float64) + params["b"]
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    delta = p - np.eye(WAYS)[y]
    return {"w": x[:, :, None] * delta[:, None, :], "b": delta}


def tf_adam_step(params, grad, m, v, t, lr, beta1=0.0, beta2=0.999, eps=1e-8):
    """tf.train.AdamOptimizer's update (TF 1.x `_apply_dense`), step t >= 1."""
    lr_t = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad ** 2
    return params - lr_t * m / (np.sqrt(v) + eps), m, v


def test_reptile_sum_loss_step_from_carried_adam_is_the_papers():
    """One inner step of the paper's Reptile: the gradient of the *summed* cross-entropy,
    through Adam (beta1 = 0) whose state was carried from earlier steps. fometa's loss
    with --loss-reduction sum and its inner Adam give the same new parameters."""
    params, batch = softmax_task(0)
    rng = np.random.default_rng(1)
    count = 40  # the carried state's step count and moments
    nu = {k: (0.01 + rng.random(v.shape)).astype(np.float32) ** 2 * 1e-2 for k, v in params.items()}
    grads = per_example_grads(params, batch)
    ref = {}
    for k in params:
        g = grads[k].sum(0)  # the sum over the batch, not the mean
        ref[k], _, _ = tf_adam_step(params[k].astype(np.float64), g, 0.0, nu[k].astype(np.float64),
                                    count + 1, lr=1e-3)
    opt = INNER_OPTIMIZERS["adam"](1e-3, False)
    state = opt.init(params)
    state = (state[0]._replace(count=jnp.asarray(count, jnp.int32),
                               nu=jax.tree_util.tree_map(jnp.asarray, nu)),) + state[1:]
    reduce = LOSS_REDUCTIONS["sum"](K)
    loss = lambda p, b: cross_entropy(linear, p, b, reduce)
    support = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], batch)
    adapted = fometa.adapt(loss, params, support, opt, inner_state=state)
    for k in params:
        # optax applies eps to the bias-corrected sqrt(nu), TF to the raw one: a relative
        # difference of eps / sqrt(nu) ~ 1e-6 here.
        np.testing.assert_allclose(adapted[k], ref[k], rtol=1e-5, atol=1e-8)
    # With the mean instead, the same carried state gives a step of another size.
    mean_adapted = fometa.adapt(lambda p, b: cross_entropy(linear, p, b), params, support, opt,
                                inner_state=state)
    step_sum = np.abs(adapted["w"] - params["w"]).mean()
    step_mean = np.abs(mean_adapted["w"] - params["w"]).mean()
    assert step_mean < 0.5 * step_sum


def test_maml_sum_over_shots_step_is_mamls():
    """MAML's inner SGD step: weights - alpha * d/dw sum_i xent_i / K (utils.xent), which is
    N times the step on the mean cross-entropy."""
    params, batch = softmax_task(2)
    alpha = 0.4
    grads = per_example_grads(params, batch)
    ref = {k: params[k] - alpha * grads[k].sum(0) / K for k in params}
    reduce = LOSS_REDUCTIONS["sum/shots"](K)
    support = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], batch)
    adapted = fometa.adapt(lambda p, b: cross_entropy(linear, p, b, reduce), params, support,
                           INNER_OPTIMIZERS["sgd"](alpha, True))
    for k in params:
        np.testing.assert_allclose(adapted[k], ref[k], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduction, factor", [("mean", 1.0), ("sum", WAYS * 3),
                                               ("sum/shots", WAYS)])
def test_problem_loss_is_the_settings_reduction(reduction, factor):
    """The run wing's classification loss is the mean cross-entropy times the batch size
    (sum) or times the ways (sum over K = train_shots examples per class)."""
    images = np.random.default_rng(0).integers(0, 256, (8, 6, 28, 28, 1), dtype=np.uint8)
    out = {}
    for r in ("mean", reduction):
        cfg = resolve("omniglot", conv="patch", ways=WAYS, shots=1, train_shots=3, queries=1,
                      inner_iters=1, inner_batch=WAYS * 3, loss_reduction=r)
        problem = classification_problem(cfg, Splits(images, images))
        task = jax.jit(problem.train_task)(jax.random.PRNGKey(0))  # (jit: eager is slow)
        params = jax.jit(problem.init_params)(jax.random.PRNGKey(1))
        batch = jax.tree_util.tree_map(lambda a: a[0], task.support)  # 5 ways x 3 shots
        out[r] = float(jax.jit(problem.loss_fn)(params, batch))
        query = jax.jit(problem.eval_task)(jax.random.PRNGKey(2)).query
        accuracy = jax.jit(problem.metric_fn)(params, query)
    assert out[reduction] == pytest.approx(factor * out["mean"], rel=1e-5)
    assert set(accuracy) == {"accuracy", "accuracy_transductive"}


# --- the paper's code's first-order MAML (`FOML`) on quadratic tasks ---------------------

def quadratic(p, batch):
    r = p - batch["c"]
    return 0.5 * r @ batch["A"] @ r


def quad_support(seed, steps, d=4):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(steps, d, d))
    a = m @ np.swapaxes(m, -1, -2) / d + 0.5 * np.eye(d)
    return {"A": a, "c": rng.normal(size=(steps, d))}, rng.normal(size=d)


@pytest.mark.parametrize("steps", [1, 3])
def test_foml_is_the_last_steps_change(steps):
    """FOML's task update is W_k - W_{k-1} (reptile.py: subtract_vars(new, last_backup)),
    so its meta-gradient, applied as phi - eps * grad, is W_{k-1} - W_k."""
    alpha = 0.1
    support, phi = quad_support(3, steps)
    w = [phi]
    for a, c in zip(support["A"], support["c"]):
        w.append(w[-1] - alpha * a @ (w[-1] - c))
    with jax.enable_x64(True):
        grad, _, metrics = fometa.meta_gradient(
            "foml", quadratic, jnp.asarray(phi), jax.tree_util.tree_map(jnp.asarray, support),
            None, optax.sgd(alpha), optax.sgd(alpha).init(jnp.asarray(phi)))
    np.testing.assert_allclose(grad, w[-2] - w[-1], rtol=1e-12)
    r0 = phi - support["c"][0]
    assert float(metrics["support_loss"]) == pytest.approx(0.5 * r0 @ support["A"][0] @ r0)


def test_foml_meta_step_interpolates_towards_the_last_step():
    """The paper's FOML outer step: phi + eps * mean_tasks(W_k - W_{k-1})."""
    alpha, eps, steps = 0.05, 0.5, 2
    tasks = [quad_support(s, steps) for s in (4, 5)]
    phi = tasks[0][1]
    updates = []
    for support, _ in tasks:
        w0 = phi
        w1 = w0 - alpha * support["A"][0] @ (w0 - support["c"][0])
        w2 = w1 - alpha * support["A"][1] @ (w1 - support["c"][1])
        updates.append(w2 - w1)
    ref = phi + eps * np.mean(updates, axis=0)
    with jax.enable_x64(True):
        learner = fometa.meta_learner("foml", quadratic, alpha, fometa.reptile_outer(eps))
        batch = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[s for s, _ in tasks])
        state, _ = learner.step(learner.init(jnp.asarray(phi)), fometa.Task(batch))
    np.testing.assert_allclose(state.params, ref, rtol=1e-12)


# --- inner minibatches: a separate tail, and sampling with replacement ------------------

def test_separate_tail_never_overlaps_the_other_minibatches():
    # Each image is its own index, so a sampled batch says which examples it holds.
    classes, per_class = 6, 9
    images = np.arange(classes * per_class, dtype=np.uint8).reshape(classes, per_class, 1, 1, 1)
    tasks = FewShotTasks(jnp.asarray(images), jnp.asarray(images), ways=3, train_shots=6,
                         queries=1, inner_iters=4, inner_batch=6, tail_shots=2,
                         rotate_train=False)
    for seed in range(5):
        task = jax.jit(tasks.train_task)(jax.random.PRNGKey(seed))
        x, y = np.asarray(task.support["x"]).reshape(4, 6), np.asarray(task.support["y"])
        head, tail = set(x[:3].ravel()), set(x[3])
        assert len(tail) == 6 and not head & tail            # the tail is apart
        assert len(head) <= 3 * 4                            # from 4 examples per class
        assert sorted(np.bincount(y[3]).tolist()) == [2, 2, 2]  # 2 per class, balanced
        assert not (head | tail) & set(np.asarray(task.query["x"]).ravel())


def test_replacement_draws_each_minibatch_independently():
    classes, per_class = 5, 8
    images = np.arange(classes * per_class, dtype=np.uint8).reshape(classes, per_class, 1, 1, 1)
    common = dict(ways=2, train_shots=4, queries=1, inner_iters=8, inner_batch=3,
                  rotate_train=False)
    cycled = FewShotTasks(jnp.asarray(images), jnp.asarray(images), **common)
    drawn = FewShotTasks(jnp.asarray(images), jnp.asarray(images), replacement=True, **common)
    repeats_within_an_epoch = 0
    for seed in range(20):
        for tasks in (cycled, drawn):
            x = np.asarray(tasks.train_task(jax.random.PRNGKey(seed)).support["x"]).reshape(8, 3)
            first = x.ravel()[:8]  # the first 8 of 24 draws from a pool of 8
            if tasks is cycled:
                assert len(set(first)) == 8  # cycling: an epoch is a permutation
            else:
                assert all(len(set(b)) == 3 for b in x)  # distinct within a batch
                repeats_within_an_epoch += len(set(first)) < 8
    assert repeats_within_an_epoch > 10  # independent batches repeat examples early
