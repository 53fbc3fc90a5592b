"""Sine-wave regression (paper Sec. 7, Fig. 1): tasks f(x) = a sin(x + b), sampled on device."""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from fometa.tasks.base import Task
from fometa.tasks.sampling import distinct, epoch_batches


class SineTasks(NamedTuple):
    """A distribution of sine-wave regression tasks.

    Batches are dicts {"x": [n, 1], "y": [n, 1]}. Training tasks draw `train_points`
    inputs (the fixed grid of the paper's code, or uniform) and cycle through them in
    `inner_iters` minibatches of `inner_batch`; `query_points` fresh inputs form the query.
    Evaluation tasks train `eval_inner_iters` full-batch steps on `eval_shots` grid points
    and are judged by the MSE over the whole grid of `grid_points`.
    """

    amp_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, 2 * math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    grid_points: int = 50
    train_points: int = 50
    train_on_grid: bool = True
    inner_batch: int = 10
    inner_iters: int = 5
    query_points: int = 10
    eval_shots: int = 10
    eval_inner_iters: int = 32

    def grid(self) -> jax.Array:
        """The evaluation inputs, [grid_points, 1]."""
        return jnp.linspace(*self.x_range, self.grid_points)[:, None]

    @property
    def whole_support_batches(self) -> bool:
        """Every training minibatch holds all `train_points` inputs (in another order)."""
        return self.inner_batch == self.train_points

    def function(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The task's amplitude and phase."""
        ka, kb = jax.random.split(key)
        amp = jax.random.uniform(ka, (), minval=self.amp_range[0], maxval=self.amp_range[1])
        phase = jax.random.uniform(kb, (), minval=self.phase_range[0],
                                   maxval=self.phase_range[1])
        return amp, phase

    def _batch(self, key: jax.Array, x: jax.Array) -> dict[str, jax.Array]:
        amp, phase = self.function(key)
        return {"x": x, "y": amp * jnp.sin(x + phase)}

    def _uniform(self, key: jax.Array, n: int) -> jax.Array:
        return jax.random.uniform(key, (n, 1), minval=self.x_range[0], maxval=self.x_range[1])

    def train_task(self, key: jax.Array) -> Task:
        """One training task: support [inner_iters, inner_batch, 1], query [query_points, 1]
        (None with no query points)."""
        kf, kx, kb, kq = jax.random.split(key, 4)
        if self.train_on_grid:
            x = jnp.linspace(*self.x_range, self.train_points)[:, None]
        else:
            x = self._uniform(kx, self.train_points)
        idx = epoch_batches(kb, self.train_points, self.inner_batch, self.inner_iters)
        query = (self._batch(kf, self._uniform(kq, self.query_points)) if self.query_points
                 else None)
        return Task(self._batch(kf, x[idx]), query)

    def eval_task(self, key: jax.Array) -> Task:
        """One evaluation task: the same `eval_shots` grid points at every one of
        `eval_inner_iters` steps; the query is the whole grid."""
        kf, ks = jax.random.split(key)
        grid = self.grid()
        shots = grid[distinct(ks, self.grid_points, self.eval_shots)]
        support = jnp.broadcast_to(shots, (self.eval_inner_iters,) + shots.shape)
        return Task(self._batch(kf, support), self._batch(kf, grid))


def mse(predict, params, batch: dict[str, jax.Array],
        reduce: Callable[[jax.Array], jax.Array] = jnp.mean) -> jax.Array:
    """Squared error of `predict(params, x)` against `batch["y"]`, reduced by `reduce`
    (default: the mean squared error). The prediction and `batch["y"]` must have the same
    shape (a [n] target against a [n, 1] prediction would broadcast to [n, n])."""
    pred = predict(params, batch["x"])
    if jnp.shape(pred) != jnp.shape(batch["y"]):
        raise ValueError(f"mse: the prediction has shape {jnp.shape(pred)} and batch['y'] "
                         f"{jnp.shape(batch['y'])}; they must be equal")
    return reduce((pred - batch["y"]) ** 2)
