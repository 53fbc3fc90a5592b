"""What a researcher meets first: MAML through Adam, each (dataset, algorithm)'s own preset,
visible defaults, feedback while it works, readable plots, their own problem through the run
machinery, clear errors for API misuse, and more datasets."""

import json
import pickle
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fometa
from fometa.data import DataError, classes_from_labels, load_cifar_fs
from fometa.data.cifar_fs import TEST, VAL
from fometa.run import (PRESETS, Problem, RunDir, chunk_memory, evaluator, load_run,
                        register_dataset, resolve, setup, train)
from fometa.run.cli import main
from fometa.run.plots import learning_curve_figure
from fometa.run.training import auto_chunk


# --- 1. MAML through the inner Adam -------------------------------------------------------

def unused_param_problem():
    """A parameter the loss never reads: its gradient is exactly 0, as batch norm makes the
    conv biases' in the paper's networks."""
    loss = lambda p, b: jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2)  # p["unused"] unread
    params = {"w": jnp.ones((3, 1)), "unused": jnp.zeros(2)}
    batch = {"x": jnp.arange(12.0).reshape(4, 3) / 10, "y": jnp.ones((4, 1))}
    support = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), batch)
    return loss, params, support, batch


def test_maml_through_adam_without_eps_root_says_so():
    loss, params, support, query = unused_param_problem()
    with pytest.raises(ValueError, match="eps_root"):
        fometa.maml_grad(loss, params, support, query, optax.adam(1e-3, b1=0.0))
    grads = fometa.maml_grad(loss, params, support, query, optax.adam(1e-3, b1=0.0, eps_root=1e-8))
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))
    # First-order rules never differentiate through the optimizer: no eps_root needed.
    fometa.fomaml_grad(loss, params, support, query, optax.adam(1e-3, b1=0.0))


def test_the_eps_root_check_runs_under_jit_and_skips_traced_hyperparameters():
    loss, params, support, query = unused_param_problem()
    with pytest.raises(ValueError, match="eps_root"):
        jax.jit(lambda p: fometa.maml_grad(loss, p, support, query,
                                           optax.adam(1e-3, b1=0.0)))(params)
    # A traced learning rate leaves nothing concrete to probe: no error at trace time.
    grads = jax.jit(lambda lr: fometa.maml_grad(
        loss, params, support, query, optax.adam(lr, b1=0.0, eps_root=1e-8)))(1e-3)
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))


def test_fometa_builds_a_differentiable_inner_adam_for_maml():
    from fometa.run.problems import INNER_OPTIMIZERS

    loss, params, support, query = unused_param_problem()
    grads = fometa.maml_grad(loss, params, support, query, INNER_OPTIMIZERS["adam"](1e-3, True))
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))


# --- 3. presets for every (dataset, algorithm), visible defaults, the command ------------------

@pytest.mark.parametrize("dataset, algorithm, preset", [
    ("sine", "maml", "maml-sine"), ("omniglot", "maml", "maml-omniglot-5w1s"),
    ("omniglot", "fomaml", "fomaml-omniglot-5w1s"), ("mini-imagenet", "maml",
                                                     "maml-mini-imagenet-5w1s"),
    ("omniglot", "foml", "reptile-omniglot-5w1s"), ("cifar-fs", "reptile", "reptile-cifar-fs-5w1s"),
])
def test_each_dataset_and_algorithm_starts_from_its_paper_preset(dataset, algorithm, preset):
    cfg = resolve(dataset, algorithm=algorithm).to_dict()
    for name, value in PRESETS[preset].settings.items():
        if name != "algorithm":
            assert cfg[name] == (list(value) if isinstance(value, tuple) else value) or \
                cfg[name] == value, name
    assert cfg["algorithm"] == algorithm


def test_help_shows_defaults_and_presets_show_their_settings(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "inner learning rate [0.02]" in help_text and "meta-iterations [30000]" in help_text
    assert main(["presets", "maml-omniglot-5w1s"]) == 0
    out = capsys.readouterr().out
    assert "source: Finn et al. 2017" in out and "transductive 98.7 +/- 0.4%" in out
    assert re.search(r"\* --loss-reduction\s+sum/shots", out)
    assert "differs on purpose:" in out and "batch norm" in out


def test_version_and_bare_fometa(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"fometa {fometa.__version__}"
    assert main([]) == 2
    assert "usage: fometa" in capsys.readouterr().out


# --- 4. feedback: the chunk follows the run's length and speed; progress through evaluation -

def test_auto_chunk():
    # A round number: about 3 s a chunk, and at least 50 chunks a run.
    assert auto_chunk(0.001, 1000) == 20
    assert auto_chunk(1.0, 1000) == 2
    assert auto_chunk(0.062, 100000) == 20    # 48 -> 20
    assert auto_chunk(66e-6, 30000) == 500   # 600 -> 500
    assert auto_chunk(1e-6, 10) == 1


def test_runs_without_log_every_log_often_and_evaluations_report_progress(tmp_path):
    results = train(resolve("sine", meta_iters=300, eval_tasks=30), tmp_path / "run",
                    progress=False, plots=False)
    train_lines, _ = RunDir(tmp_path / "run").read_metrics()
    its = [l["iteration"] for l in train_lines]
    assert its[0] == 10 and its[-1] == 300 and len(its) >= 30
    chunk = its[2] - its[1]
    assert all(i % chunk == 0 for i in its[1:])  # after the first, chunks end on multiples
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["log_every"] is None
    run = setup(resolve("sine"))
    state = run.learner.init(run.problem.init_params(run.init_key))
    seen = []
    evaluator(run.learner, run.problem, memory=40 * 10 ** 6)(
        state, run.eval_key, 2500, lambda done, total: seen.append((done, total)))
    assert len(seen) >= 2 and seen[-1] == (2500, 2500)
    assert all(a[0] < b[0] for a, b in zip(seen, seen[1:]))
    assert results["eval"]["tasks"] == 30



def test_cpu_evaluation_of_image_tasks_runs_in_small_chunks_of_the_same_tasks():
    """On the CPU an Omniglot-sized evaluation goes in chunks of about ten tasks (faster
    per task than hundreds: benchmarks/README.md), and they are the tasks, with the
    metrics, of one-task chunks."""
    from fometa.run import Splits, classification_problem, make_learner
    cfg = resolve(preset="reptile-omniglot-5w1s")  # 50 evaluation steps
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 20, 28, 28, 1), np.uint8)
    problem = classification_problem(cfg, Splits(images, images))
    learner = make_learner(cfg, problem)
    state = learner.init(problem.init_params(jax.random.PRNGKey(0)))
    seen = []
    chunked = evaluator(learner, problem)(state, jax.random.PRNGKey(1), 30,
                                          lambda done, total: seen.append(done))
    assert jax.default_backend() != "cpu" or 2 <= seen[0] <= 16
    single = evaluator(learner, problem, memory=chunk_memory(problem, 1))(
        state, jax.random.PRNGKey(1), 30)
    threes = []  # chunk_memory(problem, k) is the budget of chunks of k tasks
    evaluator(learner, problem, memory=chunk_memory(problem, 3))(
        state, jax.random.PRNGKey(1), 7, lambda done, total: threes.append(done))
    assert threes == [3, 6, 7]
    for name in chunked:  # the same tasks; a near tie may round the other way
        assert np.mean(chunked[name] == single[name]) >= 0.9

# --- 5. plots that say what run they are, short and long ---------------------------------

def test_plots_read_well_for_one_chunk_and_many(tmp_path):
    for name, iters, log in (("short", 300, 300), ("long", 3000, 100)):
        train(resolve("sine", meta_iters=iters, log_every=log, eval_tasks=20), tmp_path / name,
              progress=False, plots=False)
        fig = learning_curve_figure(RunDir(tmp_path / name))
        loss_ax, eval_ax = fig.axes
        title = fig.get_suptitle()
        assert name in title and f"{iters:,} meta-iterations" in title
        assert loss_ax.get_xlabel() == eval_ax.get_xlabel() == "meta-iteration"
        assert loss_ax.get_xlim()[1] >= iters and eval_ax.get_xlim()[1] >= iters
        (loss_line,) = loss_ax.get_lines()
        assert len(loss_line.get_xdata()) == iters // log
        if iters // log < 20:
            assert loss_line.get_marker() == "o"  # one chunk is still a visible point
        labels = [t.get_text() for t in eval_ax.get_legend().get_texts()]
        assert labels == ["non-transductive"]


# --- 6. a user's own problem through the run machinery ------------------------------------

def test_own_problem_trains_resumes_evaluates_and_plots(tmp_path, registered, capsys):
    model = fometa.MLP(hidden=(16,))

    def build(cfg):
        def task(key, steps):
            ka, kx, kq = jax.random.split(key, 3)
            a = jax.random.normal(ka)
            xs = jax.random.normal(kx, (steps, 8, 1))
            xq = jax.random.normal(kq, (20, 1))
            return fometa.Task({"x": xs, "y": a * xs}, {"x": xq, "y": a * xq})

        mse = lambda p, b: jnp.mean((model.apply(p, b["x"]) - b["y"]) ** 2)
        return Problem(lambda k: task(k, cfg.inner_iters), lambda k: task(k, cfg.eval_inner_iters),
                       lambda k: model.init(k, jnp.zeros((1, 1))), mse,
                       lambda p, q: {"mse": mse(p, q)}, "mse", {"mse": "eval"})

    registered.append("lines")
    register_dataset("lines", build)
    run_dir = tmp_path / "run"
    cfg = resolve("lines", meta_iters=200, log_every=50, eval_tasks=30, inner_iters=3,
                  eval_inner_iters=5, meta_batch=2)
    results = train(cfg, run_dir, progress=False)
    assert results["eval"]["metric"] == "mse" and results["eval"]["tasks"] == 30
    for name in ("config.json", "metrics.jsonl", "results.json", "inner_steps.json",
                 "learning_curve.png", "inner_steps.png", "checkpoints/200"):
        assert (run_dir / name).exists(), name
    assert train(cfg, run_dir, progress=False)["already_complete"]
    assert int(load_run(run_dir)[1].step) == 200
    # The command line takes it too, by name.
    assert main(["eval", "--run-dir", str(run_dir)]) == 0
    assert "mse after 5 inner steps on 30 tasks" in capsys.readouterr().out
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("lines", build)


# --- 8. API footguns --------------------------------------------------------------------

def test_api_misuse_gets_clear_errors():
    loss = lambda p, b: jnp.mean((b["x"] * p - b["y"]) ** 2)
    batch = {"x": jnp.ones(5), "y": jnp.ones(5)}
    with pytest.raises(ValueError, match="leading axis of inner steps"):
        fometa.maml_grad(loss, jnp.ones(()), batch, batch, 0.1)
    support = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), batch)
    with pytest.raises(ValueError, match="must return a scalar; it returned a tuple"):
        fometa.adapt(lambda p, b: (loss(p, b), 0.0), jnp.ones(()), support, 0.1)
    learner = fometa.meta_learner("reptile", loss, 0.1)
    state = learner.init(jnp.ones(()))
    with pytest.raises(ValueError, match="same leading axis of tasks"):
        learner.step(state, fometa.Task(support, batch))  # one task, not a batch of them
    with pytest.raises(TypeError, match="expected a fometa.Task"):
        learner.step(state, [support, batch])
    batched = jax.tree_util.tree_map(lambda a: a[None], (support, batch))
    new, _ = learner.step(state, {"support": batched[0], "query": batched[1]})  # a mapping is fine
    assert int(new.step) == 1



def test_gradients_jit_with_the_functions_static():
    # L(p) = (p - 1)^2; one SGD step a: p' = p - 2a(p - 1), so the MAML gradient is
    # 2 (1 - 2a)^2 (p - 1).
    loss = lambda p, b: jnp.mean((b["x"] * p - b["y"]) ** 2)
    batch = {"x": jnp.ones(5), "y": jnp.ones(5)}
    support = jax.tree_util.tree_map(lambda a: a[None], batch)
    grad = jax.jit(fometa.maml_grad, static_argnames=("loss_fn", "inner_opt"))
    sgd = optax.sgd(0.1)
    for p in (0.5, 2.0):
        np.testing.assert_allclose(grad(loss, jnp.float32(p), support, batch, sgd),
                                   2 * 0.8 ** 2 * (p - 1), rtol=1e-6)
    assert grad._cache_size() == 1  # one compile for new parameters, same functions

# --- 9. fometa eval reads well --------------------------------------------------------------

def test_eval_prints_a_summary_and_json_on_request(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--meta-iters", "100", "--eval-tasks", "20", "--no-progress",
                 "--no-plots", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"run dir {run_dir.absolute()}")
    assert main(["eval", "--run-dir", str(run_dir), "--eval-inner-iters", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mse after 3 inner steps on 20 tasks: ") and "eval.json" in out
    assert main(["eval", "--run-dir", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["eval"]["tasks"] == 20
    # A saved config.json relaunches the run elsewhere, with more meta-iterations.
    assert main(["train", "--config", str(run_dir / "config.json"), "--meta-iters", "150",
                 "--no-progress", "--no-plots", "--run-dir", str(tmp_path / "longer")]) == 0
    saved = json.loads((tmp_path / "longer" / "config.json").read_text())["config"]
    assert saved["meta_iters"] == 150 and saved["eval_tasks"] == 20


# --- 10. datasets beyond the three: any labelled array; CIFAR-FS ---------------------------------

def test_classes_from_labels():
    images = np.arange(10)[:, None] * np.ones((10, 3), np.uint8)
    labels = np.array([2, 0, 2, 1, 0, 2, 1, 0, 1, 2])
    with pytest.warns(fometa.data.DataWarning, match="different numbers"):
        out = classes_from_labels(images, labels)
    assert out.shape == (3, 3, 3)  # 3 classes, each cut to the smallest count (3)
    np.testing.assert_array_equal(out[:, :, 0], [[1, 4, 7], [3, 6, 8], [0, 2, 5]])
    np.testing.assert_array_equal(classes_from_labels(images, labels, keep=[1])[0, :, 0],
                                  [3, 6, 8])


def write_cifar100(root: Path, per_class: tuple[int, int] = (5, 1)) -> Path:
    """CIFAR-100's python pickles with `per_class` (train, test) images of each class; an
    image's pixels encode (class, part, index)."""
    rng = np.random.default_rng(0)
    names = sorted(set(TEST + VAL) | {f"class{i:02d}" for i in range(64)})
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "meta", "wb") as f:
        pickle.dump({"fine_label_names": names}, f)
    for part, n in zip(("train", "test"), per_class):
        labels = [c for c in rng.permutation(np.repeat(np.arange(100), n))]
        seen = {}
        data = []
        for c in labels:
            seen[c] = seen.get(c, -1) + 1
            pixel = [c, 0 if part == "train" else 1, seen[c]]
            data.append(np.tile(np.array(pixel, np.uint8)[:, None], (1, 1024)).reshape(-1))
        with open(root / part, "wb") as f:
            pickle.dump({"data": np.stack(data), "fine_labels": labels}, f)
    return root


def test_cifar_fs_loader(tmp_path):
    data = write_cifar100(tmp_path / "cifar-100-python")
    splits = load_cifar_fs(tmp_path, cache_dir=tmp_path / "cache")
    assert {k: v.shape for k, v in splits.items()} == {
        "train": (64, 6, 32, 32, 3), "val": (16, 6, 32, 32, 3), "test": (20, 6, 32, 32, 3)}
    names = pickle.load(open(data / "meta", "rb"))["fine_label_names"]
    # The test split is the paper's 20 classes in its order; each class holds its 5 training
    # images then its test image, in file order.
    assert [names[int(c)] for c in splits["test"][:, 0, 0, 0, 0]] == list(TEST)
    np.testing.assert_array_equal(splits["val"][3, :, 5, 7, 1], [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(splits["val"][3, :, 0, 0, 2], [0, 1, 2, 3, 4, 0])
    assert not set(splits["train"][:, 0, 0, 0, 0].tolist()) & set(
        splits["test"][:, 0, 0, 0, 0].tolist())


@pytest.mark.parametrize("content", [[1, 2], None, b"cnosuchmodule\nFoo\n(tR."])
def test_a_damaged_cifar_pickle_is_one_line(tmp_path, content):
    """A pickle that is not a dict, or whose loading raises (unpickling runs the file's
    opcodes: any exception), was a traceback."""
    data = write_cifar100(tmp_path / "cifar-100-python")
    with open(data / "train", "wb") as f:
        f.write(content) if isinstance(content, bytes) else pickle.dump(content, f)
    with pytest.raises(DataError) as e:
        load_cifar_fs(tmp_path, cache_dir=tmp_path / "cache")
    assert str(e.value).count("\n") == 0 and "cifar-100-python" in str(e.value)


def test_cifar_fs_trains_through_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FOMETA_CACHE_DIR", str(tmp_path / "cache"))
    write_cifar100(tmp_path / "data" / "cifar-100-python")
    assert main(["train", "--dataset", "cifar-fs", "--data-dir", str(tmp_path / "data"),
                 "--meta-iters", "2", "--meta-batch", "1", "--train-shots", "2",
                 "--inner-iters", "1", "--inner-batch", "5", "--eval-tasks", "4",
                 "--eval-inner-iters", "1", "--no-progress", "--no-plots",
                 "--run-dir", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["dataset"] == "cifar-fs" and results["eval"]["tasks"] == 4
