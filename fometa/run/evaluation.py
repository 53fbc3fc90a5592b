"""Evaluation: metrics after adaptation on test tasks, their summary, and by inner steps.

Tasks are sampled and adapted to on the device; the summary (mean and 95% interval) is
results.json's entries; `by_steps` the metric by inner steps (inner_steps.json), from
the same adaptations.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from fometa.errors import ConfigError, DivergenceError
from fometa.inner import whole
from fometa.learner import MetaLearner, MetaState, evaluate
from fometa.run.problems import Problem, bound
from fometa.sharding import (Mesh, mesh_size, replicate, replicate_data, replicated,
                             shard_tasks, task_mesh, task_sharded)


# On the CPU an evaluation chunk of a few image tasks runs faster per task than a large one
# (its activations stay in cache): 10 Omniglot 5-way 1-shot tasks at once, not 163 as with
# 1 GiB (benchmarks/README.md, "Evaluation chunks on the CPU"); sine's stay large.
CPU_EVAL_MEMORY = 64 << 20
# A chunk's activations are estimated at this many times its tasks' data.
ACTIVATION_FACTOR = 32


def mean_ci95(values: np.ndarray) -> tuple[float, float | None]:
    """Mean and the half-width of its 95% normal confidence interval (None for one value)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), None
    return float(values.mean()), float(1.96 * values.std(ddof=1) / math.sqrt(values.size))


def evaluator(learner: MetaLearner, problem: Problem, mesh: Mesh | None = None,
              steps: tuple[int, ...] | None = None, memory: int | None = None
              ) -> Callable[[MetaState, jax.Array, int], dict[str, np.ndarray]]:
    """`run(state, key, num_tasks, progress=None)`: the metrics after adaptation on
    `num_tasks` evaluation tasks drawn from `key`, each shape [num_tasks] (`progress(done,
    num_tasks)` after each chunk of tasks); with `steps`, after each of those
    numbers of inner steps, [num_tasks, len(steps)], from one adaptation per task
    (`fometa.evaluate`). One `run` compiles once per chunk shape (ahead of time with
    `run.prepare(state, key, num_tasks)`; `run.lower(state, key, num_tasks)` is a chunk's
    lowered program): keep it for repeated evaluations.

    Tasks are sampled and adapted to on the device in vmapped chunks sized so that their
    data, and activations estimated at ACTIVATION_FACTOR x the data, stay under `memory`
    bytes per device (default `CPU_EVAL_MEMORY` on CPU, 16 GiB on accelerators;
    `chunk_memory(problem, k)` is the budget of k tasks at once). With a `mesh` (default: one
    device) each chunk's task keys ([chunk, 2]) are split over its D devices, so the chunk is a
    multiple of D; the state is replicated. The tasks do not depend on D or the chunking;
    a metric may, by rounding, where two classes nearly tie (an untrained Omniglot model:
    4 of 5,000 transductive queries changed between chunks of 163 and 10 tasks).
    """
    mesh = task_mesh() if mesh is None else mesh
    n = mesh_size(mesh)
    if memory is None:
        memory = CPU_EVAL_MEMORY if jax.default_backend() == "cpu" else 1 << 34
    whole, split = replicated(mesh), task_sharded(mesh)

    data = replicate_data(problem.data, mesh)  # an argument of the program, not a constant

    @functools.partial(jax.jit, in_shardings=(whole, split, whole), out_shardings=whole)
    def eval_chunk(state, keys, data):
        tasks = shard_tasks(jax.vmap(bound(problem, data).eval_task)(keys), mesh)
        return evaluate(learner, state, tasks, problem.metric_fn, steps)

    compiled: dict[int, Any] = {}  # by chunk size

    def sized(state: MetaState, key: jax.Array, num_tasks: int):
        """The replicated state, the task keys (padded to whole chunks) and the chunk size."""
        per_device = max(1, min(-(-num_tasks // n), 1000, memory // chunk_memory(problem, 1)))
        chunk = n * per_device
        state = replicate(state, mesh)
        keys = jax.random.split(key, num_tasks)
        padded = num_tasks + (-num_tasks % chunk)  # repeat tasks to fill the last chunk
        keys = keys[jnp.arange(padded) % num_tasks] if padded > num_tasks else keys
        return state, keys, chunk

    def lowered(state: MetaState, keys: jax.Array, chunk: int):
        """The evaluation of one chunk of `keys`, lowered."""
        return eval_chunk.lower(state, jax.device_put(keys[:chunk], split), data)

    def chunks(state: MetaState, key: jax.Array, num_tasks: int):
        """`sized`, with the compiled evaluation of a chunk."""
        state, keys, chunk = sized(state, key, num_tasks)
        if chunk not in compiled:
            compiled[chunk] = lowered(state, keys, chunk).compile()
        return state, keys, chunk, compiled[chunk]

    def run(state: MetaState, key: jax.Array, num_tasks: int,
            progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
        check_tasks(num_tasks)
        state, keys, chunk, evaluate_chunk = chunks(state, key, num_tasks)
        out = []
        for i in range(0, len(keys), chunk):
            out.append(jax.device_get(evaluate_chunk(
                state, jax.device_put(keys[i:i + chunk], split), data)))
            if progress is not None:
                progress(min(i + chunk, num_tasks), num_tasks)
        return {k: np.concatenate([o[k] for o in out])[:num_tasks] for k in out[0]}

    run.prepare = lambda state, key, num_tasks: chunks(state, key, num_tasks) and None
    run.lower = lambda state, key, num_tasks: lowered(*sized(state, key, num_tasks))
    return run


def check_tasks(num_tasks: Any) -> None:
    """A ValueError unless `num_tasks` is a whole number >= 1."""
    if not whole(num_tasks, 1):
        raise ValueError(f"num_tasks must be a whole number >= 1, got {num_tasks!r}")


def chunk_memory(problem: Problem, k: int) -> int:
    """The `memory` budget (bytes per device) under which `evaluator` adapts to `k`
    evaluation tasks of `problem` at once: their data times ACTIVATION_FACTOR."""
    task_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(
        jax.eval_shape(problem.eval_task, jax.random.PRNGKey(0))))
    return ACTIVATION_FACTOR * max(task_bytes, 1) * k


def evaluate_tasks(learner: MetaLearner, state: MetaState, problem: Problem, key: jax.Array,
                   num_tasks: int, memory: int | None = None, mesh: Mesh | None = None,
                   steps: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
    """One evaluation: `evaluator(learner, problem, mesh, steps, memory)(state, key,
    num_tasks)`."""
    return evaluator(learner, problem, mesh, steps, memory)(state, key, num_tasks)


def summarize(problem: Problem, values: dict[str, np.ndarray], **extra) -> dict[str, Any]:
    """results.json's evaluation entries, one per metric under the key `problem.results`
    gives it ("eval", "eval_transductive"): the metric's mean, ci95 and task count."""
    unnamed = sorted(set(values) - set(problem.results))
    if unnamed:
        raise ConfigError(f"the problem's metric_fn returns {unnamed}, which its results "
                          f"mapping {dict(problem.results)} does not name")
    check_values(values, 1)
    out = {}
    for name, v in values.items():
        mean, ci95 = mean_ci95(v)
        out[problem.results[name]] = {"metric": problem.metric, "mean": mean, "ci95": ci95,
                                      "tasks": len(v), **extra}
    return out


def check_values(values: dict[str, np.ndarray], ndim: int) -> None:
    """A ConfigError unless each metric holds values of `ndim` axes ([tasks], or [tasks,
    steps]) for the same one or more tasks, and a DivergenceError if one is not finite: a
    mean and interval are never reported over values that are not one per task, or are
    NaN."""
    shapes = {name: np.shape(v) for name, v in values.items()}
    if not values or any(len(s) != ndim or not s[0] for s in shapes.values()) or len(
            {s[0] for s in shapes.values()}) != 1:
        raise ConfigError(f"evaluation values {shapes} must be {ndim}-d arrays with the same "
                          "number (one or more) of tasks first")
    for name, v in values.items():
        if not np.isfinite(np.asarray(v, dtype=np.float64)).all():
            raise DivergenceError(f"the evaluation's {name!r} is not finite (NaN or inf) for "
                                  "some tasks: no mean is reported")


def curve_steps(total: int, points: int = 4) -> tuple[int, ...]:
    """The inner-step counts an evaluation records: every one up to 10 steps, else 0, 1 and
    roughly geometric counts up to `total` (included)."""
    if total <= 10:
        return tuple(range(total + 1))
    counts = {0, 1, total} | {max(1, round(total ** (i / points))) for i in range(1, points)}
    return tuple(sorted(counts))


def by_steps(problem: Problem, values: dict[str, np.ndarray],
             steps: tuple[int, ...]) -> dict[str, Any]:
    """inner_steps.json: each metric's mean and ci95 after each number of inner steps, from
    values [tasks, len(steps)]."""
    check_values(values, 2)
    out: dict[str, Any] = {"metric": problem.metric,
                           "tasks": len(next(iter(values.values()))), "steps": list(steps)}
    for name, v in values.items():
        stats = [mean_ci95(v[:, i]) for i in range(len(steps))]
        out[name] = {"mean": [m for m, _ in stats], "ci95": [c for _, c in stats]}
    return out
