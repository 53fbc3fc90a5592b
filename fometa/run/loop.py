"""The compiled training loop: chunks of meta-iterations inside one jitted `lax.scan`.

Task sampling, inner loops and meta-updates all run inside it, optionally sharded over a
device mesh. The problem's data (`Problem.data`: a dataset's splits) and the training key
are arguments of the compiled program, never constants in it: one program serves every
seed, and JAX's compilation cache finds it again (`fometa.run.processes.compile_cache`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from fometa.learner import MetaLearner
from fometa.run.problems import Problem, bound
from fometa.sharding import (Mesh, check_divisible, replicate_data, replicated, shard_tasks,
                             task_mesh)


class Runner:
    """A jitted `fn(*args, data)` with its inputs `data` (`loop_inputs`: the problem's data
    and the training key): `runner(*args)`, `.lower(*args)`, `.trace(*args)` and
    `.eval_shape(*args)` pass `data` last, which the compiled program takes last too:
    `runner.lower(*args).compile()(*args, runner.data)`. Other attributes (`_cache_size`,
    `clear_cache`) are the jitted function's."""

    def __init__(self, fn: Callable, data: Any):
        self.fn, self.data = fn, data

    def __call__(self, *args):
        return self.fn(*args, self.data)

    def lower(self, *args):
        return self.fn.lower(*args, self.data)

    def trace(self, *args):
        return self.fn.trace(*args, self.data)

    def eval_shape(self, *args):
        return self.fn.eval_shape(*args, self.data)

    def __getattr__(self, name: str):
        if name in ("fn", "data"):  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.fn, name)


def loop_inputs(problem: Problem, train_key: jax.Array, mesh: Mesh) -> dict[str, Any]:
    """A training loop's last argument, replicated over the mesh: {"data": the problem's
    data, "train_key": the key iteration i folds i into}."""
    return replicate_data({"data": problem.data, "train_key": train_key}, mesh)


def task_batch(problem: Problem, key: jax.Array, meta_batch: int):
    """`meta_batch` training tasks with a leading task axis."""
    return jax.vmap(problem.train_task)(jax.random.split(key, meta_batch))


def chunk_runner(learner: MetaLearner, problem: Problem, meta_batch: int, train_key: jax.Array,
                 mesh: Mesh | None = None, unroll: int | bool = 1):
    """`run(state, iterations) -> (state, mean metrics)`, jitted, over a run of iterations
    (a `Runner`: its compiled program takes `loop_inputs` last). With a learner that
    checks finiteness (`meta_learner(check_finite=True)`), the metrics hold "nonfinite_at":
    the first iteration whose step was not finite, or -1.

    Iteration i samples its tasks from `fold_in(train_key, i)`, so results do not depend on
    how the run is cut into chunks. Sampling, inner loops and meta-updates all stay on the
    device inside one `lax.scan`.

    With a `mesh` (default: one device; see `fometa.sharding`) the state, the iteration
    numbers and the outputs are replicated over its devices, and each iteration's sampled
    task batch ([meta_batch, ...] leaves) is constrained to be split along the mesh's
    "tasks" axis, so that every device samples and adapts to meta_batch/D tasks and the
    task mean becomes an all-reduce. `meta_batch` must be divisible by the mesh's size.
    `unroll`: of the `lax.scan` over iterations (XLA:GPU runs a loop's control on the host,
    so unrolling may pay there; `benchmarks/preset_speed.py --chunk-unroll`).
    """
    mesh = task_mesh() if mesh is None else mesh
    check_divisible(meta_batch, mesh)

    whole = replicated(mesh)

    @functools.partial(jax.jit, in_shardings=(whole, whole, whole), out_shardings=(whole, whole))
    def meta_chunk(state, iterations, inputs):
        on = bound(problem, inputs["data"])

        def body(state, i):
            tasks = task_batch(on, jax.random.fold_in(inputs["train_key"], i), meta_batch)
            return learner.step(state, shard_tasks(tasks, mesh))

        state, metrics = jax.lax.scan(body, state, iterations, unroll=unroll)
        finite = metrics.pop("finite", None)
        means = jax.tree_util.tree_map(jnp.mean, metrics)
        if finite is not None:  # a learner with check_finite: where the chunk first diverged
            means["nonfinite_at"] = jnp.where(jnp.all(finite > 0), -1,
                                              iterations[jnp.argmin(finite)])
        return state, means

    return Runner(meta_chunk, loop_inputs(problem, train_key, mesh))


def loop_runner(learner: MetaLearner, problem: Problem, meta_batch: int, train_key: jax.Array,
                mesh: Mesh | None = None):
    """`run(state, start, n) -> (state, mean metrics)`, jitted (a `Runner`), over
    meta-iterations start .. start + n - 1: `chunk_runner`'s iterations in a
    `lax.fori_loop` whose length is an argument, so one compiled program serves chunks of
    every length (the training loop times a short first chunk to choose the others'
    length). The metrics are the chunk's means, with "nonfinite_at" as in `chunk_runner`
    for a learner that checks finiteness."""
    mesh = task_mesh() if mesh is None else mesh
    check_divisible(meta_batch, mesh)

    whole = replicated(mesh)

    @functools.partial(jax.jit, in_shardings=(whole, whole, whole, whole),
                       out_shardings=(whole, whole))
    def meta_chunk(state, start, n, inputs):
        on = bound(problem, inputs["data"])

        # Jitted so that the shape probe below and the loop body share one trace (JAX
        # caches it by function and argument types): tracing the meta-step is seconds of
        # the compile time for second-order algorithms, and the probe used to double it.
        @jax.jit
        def step(state, i):
            tasks = task_batch(on, jax.random.fold_in(inputs["train_key"], i), meta_batch)
            state, metrics = learner.step(state, shard_tasks(tasks, mesh))
            return state, metrics.pop("finite", jnp.float32(1.0)), metrics

        shapes = jax.eval_shape(step, state, start)[2]
        sums = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        def body(k, carry):
            state, sums, first = carry
            i = start + k
            state, finite, metrics = step(state, i)
            sums = jax.tree_util.tree_map(jnp.add, sums, metrics)
            return state, sums, jnp.where((first < 0) & (finite == 0), i, first)

        state, sums, first = jax.lax.fori_loop(0, n, body, (state, sums, jnp.int32(-1)))
        means = jax.tree_util.tree_map(lambda s: s / n, sums)
        means["nonfinite_at"] = first
        return state, means

    return Runner(meta_chunk, loop_inputs(problem, train_key, mesh))
