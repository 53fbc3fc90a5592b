"""Plots written into a run directory (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ADAPTATION_PLOT = "adaptation.png"


def sine_adaptation(path: Path, problem, learner, state, key: jax.Array,
                    steps: tuple[int, ...] = (0, 1)) -> None:
    """The paper's Fig. 1: a task's true curve, its support points and the prediction
    before and after 1 and `eval_inner_iters` steps of adaptation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, model = problem.extras["tasks"], problem.extras["model"]
    task = problem.eval_task(key)
    x = jnp.linspace(*tasks.x_range, 200)[:, None]
    amp, phase = tasks.function(jax.random.split(key)[0])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x[:, 0], amp * jnp.sin(x[:, 0] + phase), "k-", lw=2, label="true")
    total = jax.tree_util.tree_leaves(task.support)[0].shape[0]
    for k in sorted(set(steps) | {total}):
        support = jax.tree_util.tree_map(lambda a: a[:k], task.support)
        params = learner.adapt(state, support) if k else state.params
        ax.plot(x[:, 0], model.apply(params, x)[:, 0], label=f"after {k} steps" if k else "before adaptation")
    ax.plot(task.support["x"][0, :, 0], task.support["y"][0, :, 0], "o", color="C3",
            label="support points")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_run(run_dir: Path, cfg, problem, learner, state, key: jax.Array) -> None:
    if cfg.dataset == "sine":
        sine_adaptation(Path(run_dir) / ADAPTATION_PLOT, problem, learner, state, key)
