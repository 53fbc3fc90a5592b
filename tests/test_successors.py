"""Meta-SGD, ANIL, MAML++'s options and iMAML against closed forms and hand-written references."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fometa
from fometa.learned_lr import WithRates
from fometa.learner import multi_step_weights
from fometa.run import resolve
from fometa.run.cli import main
from fometa.run.problems import Problem, algorithm_options, make_problem
from fometa.run.training import initial_state, setup

A = jnp.array([1.0, 2.0, 0.5])   # the support loss's curvature per coordinate
C = jnp.array([0.3, -1.0, 2.0])  # its minimum
B = jnp.array([2.0, 1.0, 1.5])   # the query loss's curvature
D = jnp.array([1.0, 0.5, -0.5])  # its minimum


def quadratic(p, batch):
    """1/2 sum_i a_i (p_i - c_i)^2, with (a, c) the batch."""
    a, c = batch
    return 0.5 * jnp.sum(a * (p - c) ** 2)


def one_task(steps=1):
    support = (jnp.stack([A] * steps), jnp.stack([C] * steps))
    query = (B, D)
    return jax.tree_util.tree_map(lambda x: x[None], fometa.Task(support, query))


def first_grad(learner, params, task):
    """The meta-gradient of one step, recovered from plain SGD(1) as the outer optimizer."""
    state = learner.init(params)
    new, _ = learner.step(state, task)
    return jax.tree_util.tree_map(lambda a, b: a - b, state.params, new.params)


# --- Meta-SGD -------------------------------------------------------------------------------

def test_meta_sgd_rates_gradient_is_the_closed_form():
    # One step p' = p - r * a (p - c); Lq = 1/2 sum b (p' - d)^2.
    # dLq/dr = -b (p' - d) a (p - c);  dLq/dp = b (p' - d) (1 - r a).
    p, r = jnp.array([0.0, 0.5, 1.0]), 0.1
    learner = fometa.meta_learner("meta-sgd", quadratic, r, optax.sgd(1.0))
    grad = first_grad(learner, p, one_task())
    adapted = p - r * A * (p - C)
    np.testing.assert_allclose(grad.rates, -B * (adapted - D) * A * (p - C), rtol=1e-5)
    np.testing.assert_allclose(grad.params, B * (adapted - D) * (1 - r * A), rtol=1e-5)


def test_meta_sgd_rates_change_in_training_and_adapt_uses_them():
    learner = fometa.meta_learner("meta-sgd", quadratic, 0.1, optax.adam(0.01))
    state = learner.init(jnp.zeros(3))
    assert isinstance(state.params, WithRates)
    step = jax.jit(learner.step)
    for _ in range(20):
        state, _ = step(state, one_task())
    rates = state.params.rates
    assert not np.allclose(rates, 0.1)  # the rates are meta-parameters, not constants
    support = one_task().support
    adapted = learner.adapt(state, jax.tree_util.tree_map(lambda x: x[0], support))
    np.testing.assert_allclose(adapted, state.params.params
                               - rates * A * (state.params.params - C), rtol=1e-5)


def test_meta_sgd_random_initial_rates_are_drawn_from_the_range():
    params = {"w": jnp.zeros((50, 40)), "b": jnp.zeros(40)}
    meta = fometa.learned_lr.uniform_rates(jax.random.PRNGKey(0), params, 0.005, 0.1,
                                           "per-parameter")
    rates = np.concatenate([np.ravel(r) for r in jax.tree_util.tree_leaves(meta.rates)])
    assert rates.size == 50 * 40 + 40 and rates.min() >= 0.005 and rates.max() < 0.1
    assert abs(rates.mean() - 0.0525) < 0.003  # uniform: the range's midpoint
    # init keeps rates it is given; a float inner_opt only fills in missing ones.
    learner = fometa.meta_learner("meta-sgd", quadratic, 0.4, optax.sgd(1.0))
    state = learner.init(meta)
    np.testing.assert_array_equal(state.params.rates["w"], meta.rates["w"])
    per_step = fometa.learned_lr.uniform_rates(jax.random.PRNGKey(1), params, 0.1, 0.2,
                                               "per-layer-step", steps=3)
    assert per_step.rates["w"].shape == (3,)


def test_command_draws_initial_rates_from_its_own_key():
    cfg = resolve(algorithm="meta-sgd", inner_lr=0.1, inner_lr_low=0.005, seed=3)
    plain = resolve(algorithm="meta-sgd", inner_lr=0.1, seed=3)
    drawn, fixed = initial_state(cfg, setup(cfg)), initial_state(plain, setup(plain))
    rates = np.concatenate([np.ravel(r) for r in jax.tree_util.tree_leaves(drawn.params.rates)])
    assert rates.min() >= 0.005 and rates.max() < 0.1 and np.unique(rates).size > 100
    for a, b in zip(jax.tree_util.tree_leaves(drawn.params.params),
                    jax.tree_util.tree_leaves(fixed.params.params)):
        np.testing.assert_array_equal(a, b)  # the model's initialisation is unchanged


def test_per_layer_step_rates_take_each_steps_rate():
    # Two steps with rates r0, r1 per tensor: p1 = p - r0 a (p - c), p2 = p1 - r1 a (p1 - c).
    learner = fometa.meta_learner("maml", quadratic, 0.1, optax.sgd(1.0),
                                  learn_inner_lr="per-layer-step", inner_steps=2)
    state = learner.init(jnp.zeros(3))
    state = state._replace(params=WithRates(state.params.params, jnp.array([0.1, 0.4])))
    support = jax.tree_util.tree_map(lambda x: x[0], one_task(2).support)
    p = state.params.params
    p1 = p - 0.1 * A * (p - C)
    np.testing.assert_allclose(learner.adapt(state, support), p1 - 0.4 * A * (p1 - C),
                               rtol=1e-6)
    grad = jax.grad(lambda r: quadratic(
        (lambda q1: q1 - r[1] * A * (q1 - C))(p - r[0] * A * (p - C)), (B, D)))(
            jnp.array([0.1, 0.4]))
    new, _ = learner.step(state, one_task(2))
    np.testing.assert_allclose(state.params.rates - new.params.rates, grad, rtol=1e-5)


# --- ANIL ------------------------------------------------------------------------------------

def two_layer(params, batch):
    x, y = batch
    h = jnp.tanh(x @ params["body"])
    return jnp.mean((h @ params["head"] - y) ** 2)


def test_anil_adapts_the_head_only_and_its_gradient_covers_all():
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {"body": jax.random.normal(keys[0], (3, 4)), "head": jax.random.normal(keys[1], (4,))}
    x, y = jax.random.normal(keys[2], (2, 8, 3)), jax.random.normal(keys[3], (2, 8))
    support, query = (x, y), (x[0], y[0])
    head = fometa.partition.by_path(lambda path: "head" in path)
    learner = fometa.meta_learner("anil", two_layer, 0.3, optax.sgd(1.0), inner_trainable=head)
    state = learner.init(params)
    adapted = learner.adapt(state, support)
    np.testing.assert_array_equal(adapted["body"], params["body"])
    assert not np.allclose(adapted["head"], params["head"])

    def reference(p):  # two SGD steps on the head alone, written out
        h = p["head"]
        for i in range(2):
            h = h - 0.3 * jax.grad(lambda hh: two_layer({"body": p["body"], "head": hh},
                                                         (x[i], y[i])))(h)
        return two_layer({"body": p["body"], "head": h}, query)

    expected = jax.grad(reference)(params)
    task = jax.tree_util.tree_map(lambda a: a[None], fometa.Task(support, query))
    grad = first_grad(learner, params, task)
    for name in ("body", "head"):
        np.testing.assert_allclose(grad[name], expected[name], rtol=2e-5, atol=1e-6)
    assert np.abs(grad["body"]).max() > 0


def test_anil_needs_its_subset():
    with pytest.raises(ValueError, match="inner_trainable"):
        fometa.meta_learner("anil", quadratic, 0.1)


# --- MAML++ ------------------------------------------------------------------------------------

def test_multi_step_weights_follow_maml_plus_plus():
    # HowToTrainYourMAMLPytorch: 1/N each at first; non-final ones fall by (1/N) per anneal,
    # floored at 0.03/N; the last rises by the rest; afterwards the last alone.
    np.testing.assert_allclose(multi_step_weights(5, 0, 100), [0.2] * 5, rtol=1e-6)
    np.testing.assert_allclose(multi_step_weights(5, 50, 100), [0.1] * 4 + [0.6], rtol=1e-6)
    np.testing.assert_allclose(multi_step_weights(5, 99, 100),
                               [0.006] * 4 + [1 - 4 * 0.006], rtol=1e-5)
    np.testing.assert_allclose(multi_step_weights(5, 100, 100), [0, 0, 0, 0, 1])


def test_multi_step_loss_gradient_is_the_weighted_sum_of_steps():
    p, lr = jnp.array([0.0, 0.5, 1.0]), 0.2
    learner = fometa.meta_learner("maml", quadratic, lr, optax.sgd(1.0), multi_step_iters=100)
    grad = first_grad(learner, p, one_task(3))  # meta-iteration 0: weights 1/3 each

    def reference(q):
        total = 0.0
        for _ in range(3):
            q = q - lr * A * (q - C)
            total = total + quadratic(q, (B, D)) / 3
        return total

    np.testing.assert_allclose(grad, jax.grad(reference)(p), rtol=1e-5)


def test_derivative_order_annealing_switches_from_first_to_second_order():
    p, task = jnp.array([0.0, 0.5, 1.0]), one_task(2)
    learner = fometa.meta_learner("maml", quadratic, 0.2, optax.sgd(1.0), first_order_iters=1)
    state = learner.init(p)
    one, _ = learner.step(state, task)
    two, _ = learner.step(one, task)
    support = jax.tree_util.tree_map(lambda x: x[0], task.support)
    query = jax.tree_util.tree_map(lambda x: x[0], task.query)
    np.testing.assert_allclose(p - one.params,
                               fometa.fomaml_grad(quadratic, p, support, query, 0.2), rtol=1e-6)
    np.testing.assert_allclose(one.params - two.params,
                               fometa.maml_grad(quadratic, one.params, support, query, 0.2),
                               rtol=1e-6)
    assert not np.allclose(fometa.fomaml_grad(quadratic, p, support, query, 0.2),
                           fometa.maml_grad(quadratic, p, support, query, 0.2))


# --- MAML++'s per-step batch-norm weights and biases ------------------------------------------

def scaled_quadratic(p, batch):
    """A "norm" scale s multiplies the parameters: 1/2 sum a (s w - c)^2."""
    a, c = batch
    return 0.5 * jnp.sum(a * (p["norm"] * p["w"] - c) ** 2)


def by_hand(w, rows, rates, task_support):
    """The inner loop written out: step k uses scale rows[min(k, K-1)] and rate rates[k]; the
    query loss uses the last step's scale (MAML++: num_step of the last step)."""
    steps = len(task_support[0])
    for k in range(steps):
        s = rows[min(k, len(rows) - 1)]
        batch = (task_support[0][k], task_support[1][k])
        g = jax.grad(lambda w: scaled_quadratic({"w": w, "norm": s}, batch))(w)
        w = w - rates[min(k, len(rates) - 1)] * g
    return w, rows[min(steps, len(rows)) - 1]


@pytest.mark.parametrize("learned", [None, "per-layer-step"])
def test_per_step_values_match_the_inner_loop_written_out(learned):
    steps, lr = 3, 0.2
    support = (jnp.stack([A, B, A]), jnp.stack([C, D, D]))
    query = (B, D)
    task = jax.tree_util.tree_map(lambda x: x[None], fometa.Task(support, query))
    params = {"norm": jnp.array([1.0, 0.8, 1.2]), "w": jnp.array([0.0, 0.5, 1.0])}
    is_norm = fometa.partition.by_path(lambda path: "norm" in path)
    learner = fometa.meta_learner("maml", scaled_quadratic, lr, optax.sgd(1.0),
                                  per_step=is_norm, inner_steps=steps, learn_inner_lr=learned)
    state = learner.init(params)
    grad = jax.tree_util.tree_map(lambda a, b: a - b, state.params,
                                  jax.jit(learner.step)(state, task)[0].params)

    def reference(w, rows, rates):
        adapted, s = by_hand(w, rows, rates, support)
        return scaled_quadratic({"w": adapted, "norm": s}, query)

    rows = jnp.stack([params["norm"]] * steps)
    rates = jnp.full(steps, lr)
    gw, grows, grates = jax.grad(reference, argnums=(0, 1, 2))(params["w"], rows, rates)
    meta = state.params.params  # PerStep.params: the step-0 values (and the rates, if learned)
    got = meta.params if learned else meta
    np.testing.assert_allclose(grad.params.params["w"] if learned else grad.params["w"], gw,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose((grad.params.params if learned else grad.params)["norm"],
                               grows[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad.later[0], grows[1:], rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(grows[1:]).min()) > 0  # every step's value has its own gradient
    if learned:
        np.testing.assert_allclose(grad.params.rates["w"], grates, rtol=1e-5, atol=1e-7)
    assert got["norm"].shape == (3,)
    # Adapting for more steps than values keeps the last value: with distinct rows, the
    # adapted weights are those of the loop written out with row K-1 from step K on.
    rows = jnp.stack([jnp.array([1.0, 0.8, 1.2]), jnp.array([0.9, 1.1, 1.0]),
                      jnp.array([1.3, 0.7, 0.6])])
    state = state._replace(params=fometa.per_step.PerStep(
        meta._replace(params={**got, "norm": rows[0]}) if learned else {**got, "norm": rows[0]},
        (rows[1:],)))
    longer = (jnp.stack([A] * 5), jnp.stack([C] * 5))
    adapted = learner.adapt(state, longer)
    expected, _ = by_hand(params["w"], rows, rates, longer)
    np.testing.assert_allclose(adapted["w"], expected, rtol=1e-5)
    np.testing.assert_allclose(adapted["norm"], rows[-1])


def test_per_step_values_are_refused_where_they_cannot_be_learned():
    is_norm = fometa.partition.by_path(lambda path: "norm" in path)
    for algorithm, extra in (("reptile", {}), ("fomaml", {}), ("maml", {"first_order_iters": 5}),
                             ("maml", {"carry_inner_state": True})):
        with pytest.raises(ValueError, match="second-order"):
            fometa.meta_learner(algorithm, scaled_quadratic, 0.1, per_step=is_norm,
                                inner_steps=2, **extra)
    with pytest.raises(ValueError, match="inner_steps"):
        fometa.meta_learner("maml", scaled_quadratic, 0.1, per_step=is_norm)


def test_second_order_options_are_refused_for_first_order_rules():
    with pytest.raises(ValueError, match="second-order"):
        fometa.meta_learner("reptile", quadratic, 0.1, multi_step_iters=10)


# --- iMAML -------------------------------------------------------------------------------------

def test_imaml_gradient_is_the_implicit_closed_form_and_maml_through_an_exact_solve():
    # Proximal inner problem 1/2 a (p - c)^2 + lam/2 (p - theta)^2, solved exactly by many
    # small steps: phi = (a c + lam theta) / (a + lam); d phi / d theta = lam / (a + lam),
    # so the meta-gradient is lam / (a + lam) * b (phi - d).
    lam, theta, steps = 2.0, jnp.array([0.0, 0.5, 1.0]), 300
    learner = fometa.meta_learner("imaml", quadratic, 0.05, optax.sgd(1.0),
                                  options={"lam": lam, "cg_steps": 10})
    grad = first_grad(learner, theta, one_task(steps))
    phi = (A * C + lam * theta) / (A + lam)
    np.testing.assert_allclose(grad, lam / (A + lam) * B * (phi - D), rtol=1e-4)
    # MAML differentiating through the same inner loop on the proximal objective (theta
    # held as the anchor's value) converges to the same gradient.
    support = (jnp.stack([A] * steps), jnp.stack([C] * steps))

    def through_loop(t):
        prox = lambda p, b: quadratic(p, b) + 0.5 * lam * jnp.sum((p - t) ** 2)
        adapted = fometa.adapt(prox, t, support, 0.05)
        return quadratic(adapted, (B, D))

    np.testing.assert_allclose(grad, jax.grad(through_loop)(theta), rtol=1e-4)


def test_conjugate_gradient_solves_and_matches_jax_scipy_step_by_step():
    # A random SPD system as a pytree of two leaves: n steps solve it (numpy's solve);
    # fewer steps give jax.scipy's cg iterate with the same tolerance; b = 0 gives 0.
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 5))
    a = m @ m.T + 5 * np.eye(5)
    b = rng.normal(size=5)
    split = lambda v: {"u": v[:2], "w": v[2:]}
    matvec = lambda t: split(jnp.asarray(a, jnp.float32)
                             @ jnp.concatenate([t["u"], t["w"]]))
    whole = lambda t: np.concatenate([t["u"], t["w"]])
    rhs = split(jnp.asarray(b, jnp.float32))
    cg = jax.jit(fometa.algorithms.conjugate_gradient, static_argnums=(0, 2))
    np.testing.assert_allclose(whole(cg(matvec, rhs, 5)), np.linalg.solve(a, b), rtol=1e-4)
    for steps in (1, 2, 3):
        expected, _ = jax.scipy.sparse.linalg.cg(matvec, rhs, maxiter=steps)
        np.testing.assert_allclose(whole(cg(matvec, rhs, steps)), whole(expected),
                                   rtol=1e-5, atol=1e-7)
    zero = cg(matvec, split(jnp.zeros(5)), 3)
    assert np.all(whole(zero) == 0)


@pytest.mark.parametrize("hessian_batches", [None, 1, 2])
def test_imaml_hessian_is_the_mean_over_the_chosen_support_batches(hessian_batches):
    # Three support batches of different curvature a_k (minimum c): a numpy reference runs
    # the proximal inner loop, then solves (I + H / lam) g = b (phi - d) with H the mean
    # of the last `hessian_batches` batches' a_k (all three for None); H is diagonal.
    lam, theta, lr = 2.0, np.array([0.0, 0.5, 1.0]), 0.1
    curv = np.stack([np.asarray(A), [0.2, 3.0, 1.0], [1.5, 0.1, 2.5]])
    phi = theta.copy()
    for a in curv:
        phi = phi - lr * (a * (phi - np.asarray(C)) + lam * (phi - theta))
    chosen = curv if hessian_batches is None else curv[-hessian_batches:]
    expected = np.asarray(B) * (phi - np.asarray(D)) / (1 + chosen.mean(0) / lam)
    task = fometa.Task((jnp.asarray(curv, jnp.float32), jnp.stack([C] * 3)), (B, D))
    learner = fometa.meta_learner(
        "imaml", quadratic, lr, optax.sgd(1.0),
        options={"lam": lam, "cg_steps": 3, "hessian_batches": hessian_batches})
    grad = first_grad(learner, jnp.asarray(theta, jnp.float32),
                      jax.tree_util.tree_map(lambda x: x[None], task))
    np.testing.assert_allclose(grad, expected, rtol=1e-5)


@pytest.mark.parametrize("bad", [0, 4, 1.0, True])
def test_imaml_hessian_batches_is_checked(bad):
    learner = fometa.meta_learner("imaml", quadratic, 0.1,
                                  options={"hessian_batches": bad})
    with pytest.raises(ValueError, match=f"hessian_batches must be .* not {bad!r}"):
        learner.step(learner.init(jnp.zeros(3)), one_task(3))


def test_imaml_runs_take_one_hessian_batch_where_every_batch_is_the_whole_support():
    # The problem says whether every inner batch is the whole support (the samplers'
    # `whole_support_batches`, checked below); the run's options follow it.
    cfg = resolve(preset="imaml-omniglot-5w1s")
    whole = Problem(*[None] * 5, "accuracy", {}, whole_support_batches=True)
    assert algorithm_options(cfg, whole) == {"lam": 2.0, "cg_steps": 5, "hessian_batches": 1}
    assert algorithm_options(cfg, whole._replace(whole_support_batches=False)) == {
        "lam": 2.0, "cg_steps": 5}
    assert algorithm_options(resolve(preset="maml-omniglot-5w1s"), whole) == {}
    sine = resolve(preset="reptile-sine", algorithm="imaml")  # 50 points, batches of 10
    assert not make_problem(sine).whole_support_batches
    every_point = resolve(preset="reptile-sine", algorithm="imaml", inner_batch=50)
    assert make_problem(every_point).whole_support_batches


def support_sets(support):
    """Each inner batch's examples as a sorted list of rows (order removed)."""
    x = np.asarray(support["x"]).reshape(support["x"].shape[0], support["x"].shape[1], -1)
    return [sorted(map(tuple, batch)) for batch in x]


@pytest.mark.parametrize("options, whole", [
    ({}, True), ({"replacement": True}, True), ({"inner_batch": 6}, True),
    ({"inner_batch": 2}, False), ({"inner_batch": 3, "tail_shots": 1}, False)])
def test_few_shot_batches_are_the_whole_support_where_the_sampler_says(options, whole):
    images = jax.random.randint(jax.random.PRNGKey(0), (8, 5, 4, 4, 1), 0, 255, jnp.uint8)
    tasks = fometa.FewShotTasks(images, images, ways=3, train_shots=2, queries=1,
                                inner_iters=4, **{"inner_batch": None, **options})
    assert tasks.whole_support_batches == whole
    sets = support_sets(tasks.train_task(jax.random.PRNGKey(1)).support)
    assert all(s == sets[0] for s in sets) == whole


@pytest.mark.parametrize("batch, whole", [(10, True), (5, False)])
def test_sine_batches_are_the_whole_support_where_the_sampler_says(batch, whole):
    tasks = fometa.SineTasks(train_points=10, inner_batch=batch, inner_iters=4,
                             train_on_grid=False)
    assert tasks.whole_support_batches == whole
    sets = support_sets(tasks.train_task(jax.random.PRNGKey(1)).support)
    assert all(s == sets[0] for s in sets) == whole


def test_imaml_memory_is_flat_in_inner_steps_and_maml_grows():
    def temp_bytes(algorithm, steps):
        learner = fometa.meta_learner(algorithm, two_layer, 0.1)
        state = learner.init({"body": jnp.ones((32, 64)), "head": jnp.ones((64,))})
        task = fometa.Task((jnp.ones((1, steps, 64, 32)), jnp.ones((1, steps, 64))),
                           (jnp.ones((1, 64, 32)), jnp.ones((1, 64))))
        compiled = jax.jit(learner.step).lower(state, task).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    imaml = [temp_bytes("imaml", k) for k in (5, 80)]
    maml = [temp_bytes("maml", k) for k in (5, 80)]
    # The support itself grows with the steps (64 x 32 floats a step): allow for it alone.
    support_growth = 75 * 64 * 33 * 4
    assert imaml[1] - imaml[0] <= support_growth
    assert maml[1] - maml[0] > 4 * support_growth


def test_imaml_options_are_checked():
    with pytest.raises(ValueError, match="do not apply"):
        fometa.meta_learner("imaml", quadratic, 0.1, options={"lambda": 1.0})


# --- the command line ------------------------------------------------------------------------

SUCCESSOR_PRESETS = {
    "meta-sgd-omniglot-5w1s": "99.53", "meta-sgd-mini-imagenet-5w5s": "64.03",
    "anil-omniglot-20w1s": "96.2", "anil-mini-imagenet-5w1s": "46.7",
    "mamlpp-mini-imagenet-5w1s": "52.15", "mamlpp-omniglot-20w5s": "99.33",
    "imaml-omniglot-5w1s": "99.50", "imaml-mini-imagenet-5w1s": "49.30",
}


@pytest.mark.parametrize("name, number", SUCCESSOR_PRESETS.items())
def test_presets_show_their_papers_number(name, number, capsys):
    assert main(["presets", name]) == 0
    out = capsys.readouterr().out
    assert f"{number}%" in out
    cfg = resolve(preset=name)
    assert cfg.algorithm == {"meta": "meta-sgd", "anil": "anil", "mamlpp": "maml",
                             "imaml": "imaml"}[name.split("-")[0]]


def test_mamlpp_and_imaml_presets_follow_their_code():
    pp = resolve(preset="mamlpp-omniglot-20w1s")
    assert pp.per_step_bn
    assert (pp.learn_inner_lr, pp.inner_lr, pp.inner_iters, pp.meta_batch, pp.meta_iters,
            pp.multi_step_iters, pp.outer_lr_final, pp.loss_reduction, pp.queries) == (
        "per-layer-step", 0.1, 5, 8, 50000, 5000, 1e-5, "mean", 1)
    im = resolve(preset="imaml-omniglot-5w1s")
    assert (im.inner_lr, im.inner_iters, im.eval_inner_iters, im.meta_batch, im.imaml_lambda,
            im.cg_steps, im.meta_iters) == (0.1, 16, 16, 32, 2.0, 5, 20000)


@pytest.mark.parametrize("argv, words", [
    (["--imaml-lambda", "2"], "applies to algorithms with the option 'lam'"),
    (["--cg-steps", "3", "--algorithm", "maml"], "not 'maml'"),
    (["--learn-inner-lr", "per-parameter"], "second-order algorithms"),
    (["--multi-step-iters", "10", "--algorithm", "fomaml"], "second-order algorithms"),
    (["--algorithm", "meta-sgd", "--inner-optimizer", "adam"], "must be sgd"),
    (["--outer-lr-final", "1e-5"], "anneals --meta-step"),
    (["--algorithm", "imaml", "--imaml-lambda", "0"], "--imaml-lambda 0.0 is not allowed"),
    (["--per-step-bn"], "second-order algorithms"),
    (["--inner-lr-low", "0.01", "--algorithm", "maml"], "applies to learned inner rates"),
    (["--algorithm", "meta-sgd", "--inner-lr-low", "0.5", "--inner-lr", "0.1"],
     "must be below --inner-lr 0.1"),
    (["--per-step-bn", "--algorithm", "maml"], "the sine model has no batch norm"),
    (["--per-step-bn", "--algorithm", "maml", "--first-order-iters", "5"],
     "not with --first-order-iters"),
])
def test_successor_settings_misused_are_one_line_errors(cli_error, argv, words):
    assert words in cli_error(["train", *argv])


def test_successor_options_train_and_resume_from_the_command(tmp_path):
    # (Each algorithm also trains, evaluates and restores on real Omniglot: test_fewshot.py.)
    run = tmp_path / "run"
    argv = ["train", "--algorithm", "maml", "--learn-inner-lr", "per-layer-step",
            "--multi-step-iters", "20", "--first-order-iters", "10", "--outer-lr-final", "1e-5",
            "--meta-iters", "40", "--log-every", "20", "--eval-tasks", "20", "--no-progress",
            "--no-plots", "--run-dir", str(run)]
    assert main(argv) == 0
    first = json.loads((run / "results.json").read_text())["eval"]["mean"]
    assert main(["eval", "--run-dir", str(run)]) == 0  # the checkpoint restores
    assert json.loads((run / "eval.json").read_text())["eval"]["mean"] == first
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["learn_inner_lr"], config["multi_step_iters"]) == ("per-layer-step", 20)
    assert math.isfinite(first)
