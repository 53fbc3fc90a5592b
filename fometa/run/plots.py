"""Plots of runs, drawn only from the files of their run directories.

Matplotlib figures with the Agg canvas: no display is needed, and the caller's pyplot
backend and state are left alone. A run directory gets `learning_curve.png` (training loss,
and the evaluation metric with its 95% band, against meta-iterations, from metrics.jsonl),
`inner_steps.png` (from inner_steps.json) and, where the problem illustrates adaptation
(sine: the paper's Fig. 1), `adaptation.png` (from adaptation.json). `plot_runs` overlays
several runs' learning curves. Every figure's title says which run it is and how it was
trained (from config.json); the `*_figure` functions return the figure unsaved.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fometa.errors import RunDirError, UserError
from fometa.run.rundir import (ADAPTATION_PLOT, INNER_STEPS_PLOT, LEARNING_CURVE_PLOT, RunDir,
                               require_runs)

OVERLAY = "learning_curves.png"  # `fometa plot`'s default output, in the current folder
MODES = {"eval": "non-transductive", "eval_transductive": "transductive"}


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A matplotlib figure on its own Agg canvas (no pyplot, no backend switch)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out: Path) -> Path:
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=100)
    except OSError as e:
        raise UserError(f"cannot write {out} ({e.strerror or type(e).__name__})") from None
    except RuntimeError as e:  # a format whose writer needs a program (.pgf: a TeX system)
        raise UserError(f"cannot write {out}: {str(e).splitlines()[0]}") from None
    return Path(out)


def describe(run: RunDir) -> str:
    """The run in a line, from its config.json: "runs/x: reptile on omniglot 5-way 1-shot
    (preset reptile-omniglot-5w1s), 3,000 meta-iterations, seed 0"."""
    try:
        cfg = run.read_config()
    except RunDirError:
        return run.path.name
    task = f" {cfg.ways}-way {cfg.shots}-shot" if cfg.ways else ""
    preset = f" (preset {cfg.preset})" if cfg.preset else ""
    return (f"{run.path.name}: {cfg.algorithm} on {cfg.dataset}{task}{preset}, "
            f"{cfg.meta_iters:,} meta-iterations, seed {cfg.seed}")


def _curves(axes, run: RunDir, label: str | None, color=None) -> Curves:
    """One run's training loss (left) and evaluations (right). Few points get markers, a
    single evaluation an error bar; series are labelled by mode (and run, with `label`).
    The axes' labels and range are the caller's (`_frame`), from what this returns."""
    train, evals = run.read_metrics()
    loss_key = "query_loss" if train and "query_loss" in train[0] else "support_loss"
    train = [l for l in train if loss_key in l]
    if train:
        its = [l["iteration"] for l in train]
        axes[0].plot(its, [l[loss_key] for l in train], "-o" if len(its) < 20 else "-",
                     color=color, ms=4, label=label)
    metric = None
    for name, style in (("eval", "-o"), ("eval_transductive", "--s")):
        points = [(l["iteration"], l[name]) for l in evals if name in l]
        if not points:
            continue
        its = [p[0] for p in points]
        mean = np.array([p[1]["mean"] for p in points])
        ci = np.nan_to_num(np.array([p[1]["ci95"] for p in points], dtype=float))
        text = MODES[name] if label is None else f"{label}, {MODES[name]}"
        lines = axes[1].plot(its, mean, style, color=color, ms=4, label=text)
        if len(its) == 1:  # only the final evaluation: an error bar and its value
            axes[1].errorbar(its, mean, yerr=ci, color=lines[0].get_color(), capsize=4)
            axes[1].annotate(f"{mean[0]:.4g}", (its[0], mean[0]), textcoords="offset points",
                             xytext=(-8, 6), ha="right", fontsize=8)
        else:
            axes[1].fill_between(its, mean - ci, mean + ci, alpha=0.2, color=lines[0].get_color())
        metric = points[0][1]["metric"]
    last = max([l["iteration"] for l in train + evals], default=1)
    return Curves(last, loss_key if train else None, metric)


class Curves(NamedTuple):
    """What a run's curves (`_curves`) put on the axes: its last meta-iteration, its
    training loss's name and its evaluation metric's (None: none plotted)."""

    last: int
    loss: str | None
    metric: str | None


def _frame(axes, drawn: list[Curves]) -> None:
    """Labels and range of the axes that `drawn` runs' curves share: every run's whole
    length, the training losses' names (query or support loss, per algorithm)."""
    losses = sorted({c.loss for c in drawn if c.loss})
    axes[0].set_ylabel(" / ".join(l.replace("_", " ") for l in losses or ["support_loss"])
                       + " (training)")
    metrics = {c.metric for c in drawn if c.metric}
    if metrics:
        axes[1].set_ylabel(f"{metrics.pop()} after adaptation")
    for ax in axes:
        ax.set_xlabel("meta-iteration")
        ax.set_xlim(0, max(c.last for c in drawn) * 1.05)


def _legends(axes) -> None:
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)


def learning_curve_figure(run: RunDir) -> Figure:
    """Training loss and evaluation metric (95% band) against meta-iterations."""
    fig = new_figure((10, 4))
    axes = fig.subplots(1, 2)
    _frame(axes, [_curves(axes, run, None)])
    _legends(axes[1:])
    fig.suptitle(describe(run), fontsize=9)
    return fig


def plot_runs(run_dirs: list[str | Path], out: str | Path | None = None) -> Path:
    """The learning curves of several runs overlaid in one figure, written to `out`
    (default `learning_curves.png` in the current folder; its suffix picks the format)."""
    out = Path(out or OVERLAY)
    fig = new_figure((10, 4))
    formats = fig.canvas.get_supported_filetypes()
    if out.suffix[1:].lower() not in formats:
        raise UserError(f"cannot write {out}: unknown image format {out.suffix!r}; use one of "
                        f"{', '.join('.' + f for f in sorted(formats))}")
    if not out.absolute().parent.is_dir():
        raise UserError(f"cannot write {out}: folder {out.absolute().parent} does not exist")
    axes = fig.subplots(1, 2)
    runs = require_runs(run_dirs)
    drawn = [_curves(axes, run, run.path.name, color=f"C{i}") for i, run in enumerate(runs)]
    if len({c.metric for c in drawn if c.metric}) > 1:  # one axis cannot hold mse and accuracy
        named = sorted(f"{run.path}: {c.metric}" for run, c in zip(runs, drawn) if c.metric)
        raise UserError(f"the runs report different metrics ({', '.join(named)}): plot them "
                        "separately")
    _frame(axes, drawn)
    _legends(axes)
    fig.suptitle("\n".join(describe(r) for r in runs), fontsize=8)
    return _save(fig, out)


def inner_steps_figure(run: RunDir, curve: dict) -> Figure:
    """The metric after k inner steps at test time (inner_steps.json's `curve`)."""
    fig = new_figure((6, 4))
    ax = fig.subplots()
    for name, style in ((curve["metric"], "-o"), (f"{curve['metric']}_transductive", "--s")):
        if name not in curve:
            continue
        mean = np.array(curve[name]["mean"])
        ci = np.nan_to_num(np.array(curve[name]["ci95"], dtype=float))
        label = "transductive" if name.endswith("_transductive") else "non-transductive"
        line = ax.plot(curve["steps"], mean, style, ms=4, label=label)
        ax.fill_between(curve["steps"], mean - ci, mean + ci, alpha=0.2, color=line[0].get_color())
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("inner steps at test time")
    ax.set_ylabel(f"{curve['metric']} ({curve['tasks']} tasks)")
    if curve["metric"] == "mse":
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(describe(run), fontsize=8)
    return fig


def adaptation_figure(run: RunDir, figure: dict) -> Figure:
    """One task's adaptation (adaptation.json's `figure`): its first line (the truth) in
    black, the others (predictions) in colour, and its points (sine: the support)."""
    fig = new_figure((6.5, 4.3))
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
    ax.set_title(describe(run), fontsize=8)
    return fig


def plot_run(run: RunDir, missing_only: bool = False) -> list[Path]:
    """Every plot of a finished run that its files allow (see the module docstring); with
    `missing_only`, only those not there yet (a run killed while plotting)."""
    def wanted(name: str) -> bool:
        return not (missing_only and run.file(name).is_file())

    out = []
    if wanted(LEARNING_CURVE_PLOT):
        out.append(_save(learning_curve_figure(run), run.file(LEARNING_CURVE_PLOT)))
    curve = run.read_inner_steps()
    if curve is not None and wanted(INNER_STEPS_PLOT):
        out.append(_save(inner_steps_figure(run, curve), run.file(INNER_STEPS_PLOT)))
    figure = run.read_adaptation()
    if figure is not None and wanted(ADAPTATION_PLOT):
        out.append(_save(adaptation_figure(run, figure), run.file(ADAPTATION_PLOT)))
    return out
