"""Plots and the metric-against-inner-steps curve of a run."""

import json
import shutil

import jax
import numpy as np
import pytest

from matplotlib.figure import Figure

from fometa.errors import UserError
from fometa.run import plots
from fometa.run import (RunDir, chunk_runner, curve_steps, evaluate_run, evaluate_tasks, plot_runs,
                        resolve, setup, train)

# One pytest-xdist worker runs this module: its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("plots")


PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, iters in (("short", 300), ("long", 3000)):
        out[name] = (root / name, train(resolve("sine", meta_iters=iters, log_every=iters // 3,
                                                eval_tasks=50), root / name, progress=False))
    return out


def test_curve_steps():
    assert curve_steps(32) == (0, 1, 2, 6, 13, 32)
    assert curve_steps(1) == (0, 1) and curve_steps(10) == tuple(range(11))
    assert all(a < b for a, b in zip(curve_steps(50), curve_steps(50)[1:]))


def test_run_plots_are_written(runs):
    run_dir, _ = runs["short"]
    for name in ("learning_curve.png", "inner_steps.png", "adaptation.png"):
        assert (run_dir / name).read_bytes()[:8] == PNG, name


def test_inner_steps_curve_ends_at_the_final_evaluation(runs):
    run_dir, results = runs["long"]
    curve = json.loads((run_dir / "inner_steps.json").read_text())
    assert curve["metric"] == "mse" and curve["tasks"] == 50
    assert curve["steps"] == list(curve_steps(32))
    mse = curve["mse"]["mean"]
    assert len(mse) == len(curve["steps"]) == len(curve["mse"]["ci95"])
    # The curve's last point is the final evaluation's number, which re-evaluating the
    # saved checkpoint (another process's path: restore, then evaluate) gives again.
    assert mse[-1] == results["eval"]["mean"]
    again = evaluate_run(run_dir, write=False)
    assert again["eval"]["mean"] == pytest.approx(mse[-1], rel=1e-6)
    # A meta-trained sine initialisation improves with adaptation (paper Fig. 1).
    assert mse[-1] < 0.5 * mse[0]


def test_plot_runs_overlays_several_runs(runs, tmp_path):
    out = plot_runs([runs["short"][0], runs["long"][0]], tmp_path / "both.png")
    assert out.read_bytes()[:8] == PNG
    train_lines, eval_lines = RunDir(runs["long"][0]).read_metrics()
    assert [l["iteration"] for l in train_lines] == [1000, 2000, 3000]
    assert len(eval_lines) == 1 and eval_lines[0]["eval"]["metric"] == "mse"


def test_plot_runs_shows_every_run_whole_and_one_metric_per_axis(runs, tmp_path, monkeypatch):
    """The range came from the last run only (a 3,000-iteration run drawn off the axes by a
    300-iteration one), and a second run's metric shared the first one's label."""
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, out: drawn.setdefault("axes", fig.axes))
    plot_runs([runs["long"][0], runs["short"][0]], tmp_path / "both.png")
    assert [ax.get_xlim()[1] for ax in drawn["axes"]] == [3000 * 1.05] * 2
    other = tmp_path / "accuracy_run"
    shutil.copytree(runs["short"][0], other)
    metrics = other / "metrics.jsonl"
    metrics.write_text(metrics.read_text().replace('"metric": "mse"', '"metric": "accuracy"'))
    with pytest.raises(UserError, match="different metrics .*accuracy_run: accuracy.*: plot "
                                        "them separately"):
        plot_runs([runs["long"][0], other], tmp_path / "mixed.png")


def test_a_format_whose_writer_needs_a_program_is_one_line(runs, tmp_path, monkeypatch):
    def no_tex(*args, **kwargs):
        raise RuntimeError("'xelatex' not found; install it or change rcParams[...]\nmore")

    monkeypatch.setattr(Figure, "savefig", no_tex)
    with pytest.raises(UserError, match=r"cannot write .*curves.pgf: 'xelatex' not found; "
                                        r"install it or change rcParams\[...\]$"):
        plot_runs([runs["short"][0]], tmp_path / "curves.pgf")


@pytest.mark.parametrize("inner_steps", [32, 6])  # recorded in stretches; at every step
def test_evaluation_path_is_the_plain_one_in_float64(inner_steps):
    """Recording the metric at several step counts adapts in stretches (or, up to 10 steps,
    records every step inside one loop); in float64 the last point is the plain
    evaluation's number (float32 rounding differs between the paths)."""
    with jax.enable_x64(True):
        cfg = resolve("sine", seed=5, eval_inner_iters=inner_steps)
        run = setup(cfg)
        state = run.learner.init(run.problem.init_params(run.init_key))
        state, _ = chunk_runner(run.learner, run.problem, 1, run.train_key)(
            state, jax.numpy.arange(100))
        plain = evaluate_tasks(run.learner, state, run.problem, run.eval_key, 20)["mse"]
        path = evaluate_tasks(run.learner, state, run.problem, run.eval_key, 20,
                              steps=curve_steps(inner_steps))["mse"]
        tasks = jax.vmap(run.problem.eval_task)(jax.random.split(run.eval_key, 20))
        before = jax.vmap(run.problem.metric_fn, in_axes=(None, 0))(state.params, tasks.query)
    assert path.shape == (20, len(curve_steps(inner_steps)))
    np.testing.assert_allclose(path[:, -1], plain, rtol=1e-9)
    np.testing.assert_allclose(path[:, 0], before["mse"], rtol=1e-12)  # 0 steps: no change
