"""Evaluation metric against the number of inner steps at test time."""

from __future__ import annotations

from typing import Any

import jax

from fometa.learner import MetaLearner, MetaState
from fometa.problems import Problem


def step_counts(total: int, points: int = 4) -> list[int]:
    """0, 1 and roughly geometric counts up to `total` (included), at most `points` + 2."""
    counts = {0, 1, total}
    for i in range(1, points):
        counts.add(max(1, round(total ** (i / points))))
    return sorted(c for c in counts if c <= total)


def metric_by_steps(learner: MetaLearner, state: MetaState, problem: Problem, key: jax.Array,
                    num_tasks: int, total_steps: int) -> dict[str, Any]:
    """The evaluation metrics after k inner steps for k in `step_counts(total_steps)`, on the
    same `num_tasks` tasks (the first k support batches of each)."""
    from fometa.train import evaluate_tasks, mean_ci95

    steps = step_counts(total_steps)
    out: dict[str, Any] = {"metric": problem.metric, "tasks": num_tasks, "steps": steps}
    for k in steps:
        def first_k(key, k=k):
            task = problem.eval_task(key)
            return task._replace(support=jax.tree_util.tree_map(lambda a: a[:k], task.support))

        values = evaluate_tasks(learner, state, problem._replace(eval_task=first_k), key, num_tasks)
        for name, v in values.items():
            mean, ci95 = mean_ci95(v)
            entry = out.setdefault(name, {"mean": [], "ci95": []})
            entry["mean"].append(mean)
            entry["ci95"].append(ci95)
    return out
