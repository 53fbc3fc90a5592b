"""From a `Config` to what training needs: task samplers, a model, its loss and metric."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fometa.config import Config, ConfigError
from fometa.learner import MetaLearner, meta_learner, reptile_outer
from fometa.convnets import MiniImageNetCNN, OmniglotCNN
from fometa.models import MLP
from fometa.tasks.base import Task
from fometa.tasks.classification import FewShotTasks, accuracies, cross_entropy
from fometa.tasks.sine import SineTasks, mse


class Problem(NamedTuple):
    """A task family with its model.

    train_task(key) -> Task; eval_task(key) -> Task (support of `eval_inner_iters` steps);
    init_params(key) -> params; loss_fn(params, batch) -> scalar;
    metric_fn(params, query) -> dict of scalars, whose main entry is `metric` ("mse" or
    "accuracy"); classification adds "accuracy_transductive".
    """

    train_task: Callable[[jax.Array], Task]
    eval_task: Callable[[jax.Array], Task]
    init_params: Callable[[jax.Array], Any]
    loss_fn: Callable[[Any, Any], jax.Array]
    metric_fn: Callable[[Any, Any], dict[str, jax.Array]]
    metric: str
    extras: Any = None  # dataset-specific objects (e.g. the SineTasks, for plotting)


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


def sine_problem(cfg: Config) -> Problem:
    train_points = cfg.train_shots or cfg.shots
    tasks = SineTasks(
        phase_range=(0.0, cfg.sine_phase_max), train_points=train_points,
        train_on_grid=cfg.sine_on_grid, inner_batch=cfg.inner_batch or train_points,
        inner_iters=cfg.inner_iters, query_points=cfg.queries, eval_shots=cfg.shots,
        eval_inner_iters=cfg.eval_inner_iters)
    if cfg.shots > tasks.grid_points:
        raise ConfigError(f"shots {cfg.shots} exceeds the {tasks.grid_points} points of the "
                          "sine evaluation grid")
    model = MLP(hidden=tuple(cfg.hidden), out=1, activation=cfg.activation)
    predict = in_dtype(model.apply, cfg.dtype)
    loss = lambda p, b: mse(predict, p, b)
    return Problem(tasks.train_task, tasks.eval_task,
                   lambda key: model.init(key, jnp.zeros((1, 1))), loss,
                   lambda p, q: {"mse": loss(p, q)}, "mse",
                   extras={"tasks": tasks, "model": model})


def load_splits(cfg: Config) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """The training and test split of an image dataset as uint8 [C, n, H, W, ch], and
    whether each is augmented with rotations (Omniglot)."""
    from fometa.data import load_mini_imagenet, load_omniglot

    if cfg.dataset == "omniglot":
        splits = load_omniglot(cfg.data_dir, split=cfg.omniglot_split)
        train, test = splits["train"][..., None], splits["test"][..., None]
        # Reptile's split rotates the training characters only; MAML's rotates every class.
        return train, test, True, cfg.omniglot_split == "maml"
    splits = load_mini_imagenet(cfg.data_dir)
    return splits["train"], splits["test"], False, False


def classification_problem(cfg: Config, splits=None) -> Problem:
    """`splits`: (train, test, rotate_train, rotate_test) as `load_splits` returns; loaded
    from `cfg` if None."""
    train, test, rotate_train, rotate_test = splits or load_splits(cfg)
    train_shots = cfg.train_shots or cfg.shots
    for name, images, rotate, per_class in (("training", train, rotate_train, train_shots + cfg.queries),
                                            ("test", test, rotate_test, cfg.shots + 1)):
        classes = images.shape[0] * (4 if rotate else 1)
        if cfg.ways > classes:
            raise ConfigError(f"--ways {cfg.ways} exceeds the {classes} classes of the "
                              f"{cfg.dataset} {name} split")
        if per_class > images.shape[1]:
            raise ConfigError(f"{per_class} examples per class (shots + queries) exceed the "
                              f"{images.shape[1]} that each {cfg.dataset} {name} class has")
    tasks = FewShotTasks(
        jnp.asarray(train), jnp.asarray(test), ways=cfg.ways, shots=cfg.shots,
        train_shots=train_shots, queries=cfg.queries, inner_iters=cfg.inner_iters,
        inner_batch=cfg.inner_batch, eval_inner_iters=cfg.eval_inner_iters,
        eval_inner_batch=cfg.eval_inner_batch, rotate_train=rotate_train,
        rotate_test=rotate_test)
    cnn = OmniglotCNN if cfg.dataset == "omniglot" else MiniImageNetCNN
    model = cnn(num_classes=cfg.ways, conv=cfg.conv)
    # Tasks hold uint8 images; the network sees them scaled to [0, 1] as in the paper.
    net = in_dtype(model.apply, cfg.dtype)
    apply = lambda p, x: net(p, x.astype(jnp.float32) / 255.0)
    return Problem(tasks.train_task, tasks.eval_task,
                   lambda key: model.init(key, jnp.zeros((1,) + train.shape[2:], jnp.float32)),
                   lambda p, b: cross_entropy(apply, p, b),
                   lambda p, q: accuracies(apply, p, q), "accuracy",
                   extras={"tasks": tasks, "model": model})


def make_problem(cfg: Config) -> Problem:
    if cfg.dataset == "sine":
        return sine_problem(cfg)
    return classification_problem(cfg)


def inner_optimizer(cfg: Config) -> optax.GradientTransformation:
    if cfg.inner_optimizer == "adam":
        # The paper's inner Adam has beta1 = 0 (supervised-reptile, reptile.py).
        return optax.adam(cfg.inner_lr, b1=0.0)
    return optax.sgd(cfg.inner_lr)


def make_learner(cfg: Config, problem: Problem) -> MetaLearner:
    if cfg.algorithm == "reptile":
        outer = reptile_outer(cfg.meta_step, cfg.meta_iters, cfg.meta_step_final)
    else:
        outer = optax.adam(cfg.outer_lr)
    return meta_learner(cfg.algorithm, problem.loss_fn, inner_optimizer(cfg), outer,
                        carry_inner_state=cfg.carry_inner_state, unroll=cfg.unroll,
                        remat=cfg.remat)
