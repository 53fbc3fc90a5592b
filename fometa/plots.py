"""Plots of runs (matplotlib, Agg backend: no display needed).

A run directory gets `learning_curve.png` (training loss, and the evaluation metric with its
95% band, against meta-iterations), `inner_steps.png` (the metric against the number of inner
steps at test time, with `inner_steps.json` holding the numbers) and, for sine runs,
`adaptation.png` (the paper's Fig. 1). `plot_runs` overlays the learning curves of several runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp

ADAPTATION_PLOT = "adaptation.png"
LEARNING_CURVE = "learning_curve.png"
INNER_STEPS_PLOT = "inner_steps.png"
INNER_STEPS_JSON = "inner_steps.json"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """The training and evaluation lines of `RUN_DIR/metrics.jsonl`."""
    lines = [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
             if l.strip()]
    return ([l for l in lines if l.get("kind") == "train"],
            [l for l in lines if l.get("kind") == "eval"])


def _curves(axes, run_dir: Path, label: str | None, color=None) -> None:
    train, evals = read_metrics(run_dir)
    loss_key = "query_loss" if train and "query_loss" in train[0] else "support_loss"
    if train:
        axes[0].plot([l["iteration"] for l in train], [l[loss_key] for l in train], color=color,
                     label=label)
    axes[0].set_ylabel(loss_key.replace("_", " ") + " (training)")
    for name, style in (("eval", "-o"), ("eval_transductive", "--s")):
        points = [(l["iteration"], l[name]) for l in evals if name in l]
        if not points:
            continue
        its = [p[0] for p in points]
        mean = jnp.array([p[1]["mean"] for p in points])
        ci = jnp.nan_to_num(jnp.array([p[1]["ci95"] for p in points]))
        suffix = " (transductive)" if name != "eval" else ""
        lines = axes[1].plot(its, mean, style, color=color, ms=4,
                             label=(label or "") + suffix or None)
        if len(its) == 1:  # only the final evaluation: an error bar instead of a band
            axes[1].errorbar(its, mean, yerr=ci, color=lines[0].get_color(), capsize=4)
        else:
            axes[1].fill_between(its, mean - ci, mean + ci, alpha=0.2, color=lines[0].get_color())
        axes[1].set_ylabel(f"{points[0][1]['metric']} after adaptation")
    for ax in axes:
        ax.set_xlabel("meta-iteration")


def learning_curve(run_dir: Path, out: Path | None = None) -> Path:
    """Training loss and evaluation metric (95% band) against meta-iterations."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    _curves(axes, Path(run_dir), None)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    out = Path(out or Path(run_dir) / LEARNING_CURVE)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


OVERLAY = "learning_curves.png"


def plot_runs(run_dirs: list[Path], out: Path | None = None) -> Path:
    """The learning curves of several runs overlaid in one figure, written to `out`
    (default `learning_curves.png` in the current folder)."""
    out = Path(out or OVERLAY)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, run_dir in enumerate(run_dirs):
        _curves(axes, Path(run_dir), Path(run_dir).name, color=f"C{i}")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def inner_steps(run_dir: Path, curve: dict) -> Path:
    """The metric after k inner steps at test time (`curves.metric_by_steps`' output)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    both = f"{curve['metric']}_transductive" in curve
    for name, style in ((curve["metric"], "-o"), (f"{curve['metric']}_transductive", "--s")):
        if name not in curve:
            continue
        mean = jnp.array(curve[name]["mean"])
        ci = jnp.nan_to_num(jnp.array(curve[name]["ci95"]))
        label = ("transductive" if name != curve["metric"] else "non-transductive") if both else None
        line = ax.plot(curve["steps"], mean, style, ms=4, label=label)
        ax.fill_between(curve["steps"], mean - ci, mean + ci, alpha=0.2, color=line[0].get_color())
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("inner steps at test time")
    ax.set_ylabel(f"{curve['metric']} ({curve['tasks']} tasks)")
    if curve["metric"] == "mse":
        ax.set_yscale("log")
    if both:
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(run_dir) / INNER_STEPS_PLOT
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def sine_adaptation(path: Path, problem, learner, state, key: jax.Array,
                    steps: tuple[int, ...] = (0, 1)) -> None:
    """The paper's Fig. 1: a task's true curve, its support points and the prediction
    before and after 1 and `eval_inner_iters` steps of adaptation."""
    plt = _pyplot()
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
        ax.plot(x[:, 0], model.apply(params, x)[:, 0],
                label=f"after {k} steps" if k else "before adaptation")
    ax.plot(task.support["x"][0, :, 0], task.support["y"][0, :, 0], "o", color="C3",
            label="support points")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_run(run_dir: Path, cfg, problem, learner, state, key: jax.Array,
             curve_tasks: int = 200) -> None:
    """Every plot of a finished run (see the module docstring)."""
    from fometa.curves import metric_by_steps

    run_dir = Path(run_dir)
    learning_curve(run_dir)
    curve = metric_by_steps(learner, state, problem, key, min(cfg.eval_tasks, curve_tasks),
                            cfg.eval_inner_iters)
    (run_dir / INNER_STEPS_JSON).write_text(json.dumps(curve, indent=1) + "\n")
    inner_steps(run_dir, curve)
    if cfg.dataset == "sine":
        sine_adaptation(run_dir / ADAPTATION_PLOT, problem, learner, state, key)
