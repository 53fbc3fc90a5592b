"""A researcher's own problem and the pure functions under hostile input: what would have
been a wrong number, a silent NaN or a traceback from deep inside JAX is a clear error
before anything is compiled, and a run completes without a figure it cannot draw."""

import fractions
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fometa
from fometa.errors import ConfigError, DivergenceError, RunWarning
from fometa.run import (Problem, evaluate_tasks, register_dataset, resolve, setup,
                        summarize, train)
from fometa.run.evaluation import by_steps

MODEL = fometa.MLP(hidden=(8,))


def mse(p, b):
    return jnp.mean((MODEL.apply(p, b["x"]) - b["y"]) ** 2)


def task(key, steps, n=4, queries=5):
    """y = a x: support [steps, n, 1], query [queries, 1]."""
    ka, kx, kq = jax.random.split(key, 3)
    a = jax.random.normal(ka)
    xs, xq = jax.random.normal(kx, (steps, n, 1)), jax.random.normal(kq, (queries, 1))
    return fometa.Task({"x": xs, "y": a * xs}, {"x": xq, "y": a * xq})


def lines(cfg, **fields) -> Problem:
    """The README's problem, with `fields` replaced."""
    return Problem(**{**dict(
        train_task=lambda k: task(k, cfg.inner_iters),
        eval_task=lambda k: task(k, cfg.eval_inner_iters),
        init_params=lambda k: MODEL.init(k, jnp.zeros((1, 1))), loss_fn=mse,
        metric_fn=lambda p, q: {"mse": mse(p, q)}, metric="mse", results={"mse": "eval"}),
        **fields})


TINY = dict(meta_iters=4, inner_iters=2, eval_inner_iters=2, eval_tasks=4, meta_batch=2,
            log_every=2)


def per_query(p, q):
    return {"mse": ((MODEL.apply(p, q["x"]) - q["y"]) ** 2)[:, 0]}


def flat_support(key):
    t = task(key, 1)
    return t._replace(support=jax.tree_util.tree_map(lambda a: a[0], t.support))


@pytest.mark.parametrize("fields, words", [
    # a per-query metric was averaged over tasks x queries: an interval half as wide
    (dict(metric_fn=per_query), "gives 'mse' as float32 \\(5,\\): one number per task"),
    (dict(metric_fn=lambda p, q: mse(p, q)), "must return a dict of scalars"),
    (dict(metric_fn=lambda p, q: {}), r"returns \[\]; its results mapping names \['mse'\]"),
    (dict(metric_fn=lambda p, q: {"mse": mse(p, q), "mae": mse(p, q)}),
     r"returns \['mae', 'mse'\]"),
    # a support without its step axis was read as steps of one example each, in evaluation
    (dict(eval_task=flat_support), "eval_task: support\\['x'\\] has shape \\(4, 1\\)"),
    # a task's own step count was trained with while config.json recorded another
    (dict(train_task=lambda k: task(k, 7)), "train_task gives a support of 7 inner steps; "
                                             "the run's inner_iters is 2"),
    (dict(eval_task=lambda k: task(k, 6)), "eval_task gives a support of 6 inner steps"),
    (dict(eval_task=lambda k: task(k, 2, queries=0)), "query\\['x'\\] has shape \\(0, 1\\)"),
    (dict(train_task=lambda k: (task(k, 2).support, task(k, 2).query)), "not a fometa.Task"),
])
def test_a_problem_is_checked_before_anything_is_compiled(fields, words):
    cfg = resolve("sine", **TINY)
    with pytest.raises(ConfigError, match=words):
        setup(cfg, lines(cfg, **fields))
    setup(cfg, lines(cfg))  # the problem as written is taken
    if "train_task" in fields:  # an evaluation (`fometa eval`) does not read training tasks
        setup(cfg, lines(cfg, **fields), training=False)


def test_registration_is_checked_and_a_notebook_cell_can_run_again(registered):
    build = lambda cfg: lines(cfg)
    for bad, error, words in (
            (dict(name=""), ValueError, "non-empty string"),
            (dict(name=3), ValueError, "non-empty string"),
            (dict(name="x", build=5), TypeError, "5 is not callable"),
            (dict(name="x", build=build, splits=lambda cfg: None), ValueError, "either build"),
            (dict(name="sine", build=build, replace=True), ValueError, "already registered")):
        with pytest.raises(error, match=words):
            register_dataset(**bad)
    registered.append("lines")
    register_dataset("lines", build)
    with pytest.raises(ValueError, match=r"replace=True replaces it"):
        register_dataset("lines", build)
    register_dataset("lines", lambda cfg: lines(cfg, metric_fn=per_query), replace=True)
    with pytest.raises(ConfigError, match="one number per task"):  # the new one is built
        setup(resolve("lines", **TINY))
    registered.append("not_a_problem")
    register_dataset("not_a_problem", lambda cfg: (1, 2))
    with pytest.raises(ConfigError, match="builds tuple, not a fometa.run.Problem"):
        setup(resolve("not_a_problem", **TINY))


def nan_figure(adapt, params, key):
    x = jnp.linspace(-2.0, 2.0, 5)
    return {"x": x, "lines": {"true": x, "adapted": jnp.log(x)}, "points": {}}


def test_a_figure_that_cannot_be_drawn_leaves_the_run_complete(tmp_path, registered):
    """A NaN in an illustration (figure data, not a result) made every rerun fail before
    results.json; the run is now complete and says what it left out."""
    registered.append("drawn")
    register_dataset("drawn", lambda cfg: lines(cfg, illustrate=nan_figure))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = train(resolve("drawn", **TINY), tmp_path / "run", progress=False,
                        plots=False)
    assert [str(w.message) for w in caught if w.category is RunWarning] == [
        "adaptation.json is not written: the problem's illustration is not finite (NaN or inf)"]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["eval"] == results["eval"]
    assert not (tmp_path / "run" / "adaptation.json").exists()


def test_a_periodic_evaluation_that_diverges_names_the_checkpoint_kept(tmp_path, registered):
    """The training state was finite and checked; only its adaptation at test time was not:
    the message says which checkpoint `fometa eval` with other settings can read."""
    def nan_eval(key):
        t = task(key, 2)
        return t._replace(query={"x": t.query["x"] * jnp.nan, "y": t.query["y"]})

    registered.append("nan_eval")
    register_dataset("nan_eval", lambda cfg: lines(cfg, eval_task=nan_eval))
    cfg = resolve("nan_eval", **{**TINY, "meta_iters": 6, "eval_every": 4,
                                 "checkpoint_every": 2})
    with pytest.raises(DivergenceError, match="evaluation after meta-iteration 4 is not finite"
                                              ".*; the last checkpoint, at meta-iteration 2, "
                                              "is finite and kept"):
        train(cfg, tmp_path / "run", progress=False, plots=False)


def test_summaries_are_of_one_finite_number_per_task():
    cfg = resolve("sine", **TINY)
    problem = lines(cfg)
    with pytest.raises(DivergenceError, match="'mse' is not finite"):
        summarize(problem, {"mse": np.array([0.1, np.nan])})
    with pytest.raises(ConfigError, match="1-d arrays"):
        summarize(problem, {"mse": np.ones((4, 5))})  # per query: 20 values for 4 tasks
    with pytest.raises(ConfigError, match="2-d arrays"):
        by_steps(problem, {"mse": np.ones(4)}, (0, 1))
    with pytest.raises(ConfigError, match="one or more"):
        summarize(problem, {"mse": np.ones(0)})
    learner = fometa.meta_learner("maml", mse, 0.1)
    state = learner.init(MODEL.init(jax.random.key(0), jnp.zeros((1, 1))))
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="num_tasks must be a whole number >= 1"):
            evaluate_tasks(learner, state, problem, jax.random.key(1), bad)


# --- the pure functions ---------------------------------------------------------------

PARAMS = MODEL.init(jax.random.key(0), jnp.zeros((1, 1)))
X = jnp.linspace(-1.0, 1.0, 8).reshape(2, 4, 1)
SUPPORT = {"x": X, "y": 2 * X}
QUERY = {"x": X[0], "y": 2 * X[0]}


@pytest.mark.parametrize("call, words", [
    # no examples: a NaN loss and an exactly zero meta-gradient, silently
    (lambda: fometa.maml_grad(mse, PARAMS, SUPPORT, {"x": jnp.zeros((0, 1)),
                                                     "y": jnp.zeros((0, 1))}, 0.1),
     "query\\['x'\\] has shape \\(0, 1\\): a batch with no examples"),
    (lambda: fometa.adapt(mse, PARAMS, {"x": jnp.zeros((2, 0, 1)), "y": jnp.zeros((2, 0, 1))},
                          0.1), "support\\['x'\\] has shape \\(0, 1\\)"),
    (lambda: fometa.adapt(lambda p, b: jnp.sum(MODEL.apply(p, b["x"]) > b["y"]), PARAMS,
                          SUPPORT, 0.1), "loss_fn must return a float; it returned int32"),
    (lambda: fometa.adapt(lambda p, b: jnp.sum(p["w"] * b["x"]), {"w": jnp.ones((), jnp.int32)},
                          SUPPORT, 0.1), "params\\['w'\\] is int32"),
    (lambda: fometa.evaluate(fometa.meta_learner("reptile", mse, 0.1),
                             fometa.meta_learner("reptile", mse, 0.1).init(PARAMS),
                             fometa.Task({"x": X, "y": X}, {"x": X, "y": X}),
                             lambda p, q: mse(p, q)),
     "the support needs a leading axis of inner steps"),
])
def test_the_pure_functions_refuse_what_computes_nothing(call, words):
    with pytest.raises(ValueError, match=words):
        call()


def test_a_fraction_is_a_learning_rate():
    one = fometa.adapt(mse, PARAMS, SUPPORT, 0.25)
    jax.tree_util.tree_map(np.testing.assert_array_equal, one,
                           fometa.adapt(mse, PARAMS, SUPPORT, fractions.Fraction(1, 4)))


def identity(p, x):
    return x @ p


def test_labels_closed_over_by_a_trace_are_checked_and_taken():
    """Concrete labels inside jit or scan (a user's own training loop over a fixed batch)
    are known at trace time: checked there, not a ConcretizationTypeError."""
    x = jnp.eye(3)
    good, bad = {"x": x, "y": jnp.arange(3)}, {"x": x, "y": jnp.array([0, 1, 7])}
    loss = lambda p, b: fometa.cross_entropy(identity, p, b)
    assert np.isfinite(float(jax.jit(lambda p: loss(p, good))(jnp.eye(3))))
    swept = jax.lax.scan(lambda p, _: (p - 0.1 * jax.grad(loss)(p, good), None), jnp.eye(3),
                         None, length=2)[0]
    assert swept.shape == (3, 3)
    with pytest.raises(ValueError, match="labels from 0 to 7"):
        jax.jit(lambda p: loss(p, bad))(jnp.eye(3))
    query = {**good, "context": x}
    accuracy = jax.jit(lambda p: fometa.accuracies(identity, p, query))(jnp.eye(3))
    assert float(accuracy["accuracy_transductive"]) == 1.0


@pytest.mark.parametrize("labels, words", [
    (jnp.array([[0], [1], [2]]), "has shape \\(3, 1\\); the logits \\(3, 3\\) need labels of "
                                 "shape \\(3,\\)"),
    (jax.nn.one_hot(jnp.arange(3), 3), "has shape \\(3, 3\\)"),
    (jnp.array([0.0, 1.0, 2.0]), "is float32: labels must be integer class indices in \\[0, 3\\)"),
    (jnp.array([0, 1, 7]), "labels from 0 to 7: they must lie in \\[0, 3\\)"),
    (jnp.array([0, 1, -1]), "labels from -1 to 1"),  # -1 was read as the last class
])
def test_labels_that_would_broadcast_or_wrap_are_refused(labels, words):
    """[n, 1] labels scored a perfect classifier 1/3 (broadcast to [n, n]); label 7 gave a
    NaN loss, -1 the last class's."""
    x = jnp.eye(3)
    with pytest.raises(ValueError, match=words):
        fometa.cross_entropy(identity, jnp.eye(3), {"x": x, "y": labels})
    with pytest.raises(ValueError, match=words.replace("has shape", "query\\['y'\\] has shape")
                       if words.startswith("has") else words):
        fometa.accuracies(identity, jnp.eye(3), {"x": x, "y": labels, "context": x})
    right = {"x": x, "y": jnp.arange(3), "context": x}
    assert float(fometa.accuracies(identity, jnp.eye(3), right)["accuracy_transductive"]) == 1.0


@pytest.mark.parametrize("model, x, words", [
    (fometa.MLP(activation="gelu"), jnp.zeros((1, 1)), "activation='gelu'.*tanh, relu"),
    (fometa.MLP(hidden=(0,)), jnp.zeros((1, 1)), "hidden=\\(0,\\)"),
    (fometa.MLP(out=-1), jnp.zeros((1, 1)), "out=-1"),
    (fometa.OmniglotCNN(num_classes=0), jnp.zeros((1, 28, 28, 1)), "num_classes=0"),
    (fometa.OmniglotCNN(num_classes=5), jnp.zeros((28, 28, 1)), "got float32 \\(28, 28, 1\\)"),
    (fometa.MiniImageNetCNN(num_classes=5), jnp.zeros((1, 84, 84, 3), jnp.uint8),
     "takes a float array \\[N, H, W, C\\]; got uint8"),
])
def test_models_name_a_bad_argument(model, x, words):
    with pytest.raises(ValueError, match=words):
        model.init(jax.random.key(0), x)


def test_models_take_numpy_widths():
    labels = np.array([0, 4, 2])
    params = fometa.OmniglotCNN(num_classes=labels.max() + 1).init(jax.random.key(0),
                                                                  jnp.zeros((1, 28, 28, 1)))
    assert params["params"]["logits"]["kernel"].shape[-1] == 5
    fometa.MLP(hidden=tuple(np.array([4, 4]))).init(jax.random.key(0), jnp.zeros((1, 1)))
