"""Plots and the metric-against-inner-steps curve of a run."""

import json

import pytest

from fometa.run import RunDir, plot_runs, resolve, step_counts, train

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, iters in (("short", 300), ("long", 3000)):
        out[name] = (root / name, train(resolve("sine", meta_iters=iters, log_every=iters // 3,
                                                eval_tasks=50), root / name, progress=False))
    return out


def test_step_counts():
    assert step_counts(32) == [0, 1, 2, 6, 13, 32]
    assert step_counts(1) == [0, 1]
    assert step_counts(2)[0] == 0 and step_counts(2)[-1] == 2
    assert all(a < b for a, b in zip(step_counts(50), step_counts(50)[1:]))


def test_run_plots_are_written(runs):
    run_dir, _ = runs["short"]
    for name in ("learning_curve.png", "inner_steps.png", "adaptation.png"):
        assert (run_dir / name).read_bytes()[:8] == PNG, name


def test_inner_steps_curve_ends_at_the_final_evaluation(runs):
    run_dir, results = runs["long"]
    curve = json.loads((run_dir / "inner_steps.json").read_text())
    assert curve["metric"] == "mse" and curve["tasks"] == 50
    assert curve["steps"] == step_counts(32)
    mse = curve["mse"]["mean"]
    assert len(mse) == len(curve["steps"]) == len(curve["mse"]["ci95"])
    # The same 50 tasks as the final evaluation: its number is the curve's last point.
    assert mse[-1] == pytest.approx(results["eval"]["mean"], rel=1e-5)
    # A meta-trained sine initialisation improves with adaptation (paper Fig. 1).
    assert mse[-1] < 0.5 * mse[0]


def test_plot_runs_overlays_several_runs(runs, tmp_path):
    out = plot_runs([runs["short"][0], runs["long"][0]], tmp_path / "both.png")
    assert out.read_bytes()[:8] == PNG
    train_lines, eval_lines = RunDir(runs["long"][0]).read_metrics()
    assert [l["iteration"] for l in train_lines] == [1000, 2000, 3000]
    assert len(eval_lines) == 1 and eval_lines[0]["eval"]["metric"] == "mse"
