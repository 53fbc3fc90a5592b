"""The run wing's structure: algorithms as plug-ins, settings declared once, no global side
effects, and imports and file names where they belong."""

import ast
import json
import logging
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import fometa
from fometa.algorithms import ALGORITHMS, Rule
from fometa.errors import ConfigError
from fometa.run import load_run, processes, resolve, train
from fometa.run.cli import main
from fometa.run.problems import DATASETS, ONE_TASK_AT_A_TIME, images_per_step, tasks_at_once
from fometa.run.settings import DECLARED, Switch, flag

PACKAGE = Path(fometa.__file__).parent
SMALL = ["--meta-iters", "60", "--log-every", "30", "--eval-tasks", "10", "--no-progress"]


def scaled_reptile(loss_fn, run_inner, params, support, query):
    """A plug-in from outside the package: twice Reptile's direction, 2 (phi - W)."""
    adapted, state, losses = run_inner(params)
    grad = jax.tree_util.tree_map(lambda p, w: 2.0 * (p - w), params, adapted)
    return grad, state, losses, None if query is None else loss_fn(adapted, query)


TOY = Rule(scaled_reptile, needs_query=False, interpolates=True)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(ALGORITHMS, "scaled-reptile", TOY)  # removed again after the test
    return "scaled-reptile"


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


def test_registered_algorithm_trains_through_meta_learner(toy):
    """Interpolating by eps/2 along 2 (phi - W) is Reptile's step eps (phi - W): halving
    and doubling are exact in floating point, so the two learners agree to the last bit."""
    model = fometa.MLP(hidden=(16,))
    loss_fn = lambda p, b: jnp.mean((model.apply(p, b["x"]) - b["y"]) ** 2)
    tasks = jax.vmap(fometa.SineTasks().train_task)(jax.random.split(jax.random.PRNGKey(1), 3))
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))
    out = {}
    for name, eps in ((toy, 0.05), ("reptile", 0.1)):
        learner = fometa.meta_learner(name, loss_fn, 0.02, fometa.reptile_outer(eps))
        state = learner.init(params)
        for _ in range(3):
            state, metrics = jax.jit(learner.step)(state, tasks)
        out[name] = flat(state.params)
    np.testing.assert_array_equal(out[toy], out["reptile"])
    assert not np.array_equal(out["reptile"], flat(params))
    # The rule itself, unregistered, is accepted too; a name nobody registered is not.
    fometa.meta_learner(TOY, loss_fn, 0.02)
    with pytest.raises(ValueError, match="unknown algorithm 'nope'.*scaled-reptile"):
        fometa.meta_learner("nope", loss_fn, 0.02)


def train_help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    # argparse wraps lines after hyphens too ("per-" / "parameter"): join those back.
    return re.sub(r"(\w)- (\w)", r"\1-\2", " ".join(capsys.readouterr().out.split()))


def test_registered_algorithm_trains_through_fometa_train(toy, tmp_path, capsys):
    assert "{" + ",".join(ALGORITHMS) + "}" in train_help(capsys)
    assert list(ALGORITHMS)[-1] == "scaled-reptile"  # the registered one, offered last
    runs = {}
    for name, eps in ((toy, "0.05"), ("reptile", "0.1")):
        runs[name] = tmp_path / name
        assert main(["train", "--algorithm", name, "--meta-step", eps, *SMALL,
                     "--run-dir", str(runs[name])]) == 0
    saved = json.loads((runs[toy] / "config.json").read_text())["config"]
    assert saved["algorithm"] == toy
    a, b = (flat(load_run(runs[n])[1].params) for n in (toy, "reptile"))
    np.testing.assert_array_equal(a, b)
    strip = lambda run: [{k: v for k, v in json.loads(l).items() if k != "seconds"}
                         for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert strip(runs[toy]) == strip(runs["reptile"])


def test_unregistered_algorithm_is_refused_in_one_line(cli_error):
    err = cli_error(["train", "--algorithm", "scaled-reptile"])
    assert "'scaled-reptile'" in err and "reptile, fomaml, maml, foml" in err


def test_train_flags_are_the_declared_settings(capsys):
    help_text = train_help(capsys)
    usage = help_text[:help_text.index("options:")]
    options = set(re.findall(r"--[a-z][a-z-]*", usage))
    declared = {flag(n) for n, s in DECLARED.items() if s.flag}
    switches = {"--no-" + flag(n)[2:] for n, s in DECLARED.items()
                if s.flag and isinstance(s.kind, Switch)}
    run_only = {"--config", "--tensorboard", "--run-dir", "--no-progress", "--no-plots",
                "--compile-cache"}
    launch = {"--distributed"} | {"--" + name.replace("_", "-") for name in processes.ENV}
    assert options == declared | switches | run_only | launch
    for name, s in DECLARED.items():
        if s.flag:
            assert " ".join(s.help.split()) in help_text, name


@pytest.mark.parametrize("overrides, words", [
    ({"meta_iters": 0}, ["--meta-iters 0", "from 1"]),
    ({"inner_lr": float("nan")}, ["--inner-lr nan", "finite"]),
    ({"inner_iters": 2.5}, ["--inner-iters 2.5", "whole number"]),
    ({"conv": "fft"}, ["--conv 'fft'", "auto, xla, patch"]),
    ({"hidden": (64, 0)}, ["--hidden (64, 0)", "whole numbers >= 1"]),
    ({"remat": "yes"}, ["--remat 'yes'", "true or false"]),
])
def test_python_callers_get_the_same_checks(overrides, words):
    with pytest.raises(ConfigError) as e:
        resolve("sine", **overrides)
    for w in words:
        assert w in str(e.value)


def test_tasks_at_once_default_follows_its_rule():
    """Unset, one task at a time only where measured faster (ONE_TASK_AT_A_TIME's datasets
    from their number of images per inner step, fewer where the inner steps are
    rematerialised, on a CPU with one device); a value that is set is used everywhere."""
    assert set(ONE_TASK_AT_A_TIME) <= set(DATASETS)
    mini = resolve(preset="fomaml-mini-imagenet-5w1s")
    omniglot = resolve(preset="maml-omniglot-5w1s")
    assert tasks_at_once(mini, "cpu") == 1
    assert tasks_at_once(mini, "gpu") is None and tasks_at_once(omniglot, "cpu") == 1
    for devices, expected in (("2", None), ("all", None), ("01", 1)):
        cfg = resolve(preset="fomaml-mini-imagenet-5w1s", devices=devices)
        assert tasks_at_once(cfg, "cpu") == expected, devices
    # Omniglot from 160 images per inner step: 32 tasks x 5 images (5-way 1-shot, the whole
    # support) is 160, 31 tasks 155; 16 tasks of 10 (--inner-batch) 160 again.
    assert images_per_step(omniglot) == 160
    assert tasks_at_once(resolve(preset="maml-omniglot-20w1s"), "gpu") is None
    assert tasks_at_once(resolve(preset="maml-omniglot-5w1s", devices="2"), "cpu") is None
    assert tasks_at_once(resolve(preset="maml-omniglot-5w1s", meta_batch=31), "cpu") is None
    assert tasks_at_once(resolve(preset="fomaml-omniglot-5w1s", meta_batch=31), "cpu") is None
    assert tasks_at_once(resolve(preset="fomaml-omniglot-5w1s"), "cpu") == 1
    assert tasks_at_once(resolve(preset="maml-omniglot-5w1s", meta_batch=16, train_shots=2),
                         "cpu") == 1
    assert tasks_at_once(resolve(preset="maml-cifar-fs-5w1s", meta_batch=100), "cpu") is None
    # ... and from one image where the inner steps are rematerialised (second order, 2 or more
    # steps, or --remat): MAML's 5-way 1-shot with 5 inner steps and 4 tasks (20 images);
    # not with --no-remat, nor on a GPU (no remat by default there), nor for a first-order
    # rule with --remat (nothing to rematerialise).
    few = dict(preset="maml-omniglot-5w1s", meta_batch=4)
    assert tasks_at_once(resolve(**few), "cpu") is None
    assert tasks_at_once(resolve(**few, inner_iters=5), "cpu") == 1
    assert tasks_at_once(resolve(**few, remat=True), "cpu") == 1
    assert tasks_at_once(resolve(**few, inner_iters=5, remat=False), "cpu") is None
    assert tasks_at_once(resolve(**few, inner_iters=5), "gpu") is None
    assert tasks_at_once(resolve(**dict(few, preset="fomaml-omniglot-5w1s"), inner_iters=5),
                         "cpu") is None
    assert tasks_at_once(resolve(**dict(few, preset="fomaml-omniglot-5w1s"), remat=True),
                         "cpu") is None
    assert tasks_at_once(resolve(preset="maml-cifar-fs-5w1s"), "cpu") is None  # remat, unmeasured
    # The batch that one inner step holds: --inner-batch, or with --foml-tail the tail's.
    assert tasks_at_once(resolve(preset="fomaml-omniglot-20w1s", inner_batch=9), "cpu") is None
    assert tasks_at_once(resolve(preset="fomaml-omniglot-20w1s", inner_batch=10), "cpu") == 1
    tail = resolve(preset="fomaml-omniglot-5w1s", train_shots=2, foml_tail=1, meta_batch=31)
    assert images_per_step(tail) == 155 and tasks_at_once(tail, "cpu") is None
    tail = resolve(preset="fomaml-omniglot-5w1s", train_shots=2, foml_tail=1)
    assert images_per_step(tail) == 160 and tasks_at_once(tail, "cpu") == 1
    assert images_per_step(resolve(preset="maml-sine")) == 25 * 10  # 25 tasks of 10 points
    # The paper's Reptile runs its tasks in sequence (one Adam state): nothing to group.
    assert tasks_at_once(resolve(preset="reptile-mini-imagenet-5w1s"), "cpu") is None
    assert tasks_at_once(resolve(preset="maml-omniglot-5w1s", tasks_at_once=4), "gpu") == 4


def test_training_leaves_pyplot_backend_and_logging_levels_alone(tmp_path):
    previous = matplotlib.get_backend()
    matplotlib.use("svg")
    levels = {name: logging.getLogger(name).level for name in ("absl", "asyncio")}
    try:
        train(resolve("sine", meta_iters=20, log_every=10, eval_tasks=5), tmp_path / "run",
              progress=False)
        assert matplotlib.get_backend() == "svg"
        assert {name: logging.getLogger(name).level for name in levels} == levels
        assert (tmp_path / "run" / "adaptation.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        matplotlib.use(previous)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, `from X import Y` as X and X.Y, relative ones resolved."""
    package = ["fometa", *path.relative_to(PACKAGE).parent.parts]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out |= {module} | {f"{module}.{a.name}" for a in node.names}
    return out


def test_the_core_never_imports_the_run_wing():
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("run/") or rel == "__main__.py":
            continue
        assert not {m for m in _imports(path) if m.startswith("fometa.run")}, rel


def test_run_directory_file_names_live_in_the_run_directory_module():
    names = {"config.json", "metrics.jsonl", "results.json", "eval.json", "inner_steps.json",
             "inner_steps.png", "adaptation.json", "adaptation.png", "learning_curve.png",
             "checkpoints", "tensorboard"}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "rundir.py":
            continue
        found = {n.value for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Constant) and isinstance(n.value, str)} & names
        assert not found, (path, found)


def test_the_training_key_is_an_argument_so_seeds_share_one_compiled_program():
    """Two seeds' training loops lower to the same program (a key compiled in as a constant
    would differ), so JAX's compilation cache serves every seed's run from one entry; the
    seeds still draw different tasks, and a typed key draws its raw key's."""
    from fometa.run import chunk_runner, loop_runner, make_learner, make_problem
    from fometa.run.training import seed_key

    cfg = resolve(preset="maml-sine", meta_batch=2, inner_iters=2)
    problem = make_problem(cfg)
    learner = make_learner(cfg, problem)
    state = learner.init(problem.init_params(jax.random.PRNGKey(0)))
    its = jnp.arange(2, dtype=jnp.int32)
    keys = [seed_key(0), seed_key(2 ** 40 + 7)]
    chunk_texts = [chunk_runner(learner, problem, 2, k).lower(state, its).as_text() for k in keys]
    loop_texts = [loop_runner(learner, problem, 2, k).lower(state, 0, 2).as_text() for k in keys]
    assert chunk_texts[0] == chunk_texts[1] and loop_texts[0] == loop_texts[1]
    runs = [loop_runner(learner, problem, 2, k) for k in keys]
    params = [jax.tree_util.tree_leaves(run(state, 0, 2)[0].params) for run in runs]
    assert not all(np.array_equal(a, b) for a, b in zip(*params))
    # a typed key (jax.random.key) travels as its raw data and draws the same tasks
    typed = jax.random.wrap_key_data(keys[0])
    same = jax.tree_util.tree_leaves(loop_runner(learner, problem, 2, typed)(state, 0, 2)[0].params)
    assert all(np.array_equal(a, b) for a, b in zip(params[0], same))


def test_the_dataset_is_an_argument_of_the_compiled_programs_not_a_constant():
    """A split 10x larger leaves the training loop's and the evaluation's programs the same
    size (no dataset compiled in), and reading the split as an argument computes what the
    problem's own task functions, which close over it, compute."""
    from fometa.run import (Splits, chunk_runner, classification_problem, evaluate_tasks,
                            evaluator, loop_runner, make_learner)
    from fometa.run.loop import task_batch

    cfg = resolve(preset="reptile-omniglot-5w1s", meta_batch=2, inner_iters=2, eval_inner_iters=2)
    rng = np.random.default_rng(0)

    def problem(classes):
        return classification_problem(cfg, Splits(
            rng.integers(0, 256, (classes, 20, 28, 28, 1), np.uint8),
            rng.integers(0, 256, (classes, 20, 28, 28, 1), np.uint8)))

    small, big = problem(10), problem(100)  # the big split: 3 MB of images
    key = jax.random.PRNGKey(1)
    learner = make_learner(cfg, big)
    state = learner.init(big.init_params(jax.random.PRNGKey(0)))
    its = jnp.arange(2, dtype=jnp.int32)
    for lower in (lambda p: chunk_runner(learner, p, 2, key).lower(state, its),
                  lambda p: loop_runner(learner, p, 2, key).lower(state, 0, 1),
                  lambda p: evaluator(learner, p).lower(state, key, 3)):
        texts = [lower(p).as_text() for p in (small, big)]
        assert abs(len(texts[1]) - len(texts[0])) < 10 ** 4  # the shapes differ, 3 MB would not

    def closure_steps(state):  # the task functions with the splits closed over (constants)
        for i in range(2):
            state, _ = learner.step(state, task_batch(big, jax.random.fold_in(key, i), 2))
        return state
    expected = jax.jit(closure_steps)(state)
    got, _ = chunk_runner(learner, big, 2, key)(state, its)
    for a, b in zip(jax.tree_util.tree_leaves(expected.params), jax.tree_util.tree_leaves(got.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # evaluation: the same tasks as the problem's eval_task draws with the split closed over
    tasks = jax.vmap(big.eval_task)(jax.random.split(jax.random.PRNGKey(2), 3))
    evaluated = evaluate_tasks(learner, got, big, jax.random.PRNGKey(2), 3, steps=(0,))
    closed = jax.jit(jax.vmap(lambda t: big.metric_fn(got.params, t.query)))(tasks)
    np.testing.assert_allclose(evaluated["accuracy_transductive"][:, 0],
                               closed["accuracy_transductive"])


def test_the_initial_state_is_computed_in_two_programs(caplog):
    """A network's initialisation run op by op compiles every operation on its own (4-6.5 s
    more per process for the image networks on a 2-core CPU). `initial_state` compiles
    two programs (the problem's initialisation and the learner's state around it; JAX's
    log names them), and gives the state of c78f4d7, whose initialisation ran op by op
    (the problem's `init_params` called as it is, as it still is outside `initial_state`),
    also where Meta-SGD's `--inner-lr-low` draws the rates: bit for bit on the machine of
    benchmarks/logs/2026-12-03-avx512/sixth/bits.txt, within 1e-6 here (another CPU may
    round a fused program differently)."""
    from fometa.learned_lr import uniform_rates
    from fometa.run import Splits, classification_problem
    from fometa.run.problems import learned_rates
    from fometa.run.training import initial_state, setup

    images = np.random.default_rng(0).integers(0, 256, (8, 20, 28, 28, 1), np.uint8)
    for preset, overrides in (("maml-omniglot-5w1s", {}),
                              ("meta-sgd-omniglot-5w1s", {"inner_lr_low": 0.005})):
        cfg = resolve(preset=preset, **overrides)
        run = setup(cfg, classification_problem(cfg, Splits(images, images)))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles():
            state = initial_state(cfg, run)
        compiles = [r.getMessage().split(" with ")[0] for r in caplog.records
                    if r.getMessage().startswith("Compiling ")]
        if cfg.inner_lr_low is None:
            assert len(compiles) == 2 and compiles[1].endswith("(init)"), compiles
        assert not hasattr(run.problem.init_params, "lower")  # not jitted: the reference
        params = run.problem.init_params(run.init_key)  # runs op by op
        if cfg.inner_lr_low is not None:
            params = uniform_rates(jax.random.fold_in(run.init_key, 1), params,
                                   cfg.inner_lr_low, cfg.inner_lr, learned_rates(cfg),
                                   cfg.inner_iters)
        reference = run.learner.init(params)
        assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(reference)
        for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(reference)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
