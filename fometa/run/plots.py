"""Plots of runs, drawn only from the files of their run directories.

Matplotlib figures with the Agg canvas: no display is needed, and the caller's pyplot
backend and state are left alone. A run directory gets `learning_curve.png` (training loss,
and the evaluation metric with its 95% band, against meta-iterations, from metrics.jsonl),
`inner_steps.png` (from inner_steps.json) and, where the problem illustrates adaptation
(sine: the paper's Fig. 1), `adaptation.png` (from adaptation.json). `plot_runs` overlays
several runs' learning curves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fometa.errors import UserError
from fometa.run.rundir import (ADAPTATION_PLOT, INNER_STEPS_PLOT, LEARNING_CURVE_PLOT, RunDir,
                               require_runs)

OVERLAY = "learning_curves.png"  # `fometa plot`'s default output, in the current folder


def _figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return Path(out)


def _curves(axes, run: RunDir, label: str | None, color=None) -> None:
    train, evals = run.read_metrics()
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
        mean = np.array([p[1]["mean"] for p in points])
        ci = np.nan_to_num(np.array([p[1]["ci95"] for p in points], dtype=float))
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


def learning_curve(run: RunDir) -> Path:
    """Training loss and evaluation metric (95% band) against meta-iterations."""
    fig = _figure((10, 3.8))
    axes = fig.subplots(1, 2)
    _curves(axes, run, None)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    return _save(fig, run.file(LEARNING_CURVE_PLOT))


def plot_runs(run_dirs: list[str | Path], out: str | Path | None = None) -> Path:
    """The learning curves of several runs overlaid in one figure, written to `out`
    (default `learning_curves.png` in the current folder; its suffix picks the format)."""
    out = Path(out or OVERLAY)
    fig = _figure((10, 3.8))
    formats = fig.canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in formats:
        raise UserError(f"cannot write {out}: unknown image format {out.suffix!r}; use one of "
                        f"{', '.join('.' + f for f in sorted(formats))}")
    if not out.absolute().parent.is_dir():
        raise UserError(f"cannot write {out}: folder {out.absolute().parent} does not exist")
    axes = fig.subplots(1, 2)
    for i, run in enumerate(require_runs(run_dirs)):
        _curves(axes, run, run.path.name, color=f"C{i}")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, out)


def inner_steps(run: RunDir, curve: dict) -> Path:
    """The metric after k inner steps at test time (inner_steps.json's `curve`)."""
    fig = _figure((5.5, 3.8))
    ax = fig.subplots()
    both = f"{curve['metric']}_transductive" in curve
    for name, style in ((curve["metric"], "-o"), (f"{curve['metric']}_transductive", "--s")):
        if name not in curve:
            continue
        mean = np.array(curve[name]["mean"])
        ci = np.nan_to_num(np.array(curve[name]["ci95"], dtype=float))
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
    return _save(fig, run.file(INNER_STEPS_PLOT))


def adaptation(run: RunDir, figure: dict) -> Path:
    """One task's adaptation (adaptation.json's `figure`): its first line (the truth) in
    black, the others (predictions) in colour, and its points (sine: the support)."""
    fig = _figure((6, 4))
    ax = fig.subplots()
    (truth, y), *rest = figure["lines"].items()
    ax.plot(figure["x"], y, "k-", lw=2, label=truth)
    for label, y in rest:
        ax.plot(figure["x"], y, label=label)
    for label, points in figure["points"].items():
        ax.plot(points["x"], points["y"], "o", color="C3", label=label)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, run.file(ADAPTATION_PLOT))


def plot_run(run: RunDir, missing_only: bool = False) -> list[Path]:
    """Every plot of a finished run that its files allow (see the module docstring); with
    `missing_only`, only those not there yet (a run killed while plotting)."""
    def wanted(name: str) -> bool:
        return not (missing_only and run.file(name).is_file())

    out = [learning_curve(run)] if wanted(LEARNING_CURVE_PLOT) else []
    curve = run.read_inner_steps()
    if curve is not None and wanted(INNER_STEPS_PLOT):
        out.append(inner_steps(run, curve))
    figure = run.read_adaptation()
    if figure is not None and wanted(ADAPTATION_PLOT):
        out.append(adaptation(run, figure))
    return out
