"""From a `Config` to what training needs: task samplers, a model, its loss and metric."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fometa.config import Config, ConfigError
from fometa.learner import MetaLearner, meta_learner, reptile_outer
from fometa.models import MLP
from fometa.tasks.base import Task
from fometa.tasks.sine import SineTasks, mse


class Problem(NamedTuple):
    """A task family with its model.

    train_task(key) -> Task; eval_task(key) -> Task (support of `eval_inner_iters` steps);
    init_params(key) -> params; loss_fn(params, batch) -> scalar;
    metric_fn(params, query) -> scalar, named by `metric` ("mse" or "accuracy").
    """

    train_task: Callable[[jax.Array], Task]
    eval_task: Callable[[jax.Array], Task]
    init_params: Callable[[jax.Array], Any]
    loss_fn: Callable[[Any, Any], jax.Array]
    metric_fn: Callable[[Any, Any], jax.Array]
    metric: str
    extras: Any = None  # dataset-specific objects (e.g. the SineTasks, for plotting)


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
    loss = lambda p, b: mse(model.apply, p, b)
    return Problem(tasks.train_task, tasks.eval_task,
                   lambda key: model.init(key, jnp.zeros((1, 1))), loss, loss, "mse",
                   extras={"tasks": tasks, "model": model})


def make_problem(cfg: Config) -> Problem:
    if cfg.dataset == "sine":
        return sine_problem(cfg)
    raise ConfigError(f"dataset {cfg.dataset!r} is not available in this version of fometa")


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
                        carry_inner_state=cfg.carry_inner_state, unroll=cfg.unroll)
