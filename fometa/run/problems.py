"""Problems (a task family with its model), and the datasets and learners that settings name.

A `Problem` is everything the run machinery (compiled loop, evaluation, checkpoints, run
directory, plots) needs to know of a task family; nothing downstream asks which dataset it
came from. `DATASETS` maps each `--dataset` name to how its problem is built from a run's
settings (a `fometa.run.Config`, read by attribute) and which combinations it refuses;
`INNER_OPTIMIZERS` maps each `--inner-optimizer` name to its optax optimizer.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fometa.algorithms import get_rule
from fometa.convnets import MiniImageNetCNN, OmniglotCNN
from fometa.data import is_rotated, load_cifar_fs, load_mini_imagenet, load_omniglot
from fometa.errors import ConfigError
from fometa.inner import LossFn, Params, check_support_and_query, num_steps
from fometa.learner import MetaLearner, meta_learner, reptile_outer
from fometa.models import MLP
from fometa.partition import Mask, by_path
from fometa.tasks.base import Task
from fometa.tasks.classification import FewShotTasks, accuracies, cross_entropy
from fometa.tasks.sine import SineTasks, mse

# A figure of one task's adaptation, as arrays (saved as adaptation.json, drawn by
# `fometa.run.plots`): {"x": [n], "lines": {label: [n]}, "points": {label: {"x": [m], "y": [m]}}}.
Illustration = dict[str, Any]


class Problem(NamedTuple):
    """A task family with its model.

    train_task(key) -> Task; eval_task(key) -> Task (support of `eval_inner_iters` steps);
    init_params(key) -> params (traced under `jax.jit` by `initial_state`: no concrete key,
        and arrays it loads become constants of that program); loss_fn(params, batch) -> scalar;
    metric_fn(params, query) -> {name: scalar} after adaptation.
    metric: the main metric's name ("mse", "accuracy"), a key of metric_fn's output.
    results: for each of metric_fn's outputs, its entry in results.json ("eval" for the
        main metric, "eval_<mode>" for variants such as the transductive accuracy; a run's
        set-up refuses other mappings, `check_problem`).
    illustrate(adapt, params, key) -> `Illustration` of one evaluation task (jittable),
        where `adapt(support, steps, each)` adapts the meta-learned initialisation as
        `MetaLearner.adapt` does; None: no such figure.
    head: a mask (`fometa.partition`) of the model's output layer: what an algorithm that
        adapts a subset (ANIL) adapts; None: the problem has none to offer.
    norms: a mask of the model's batch-norm parameters (what `--per-step-bn` gives one
        value per inner step); None: the model has none.
    whole_support_batches: every inner batch of a training task holds the task's whole
        support in some order, so that all have the same loss (iMAML then takes its
        Hessian from one: `algorithm_options`); False where that is not known.
    data: the arrays that train_task and eval_task read (a pytree: an image dataset's
        splits), and with_data(data) -> the same problem reading them from `data`. The
        compiled training loop and evaluation (`bound`) take them as an argument, so that
        a dataset is not embedded in the program as a constant (full Mini-ImageNet: 0.8 GB
        compiled in, 47 s to compile instead of 8.4 s; benchmarks/README.md). None: the
        task functions read no arrays (sine) or close over their own. A problem whose task
        functions are replaced (`_replace(train_task=...)`) must replace `with_data` too, or
        set both to None: with_data rebuilds the task functions it was made with.
    """

    train_task: Callable[[jax.Array], Task]
    eval_task: Callable[[jax.Array], Task]
    init_params: Callable[[jax.Array], Params]
    loss_fn: LossFn
    metric_fn: Callable[[Params, Any], dict[str, jax.Array]]
    metric: str
    results: Mapping[str, str]
    illustrate: Callable[[Callable[[Any], Params], Params, jax.Array], Illustration] | None = None
    head: Mask | None = None  # the model's output layer (what ANIL's inner loop adapts)
    norms: Mask | None = None  # the batch-norm parameters (MAML++'s per-step ones)
    whole_support_batches: bool = False
    data: Any = None
    with_data: Callable[[Any], Problem] | None = None


def check_problem(problem: Problem) -> Problem:
    """`problem` if its `metric` and `results` agree (the main metric is reported as
    "eval", every other output as "eval_<mode>"), else a one-line ConfigError: results.json
    would label one metric's numbers with another's name."""
    entries = dict(problem.results)
    if entries.get(problem.metric) != "eval":
        raise ConfigError(f"the problem's metric {problem.metric!r} must be reported as "
                          f"'eval' in its results mapping, which is {entries}")
    others = [e for n, e in entries.items() if n != problem.metric and not (
        isinstance(e, str) and e.startswith("eval_"))]
    if others:
        raise ConfigError(f"the problem's results {others} must be 'eval_<mode>' entries "
                          f"(only {problem.metric!r} is 'eval')")
    return problem


def check_shapes(problem: Problem, key: jax.Array, inner_iters: int | None,
                 eval_inner_iters: int) -> None:
    """A one-line ConfigError, before anything is compiled, unless `problem`'s functions give
    what a run reads (from their shapes: `jax.eval_shape`, nothing is computed): tasks whose
    support has a leading axis of `inner_iters` steps (training; None: not checked) or
    `eval_inner_iters` (evaluation) and a query with examples, and a `metric_fn` returning a
    scalar for each name of `problem.results` and no other. Otherwise a per-query metric
    would be averaged as if each query were a task (a narrower interval), a support without
    its step axis read as steps, and a misnamed metric found only after training."""
    params = jax.eval_shape(problem.init_params, key)
    wanted = [("train_task", problem.train_task, inner_iters, "inner_iters"),
              ("eval_task", problem.eval_task, eval_inner_iters, "eval_inner_iters")]
    for name, make, steps, setting in wanted:
        if steps is None:
            continue
        task = jax.eval_shape(make, key)
        if not isinstance(task, Task):
            raise ConfigError(f"the problem's {name} returns {type(task).__name__}, not a "
                              "fometa.Task(support, query)")
        try:
            check_support_and_query(task.support, task.query)
            given = num_steps(task.support)
        except ValueError as e:
            raise ConfigError(f"the problem's {name}: {e}") from None
        if given != steps:
            raise ConfigError(f"the problem's {name} gives a support of {given} inner steps; "
                              f"the run's {setting} is {steps}")
    try:
        out = jax.eval_shape(problem.metric_fn, params, task.query)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"the problem's metric_fn fails on an evaluation query: {e}") from None
    if not isinstance(out, Mapping):
        raise ConfigError(f"the problem's metric_fn must return a dict of scalars "
                          f"{{name: value}}; it returns {type(out).__name__}")
    if set(out) != set(problem.results):
        raise ConfigError(f"the problem's metric_fn returns {sorted(out)}; its results mapping "
                          f"names {sorted(problem.results)}: they must be the same")
    for name, value in out.items():
        if getattr(value, "shape", None) != () or not jnp.issubdtype(value.dtype, jnp.number):
            raise ConfigError(f"the problem's metric_fn gives {name!r} as "
                              f"{getattr(value, 'dtype', type(value).__name__)} "
                              f"{getattr(value, 'shape', '')}: one number per task is needed "
                              "(average it over the query)")


def bound(problem: Problem, data: Any) -> Problem:
    """`problem` reading its task data from `data` (the traced `problem.data` inside a
    jitted function that takes it as an argument); `problem` itself where it has none."""
    return problem if problem.with_data is None else problem.with_data(data)


COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")  # what `in_dtype` computes in
# `jax.default_matmul_precision` values; "default" leaves XLA's per-platform choice.
MATMUL_PRECISIONS: tuple[str, ...] = ("default", "tensorfloat32", "float32")


def matmul_precision(name: str) -> contextlib.AbstractContextManager:
    """A context in which what is traced computes float32 matrix products at precision
    `name` (a `MATMUL_PRECISIONS` value); the previous precision is restored on exit."""
    return contextlib.nullcontext() if name == "default" else jax.default_matmul_precision(name)

# How a batch's per-example losses become the loss that the inner loop (and the query loss)
# differentiates, by `--loss-reduction` name, from the shots per class K of a training task.
# With SGD the reduction scales the step; with Adam it matters where state built on one
# batch size meets gradients of another (the paper's carried state, at evaluation).
LOSS_REDUCTIONS: dict[str, Callable[[int], Callable[[jax.Array], jax.Array]]] = {
    "mean": lambda shots: jnp.mean,
    # supervised-reptile (models.py) passes the unreduced loss vector to minimize(): its sum.
    "sum": lambda shots: jnp.sum,
    # cbfinn/maml (utils.xent) divides each example's cross-entropy by K (update_batch_size)
    # and differentiates the vector: the sum over the batch over K.
    "sum/shots": lambda shots: lambda losses: jnp.sum(losses) / shots,
}


def in_dtype(apply: Callable[[Any, jax.Array], jax.Array], dtype: str
             ) -> Callable[[Any, jax.Array], jax.Array]:
    """`apply(params, x)` computed in `dtype`, with float32 outputs: mixed precision.

    The floating-point params and the input are cast to `dtype` inside the call, so the
    caller's params (the meta-learned ones, the inner loop's adapted ones, the optimizer
    states and every update) stay float32 and their gradients come back in float32
    through the casts; the outputs (predictions, logits) are cast up so that losses and
    metrics reduce in float32. The networks run in their input's dtype.
    """
    if dtype == "float32":
        return apply
    dt = jnp.dtype(dtype)

    def cast(a):
        return a.astype(dt) if jnp.issubdtype(a.dtype, jnp.floating) else a

    def apply_in_dtype(params, x):
        return apply(jax.tree_util.tree_map(cast, params), cast(x)).astype(jnp.float32)

    return apply_in_dtype


# --------------------------------------------------------------------------- sine


def sine_adaptation(tasks: SineTasks, predict: Callable[[Any, jax.Array], jax.Array],
                    steps: tuple[int, ...] = (1,)):
    """The paper's Fig. 1 as an `Illustration`: a task's true curve, its support points and
    the prediction before and after 1 and all `eval_inner_iters` steps of adaptation."""

    def illustrate(adapt, params, key: jax.Array) -> Illustration:
        task = tasks.eval_task(key)
        x = jnp.linspace(*tasks.x_range, 200)[:, None]
        amp, phase = tasks.function(jax.random.split(key)[0])
        total = jax.tree_util.tree_leaves(task.support)[0].shape[0]
        counts = tuple(sorted(set(steps) | {total}))
        after = adapt(task.support, counts, lambda p: predict(p, x)[:, 0])
        lines = {"true": amp * jnp.sin(x[:, 0] + phase),
                 "before adaptation": predict(params, x)[:, 0],
                 **{f"after {k} steps": after[i] for i, k in enumerate(counts)}}
        points = {"support points": {"x": task.support["x"][0, :, 0],
                                     "y": task.support["y"][0, :, 0]}}
        return {"x": x[:, 0], "lines": lines, "points": points}

    return illustrate


def inner_batch_size(cfg) -> int:
    """Examples in one inner step of one training task: `--inner-batch`, else the task's
    whole pool, ways x train shots, less a `--foml-tail`'s per class (the tail minibatch
    must be as large, `check_classification`); without ways (sine), its train points."""
    pool = (cfg.train_shots or cfg.shots) - (cfg.foml_tail or 0)
    return cfg.inner_batch or (cfg.ways or 1) * pool


def sine_problem(cfg) -> Problem:
    """Sine-wave regression (paper Sec. 7) with the MLP of `cfg.hidden`, `cfg.activation`."""
    train_points = cfg.train_shots or cfg.shots
    tasks = SineTasks(
        phase_range=(0.0, cfg.sine_phase_max), train_points=train_points,
        train_on_grid=cfg.sine_on_grid, inner_batch=inner_batch_size(cfg),
        inner_iters=cfg.inner_iters, query_points=cfg.queries, eval_shots=cfg.shots,
        eval_inner_iters=cfg.eval_inner_iters)
    if cfg.shots > tasks.grid_points:
        raise ConfigError(f"shots {cfg.shots} exceeds the {tasks.grid_points} points of the "
                          "sine evaluation grid")
    model = MLP(hidden=tuple(cfg.hidden), out=1, activation=cfg.activation)
    predict = in_dtype(model.apply, cfg.dtype)
    reduce = LOSS_REDUCTIONS[cfg.loss_reduction](train_points)
    return Problem(tasks.train_task, tasks.eval_task,
                   lambda key: model.init(key, jnp.zeros((1, 1))),
                   lambda p, b: mse(predict, p, b, reduce),
                   lambda p, q: {"mse": mse(predict, p, q)}, "mse", {"mse": "eval"},
                   illustrate=sine_adaptation(tasks, model.apply),
                   head=by_path(lambda path: f"['Dense_{len(cfg.hidden)}']" in path),
                   whole_support_batches=tasks.whole_support_batches)


def check_sine(cfg) -> None:
    if cfg.loss_reduction == "sum/shots":
        raise ConfigError("--loss-reduction sum/shots divides by the shots per class of a "
                          "classification task; sine takes mean or sum")
    for name in ("replacement", "foml_tail"):
        if getattr(cfg, name):
            raise ConfigError(f"--{name.replace('_', '-')} applies to classification tasks; "
                              "sine tasks cycle through their points")
    if cfg.ways is not None:
        raise ConfigError(f"--ways {cfg.ways} does not apply to the sine dataset (regression); "
                          "leave it out")
    if cfg.sine_on_grid and cfg.train_shots is None:
        raise ConfigError("sine tasks on the grid need train-shots (the grid size)")


# --------------------------------------------------------------------------- few-shot classification


class Splits(NamedTuple):
    """An image dataset's training and test split, uint8 [classes, n, H, W, ch], and whether
    each is augmented with rotations."""

    train: np.ndarray
    test: np.ndarray
    rotate_train: bool = False
    rotate_test: bool = False


def omniglot_splits(cfg) -> Splits:
    splits = load_omniglot(cfg.data_dir, split=cfg.omniglot_split)
    return Splits(splits["train"][..., None], splits["test"][..., None],
                  is_rotated(cfg.omniglot_split, "train"), is_rotated(cfg.omniglot_split, "test"))


def mini_imagenet_splits(cfg) -> Splits:
    splits = load_mini_imagenet(cfg.data_dir)
    return Splits(splits["train"], splits["test"])


def cifar_fs_splits(cfg) -> Splits:
    splits = load_cifar_fs(cfg.data_dir)
    return Splits(splits["train"], splits["test"])


def classification_problem(cfg, splits: Splits | None = None) -> Problem:
    """N-way K-shot classification with the paper's network for `cfg.dataset`, on `splits`
    (default: the dataset's, loaded as `cfg` says)."""
    dataset = DATASETS[cfg.dataset]
    splits = dataset.splits(cfg) if splits is None else splits
    train, test = splits.train, splits.test
    train_shots = cfg.train_shots or cfg.shots
    for name, images, rotate, per_class, parts in (
            ("training", train, splits.rotate_train, train_shots + cfg.queries, "shots + queries"),
            ("test", test, splits.rotate_test, cfg.shots + 1, "shots + 1 query")):
        classes = images.shape[0] * (4 if rotate else 1)
        if cfg.ways > classes:
            raise ConfigError(f"--ways {cfg.ways} exceeds the {classes} classes of the "
                              f"{cfg.dataset} {name} split")
        if per_class > images.shape[1]:
            raise ConfigError(f"{per_class} examples per class ({parts}) exceed the "
                              f"{images.shape[1]} that each {cfg.dataset} {name} class has")
    tasks = FewShotTasks(
        jnp.asarray(train), jnp.asarray(test), ways=cfg.ways, shots=cfg.shots,
        train_shots=train_shots, queries=cfg.queries, inner_iters=cfg.inner_iters,
        inner_batch=cfg.inner_batch, eval_inner_iters=cfg.eval_inner_iters,
        eval_inner_batch=cfg.eval_inner_batch, rotate_train=splits.rotate_train,
        rotate_test=splits.rotate_test, replacement=cfg.replacement, tail_shots=cfg.foml_tail)
    model = dataset.network(num_classes=cfg.ways, conv=cfg.conv)
    # Tasks hold uint8 images; the network sees them scaled to [0, 1] as in the paper.
    net = in_dtype(model.apply, cfg.dtype)
    apply = lambda p, x: net(p, x.astype(jnp.float32) / 255.0)
    reduce = LOSS_REDUCTIONS[cfg.loss_reduction](train_shots)

    def with_data(images: tuple[jax.Array, jax.Array]) -> Problem:
        on = tasks._replace(train_images=images[0], test_images=images[1])
        return problem._replace(train_task=on.train_task, eval_task=on.eval_task, data=images)

    problem = Problem(tasks.train_task, tasks.eval_task,
                      lambda key: model.init(key, jnp.zeros((1,) + train.shape[2:], jnp.float32)),
                      lambda p, b: cross_entropy(apply, p, b, reduce),
                      lambda p, q: accuracies(apply, p, q), "accuracy",
                      {"accuracy": "eval", "accuracy_transductive": "eval_transductive"},
                      head=by_path(lambda path: "['logits']" in path),
                      norms=by_path(lambda path: "['norm" in path),
                      whole_support_batches=tasks.whole_support_batches,
                      data=(tasks.train_images, tasks.test_images), with_data=with_data)
    return problem


def check_classification(cfg) -> None:
    if cfg.ways is None:
        raise ConfigError(f"dataset {cfg.dataset!r} needs --ways")
    if cfg.replacement:  # each minibatch draws distinct examples from the pool
        for name, batch, shots in (("inner-batch", cfg.inner_batch, cfg.train_shots or cfg.shots),
                                   ("eval-inner-batch", cfg.eval_inner_batch, cfg.shots)):
            if batch is not None and batch > cfg.ways * shots:
                raise ConfigError(f"--{name} {batch} exceeds the {cfg.ways * shots} examples it "
                                  "is drawn from with --replacement")
    if cfg.foml_tail is not None:
        pool = (cfg.train_shots or cfg.shots) - cfg.foml_tail
        head = inner_batch_size(cfg)
        if pool < 1:
            raise ConfigError(f"--foml-tail {cfg.foml_tail} leaves no example per class for "
                              f"the other minibatches (train-shots {cfg.train_shots or cfg.shots})")
        if cfg.ways * cfg.foml_tail != head:
            raise ConfigError(f"the tail minibatch (ways x foml-tail = "
                              f"{cfg.ways * cfg.foml_tail}) must be as large as the others "
                              f"(inner-batch {head})")


# --------------------------------------------------------------------------- the registry


class Dataset(NamedTuple):
    """How a `--dataset` becomes a `Problem`.

    build(cfg) -> Problem; check(cfg) raises a ConfigError for settings the dataset
    refuses (before any data is read). Image datasets are built by
    `classification_problem` from `splits(cfg)` (their data) and `network` (the paper's
    model class).
    """

    build: Callable[[Any], Problem]
    check: Callable[[Any], None]
    splits: Callable[[Any], Splits] | None = None
    network: type | None = None


DATASETS: dict[str, Dataset] = {
    "sine": Dataset(sine_problem, check_sine),
    "omniglot": Dataset(classification_problem, check_classification, omniglot_splits,
                        OmniglotCNN),
    "mini-imagenet": Dataset(classification_problem, check_classification,
                             mini_imagenet_splits, MiniImageNetCNN),
    # CIFAR-FS's 32x32 images through Mini-ImageNet's network (4 x [conv 32, max-pool]).
    "cifar-fs": Dataset(classification_problem, check_classification, cifar_fs_splits,
                        MiniImageNetCNN),
}
BUILT_IN = frozenset(DATASETS)  # fometa's own datasets: never replaced

def register_dataset(name: str, build: Callable[[Any], Problem] | None = None,
                     check: Callable[[Any], None] | None = None,
                     splits: Callable[[Any], Splits] | None = None,
                     network: type | None = None, replace: bool = False) -> Dataset:
    """Makes `name` a dataset of the run machinery: `fometa.run.train(resolve(name, ...))`
    and `fometa train --dataset name` then train `build(cfg)`'s problem with checkpoints,
    resume, evaluation, the run directory and plots. `check(cfg)` raises a ConfigError for
    settings it refuses. An image dataset gives `splits(cfg)` (its `Splits`, e.g. from
    `fometa.data.classes_from_labels`) and `network` (a flax module class taking
    `num_classes` and `conv`) instead of `build`: N-way K-shot classification as for the
    paper's datasets. An existing name is refused, unless `replace` and it is not one of
    fometa's own (`BUILT_IN`): a notebook cell that registers can then run again."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"a dataset name must be a non-empty string without surrounding "
                         f"spaces; got {name!r}")
    if name in BUILT_IN or (name in DATASETS and not replace):
        raise ValueError(f"dataset {name!r} is already registered" + (
            "" if name in BUILT_IN else " (replace=True replaces it)"))
    if (build is None) == (splits is None or network is None) or (
            build is not None and (splits is not None or network is not None)):
        raise ValueError("give either build, or splits and network")
    for given in (build, check, splits, network):
        if given is not None and not callable(given):
            raise TypeError(f"register_dataset({name!r}): {given!r} is not callable")
    if build is None:
        DATASETS[name] = Dataset(classification_problem, check or check_classification,
                                 splits, network)
    else:
        DATASETS[name] = Dataset(build, check or (lambda cfg: None))
    return DATASETS[name]


# Inner optimizers by `--inner-optimizer` name, from the inner learning rate and whether
# the algorithm differentiates through them (a second-order rule: MAML).
INNER_OPTIMIZERS: dict[str, Callable[[float, bool], optax.GradientTransformation]] = {
    "sgd": lambda lr, second_order: optax.sgd(lr),
    # The paper's inner Adam has beta1 = 0 (supervised-reptile, models.py). Differentiated
    # through, sqrt(nu + eps_root) keeps its derivative finite where a gradient is exactly
    # zero (batch norm makes the conv biases' gradients 0): without it MAML's is NaN.
    "adam": lambda lr, second_order: optax.adam(lr, b1=0.0,
                                                eps_root=1e-8 if second_order else 0.0),
}


# The settings that set an algorithm's options (`fometa.algorithms.Rule.options`), by option.
ALGORITHM_OPTIONS: dict[str, str] = {"lam": "imaml_lambda", "cg_steps": "cg_steps"}


# `--remat` left unset: rematerialise where benchmarks/README.md ("MAML: remat by default")
# measures it faster on the CPU: second-order rules with at least this many inner steps.
# With one step it only adds work; GPUs are unmeasured, so they keep it off.
REMAT_MIN_STEPS = 2


def uses_remat(cfg, platform: str) -> bool:
    """Whether a run of `cfg` on `platform` ("cpu", "gpu", "tpu") rematerialises its inner
    steps: `cfg.remat` where set, else the measured default (`REMAT_MIN_STEPS`)."""
    if cfg.remat is not None:
        return cfg.remat
    return (platform == "cpu" and get_rule(cfg.algorithm).second_order
            and cfg.inner_iters >= REMAT_MIN_STEPS)


# `--tasks-at-once` left unset: the datasets whose parallel tasks are computed one at a time
# on a CPU with one device, from how many images per inner step the meta-batch holds
# (`images_per_step`), without and with rematerialised inner steps (`uses_remat`).
# benchmarks/README.md ("Mini-ImageNet: one task at a time", "... and Omniglot's larger
# meta-batches", "... and MAML's rematerialised steps") measures it faster for every
# Mini-ImageNet workload and preset (84x84 images: one task's activations stay in cache) and,
# one task at a time unbatched (`meta_learner(tasks_at_once=1)`), for every Omniglot preset
# measured: from 160 images per step without remat (the four 5-way 1-shot presets, 32 tasks
# of 5 images, 1.14-1.22x; fomaml-omniglot-5w5s 1.42x) and at any size with remat
# (speed.py's MAML, 5 tasks of 10 images, 1.10-1.20x; maml-omniglot-20w1s 1.37x). At
# speed.py's 50 images without remat FOMAML stays faster vmapped (0.83x one at a time),
# Reptile 1.04x: where between 50 and 160 it starts to pay is unmeasured. Other datasets
# unmeasured (CIFAR-FS's MAML, which rematerialises, level: 1.01x, one at a time as a vmap).
class OneAtATime(NamedTuple):
    """The fewest images per inner step from which a dataset's tasks go one at a time."""
    plain: int   # inner steps differentiated as they are (or first-order)
    remat: int   # inner steps rematerialised (`uses_remat`)


ONE_TASK_AT_A_TIME: dict[str, OneAtATime] = {"mini-imagenet": OneAtATime(1, 1),
                                             "omniglot": OneAtATime(160, 1)}


def _one_at_a_time_help(name: str, least: OneAtATime) -> str:
    """`name` and, unless every meta-batch qualifies, its thresholds, for --tasks-at-once's help."""
    if least.plain <= 1 and least.remat <= 1:
        return name
    with_remat = (" or second-order with remat" if least.remat <= 1
                  else f" ({least.remat} second-order with remat)")
    return f"{name} meta-batches of {least.plain} or more images per inner step{with_remat}"


ONE_TASK_AT_A_TIME_HELP = ", ".join(_one_at_a_time_help(name, least)
                                    for name, least in ONE_TASK_AT_A_TIME.items())


def images_per_step(cfg) -> int:
    """Examples (images) in one inner step of a whole meta-batch: its tasks times
    `inner_batch_size`."""
    return cfg.meta_batch * inner_batch_size(cfg)


def one_device(cfg) -> bool:
    """Whether `cfg.devices` asks for exactly one device ("1", not "all" or N > 1)."""
    return cfg.devices != "all" and int(cfg.devices) == 1  # passed the Devices setting's check


def tasks_at_once(cfg, platform: str) -> int | None:
    """How many parallel tasks a run of `cfg` on `platform` computes at once
    (`meta_learner(tasks_at_once=...)`; None: all, or tasks in sequence): `cfg.tasks_at_once`
    where set, else 1 on a CPU with one device where `ONE_TASK_AT_A_TIME` says so."""
    if cfg.tasks_at_once is not None or cfg.task_order == "sequential":
        return cfg.tasks_at_once
    least = ONE_TASK_AT_A_TIME.get(cfg.dataset)
    if platform != "cpu" or least is None or not one_device(cfg):
        return None
    # --remat on a first-order rule changes nothing (no derivative through the inner loop)
    rematerialised = uses_remat(cfg, platform) and get_rule(cfg.algorithm).second_order
    one = images_per_step(cfg) >= (least.remat if rematerialised else least.plain)
    return 1 if one else None


def learned_rates(cfg) -> str | None:
    """The kind of inner rates a run of `cfg` meta-learns (`fometa.learned_lr.KINDS`):
    `--learn-inner-lr`, else its algorithm's own (meta-sgd's per-parameter), else None."""
    return cfg.learn_inner_lr or get_rule(cfg.algorithm).learn_inner_lr


def given_options(cfg) -> dict[str, Any]:
    """The options of `cfg`'s algorithm (`Rule.options`) that its settings give
    (`ALGORITHM_OPTIONS`): those set, not None."""
    rule = get_rule(cfg.algorithm)
    return {option: getattr(cfg, name) for option, name in ALGORITHM_OPTIONS.items()
            if option in rule.options and getattr(cfg, name) is not None}


def algorithm_options(cfg, problem: Problem) -> dict[str, Any]:
    """The options a run of `cfg` on `problem` passes to its algorithm's rule
    (`Rule.options`): those its settings give (`ALGORITHM_OPTIONS`), and iMAML's
    `hessian_batches` of 1 where every inner batch is the whole support, reordered
    (`Problem.whole_support_batches`: full-batch inner steps, as in the iMAML presets):
    each has the same Hessian, and the mean over all of them would repeat one
    Hessian-vector product `inner_iters` times per CG step."""
    rule = get_rule(cfg.algorithm)
    options = given_options(cfg)
    if "hessian_batches" in rule.options and problem.whole_support_batches:
        options["hessian_batches"] = 1
    return options


def make_problem(cfg) -> Problem:
    """The problem that `cfg.dataset` names, built from `cfg`."""
    problem = DATASETS[cfg.dataset].build(cfg)
    if not isinstance(problem, Problem):
        raise ConfigError(f"dataset {cfg.dataset!r} builds {type(problem).__name__}, not a "
                          "fometa.run.Problem")
    return problem


def make_learner(cfg, problem: Problem) -> MetaLearner:
    """The meta-learner that `cfg` describes, for `problem`'s loss."""
    rule = get_rule(cfg.algorithm)
    if rule.interpolates:
        outer = reptile_outer(cfg.meta_step, cfg.meta_iters, cfg.meta_step_final)
    else:
        lr = cfg.outer_lr
        if cfg.outer_lr_final is not None:  # MAML++: CosineAnnealingLR to min_learning_rate
            lr = optax.cosine_decay_schedule(cfg.outer_lr, cfg.meta_iters,
                                             cfg.outer_lr_final / cfg.outer_lr)
        outer = optax.adam(lr)
        if cfg.outer_clip is not None:  # cbfinn/maml, maml.py: tf.clip_by_value(grad, -10, 10)
            outer = optax.chain(optax.clip(cfg.outer_clip), outer)
    inner = (cfg.inner_lr if learned_rates(cfg) else
             INNER_OPTIMIZERS[cfg.inner_optimizer](cfg.inner_lr, rule.second_order))
    if rule.adapts_subset and problem.head is None:
        raise ConfigError(f"{cfg.algorithm!r} adapts the model's head in its inner loop, and "
                          f"this problem names none (Problem.head)")
    if cfg.per_step_bn and problem.norms is None:
        raise ConfigError(f"--per-step-bn: the {cfg.dataset} model has no batch norm")
    options = algorithm_options(cfg, problem)
    return meta_learner(cfg.algorithm, problem.loss_fn, inner, outer,
                        carry_inner_state=cfg.carry_inner_state,
                        sequential_tasks=cfg.task_order == "sequential", unroll=cfg.unroll,
                        remat=uses_remat(cfg, jax.default_backend()), check_finite=True,
                        tasks_at_once=tasks_at_once(cfg, jax.default_backend()),
                        inner_trainable=problem.head if rule.adapts_subset else None,
                        options=options, learn_inner_lr=cfg.learn_inner_lr,
                        inner_steps=cfg.inner_iters, first_order_iters=cfg.first_order_iters,
                        multi_step_iters=cfg.multi_step_iters,
                        per_step=problem.norms if cfg.per_step_bn else None)
