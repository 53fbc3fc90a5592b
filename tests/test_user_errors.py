"""Every failure a user can cause is one line on stderr and exit status 2 (or a clear
ValueError from the library), and nothing non-finite is ever written."""

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from synthetic import write_mini

import fometa
import fometa.run.checkpoint as checkpoint_module
import fometa.run.processes as processes
from fometa.errors import CheckpointError, ConfigError
from fometa.learner import all_finite
from fometa.run import load_run, make_problem, resolve, setup, summarize
from fometa.run.cli import main
from fometa.run.training import _steps, evaluate_run

# One pytest-xdist worker runs this module: its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("user_errors")


SMALL = ["--meta-iters", "200", "--log-every", "100", "--eval-tasks", "20", "--no-progress"]


def fometa_cli(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fometa", *argv], capture_output=True,
                          cwd=cwd, timeout=300)


def one_line(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 2, err
    assert err.startswith("fometa: error: ") and err.count("\n") == 1, err
    return err


# --- seeds ------------------------------------------------------------------------------

def test_every_seed_has_its_own_stream():
    key = lambda seed: np.asarray(setup(resolve("sine", seed=seed)).init_key)
    below, wrapped, top = key(0), key(2 ** 32), key(2 ** 64 - 1)
    assert not np.array_equal(below, wrapped) and not np.array_equal(wrapped, top)
    # Seeds below 2**32 keep their key (and so every earlier run's numbers).
    np.testing.assert_array_equal(key(12345), jax.random.split(jax.random.PRNGKey(12345), 3)[0])


@pytest.mark.parametrize("argv, words", [
    (["--seed", str(2 ** 64)], [str(2 ** 64), "from 0 to 18446744073709551615"]),
    (["--seed", "-1"], ["-1", "from 0"]),
    (["--meta-iters", str(2 ** 31)], [str(2 ** 31), "from 1 to 2147483647"]),
    (["--devices", "\u00b2"], ["'\u00b2'", "whole number >= 1 or 'all'"]),
    (["--algorithm", "fomaml", "--queries", "0"], ["--queries 0", "'fomaml'", "reptile, foml"]),
    (["--tasks-at-once", "0"], ["--tasks-at-once 0", "whole number"]),
    (["--tasks-at-once", "2", "--devices", "2"], ["--tasks-at-once 2", "--devices 2", "unset"]),
    (["--tasks-at-once", "1", "--task-order", "sequential"], ["--tasks-at-once 1", "sequential"]),
])
def test_out_of_range_values_are_one_line(cli_error, argv, words):
    err = cli_error(["train", *argv])
    for w in words:
        assert w in err


# --- run directories ----------------------------------------------------------------------

def test_run_dir_that_is_a_file(tmp_path, cli_error):
    (tmp_path / "file").write_text("x")
    assert "is a file" in cli_error(["train", *SMALL, "--run-dir", str(tmp_path / "file")])


def test_run_dir_name_that_is_not_utf8(tmp_path):
    name = os.fsencode(str(tmp_path)) + b"/run\xff"
    err = one_line(fometa_cli("train", *SMALL, "--run-dir", os.fsdecode(name)))
    assert "not a valid UTF-8 name" in err
    assert list(tmp_path.iterdir()) == []  # nothing created, no temporary folder left


def test_config_json_that_is_a_folder(tmp_path, cli_error):
    (tmp_path / "run" / "config.json").mkdir(parents=True)
    for argv in (["train", *SMALL], ["eval"]):
        assert "config.json is a folder" in cli_error([*argv, "--run-dir", str(tmp_path / "run")])


def test_read_only_run_dir_and_parent(tmp_path):
    where = tmp_path / "ro"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a file system here")
    try:
        (where / "run").mkdir()
        assert subprocess.run(["mount", "-o", "remount,ro", str(where)]).returncode == 0
        for run_dir in (where / "run", where / "new" / "run"):
            err = one_line(fometa_cli("train", *SMALL, "--run-dir", str(run_dir)))
            assert "cannot write to run dir" in err and "Read-only file system" in err
    finally:
        subprocess.run(["umount", "-l", str(where)])


# --- plots -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *SMALL, "--no-plots", "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_plot_refuses_bad_outputs_and_garbage_lines(finished, tmp_path, cli_error):
    err = cli_error(["plot", str(finished), "--out", str(tmp_path / "missing" / "x.png")])
    assert "does not exist" in err
    assert "'.xyz'" in cli_error(["plot", str(finished), "--out", str(tmp_path / "x.xyz")])
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    lines = (finished / "metrics.jsonl").read_text().splitlines()
    (damaged / "metrics.jsonl").write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    assert "line 2" in cli_error(["plot", str(damaged), "--out", str(tmp_path / "y.png")])
    # A half-written last line (a killed run) is skipped.
    (damaged / "metrics.jsonl").write_text("\n".join(lines) + '\n{"kind": "tr')
    assert main(["plot", str(damaged), "--out", str(tmp_path / "z.png")]) == 0


@pytest.mark.parametrize("line", [
    '{"kind": "eval", "iteration": 3, "eval": 5}',
    '{"kind": "eval", "iteration": 3, "eval": {}}',
    '{"kind": "eval", "iteration": 3, "eval": {"metric": "mse", "mean": "x", "ci95": null, '
    '"tasks": 2}}',
    '{"kind": "train", "iteration": 3, "query_loss": Infinity}',
    '{"kind": "train", "iteration": 3, "query_loss": "abc"}',
])
def test_plot_refuses_metrics_lines_of_the_wrong_shape(finished, tmp_path, cli_error, line):
    """JSON lines that are not what `fometa train` writes crashed the plot (TypeError,
    KeyError) or were plotted (Infinity, text)."""
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    lines = (finished / "metrics.jsonl").read_text().splitlines()
    (damaged / "metrics.jsonl").write_text("\n".join([lines[0], line, *lines[1:]]) + "\n")
    assert "line 2" in cli_error(["plot", str(damaged), "--out", str(tmp_path / "y.png")])


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


@pytest.mark.parametrize("content", ["[]", '{"meta_iterations": 200}',
                                     '{"eval": {"metric": "mse", "mean": NaN, "ci95": 1.0, '
                                     '"tasks": 20}, "meta_iterations": 200}'])
def test_a_damaged_results_file_is_one_line_on_rerun(finished, tmp_path, cli_error, content):
    """results.json of the wrong shape (a list, no evaluation) crashed the rerun of a
    finished run; one with NaN was printed as its result."""
    run = _copy(finished, tmp_path / "run")
    (run / "results.json").write_text(content)
    err = cli_error(["train", *SMALL, "--no-plots", "--run-dir", str(run)])
    assert "results.json" in err


@pytest.mark.parametrize("content", ["[]", "null", '"abc"', '{"a": 1}'])
def test_a_checksum_list_of_the_wrong_shape_is_never_evaluated(finished, tmp_path, cli_error,
                                                               content):
    run = _copy(finished, tmp_path / "run")
    [sums] = (run / "checkpoints").glob(f"*/{checkpoint_module.FILE_SUMS}")
    sums.write_text(content)
    assert checkpoint_module.FILE_SUMS in cli_error(["eval", "--run-dir", str(run),
                                                     "--eval-tasks", "2"])


def test_an_unopenable_lock_and_a_foreign_checkpoint_are_one_line(finished, tmp_path,
                                                                  cli_error):
    run = _copy(finished, tmp_path / "run")
    (run / ".lock").unlink()
    (run / ".lock").mkdir()  # as root, permissions block nothing; open() of a folder fails
    assert "the run dir's lock" in cli_error(["eval", "--run-dir", str(run), "--eval-tasks", "2"])
    # A checkpoint past the run's budget (copied from a longer run) is not resumed from.
    run = _copy(finished, tmp_path / "shorter")
    (run / "results.json").unlink()
    saved = json.loads((run / "config.json").read_text())
    saved["config"]["meta_iters"] = 100
    (run / "config.json").write_text(json.dumps(saved))
    err = cli_error(["train", *SMALL, "--meta-iters", "100", "--no-plots", "--run-dir", str(run)])
    assert "meta-iteration 200, past this run's --meta-iters 100" in err


def test_checkpoints_without_their_config_are_not_resumed(finished, tmp_path, cli_error):
    """Without config.json, a run's checkpoints were resumed under any settings given now
    (another seed, another learning rate), and results.json recorded those."""
    run = _copy(finished, tmp_path / "run")
    assert any(p.name.isdigit() for p in (run / "checkpoints").iterdir())
    (run / "config.json").unlink()
    (run / "results.json").unlink()
    before = sorted(p.name for p in run.rglob("*"))
    err = cli_error(["train", *SMALL, "--seed", "7", "--no-plots", "--run-dir", str(run)])
    assert "holds checkpoints but no config.json" in err
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("name, argv", [("tensorboard", ["--tensorboard"]), ("checkpoints", [])])
def test_a_file_where_the_run_writes_a_folder_is_refused_first(tmp_path, cli_error, name, argv):
    """A file named tensorboard or checkpoints failed with a traceback only after the run
    had trained (or, rerunning, after its results were cleared)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / name).write_text("x")
    err = cli_error(["train", *SMALL, *argv, "--no-plots", "--run-dir", str(run)])
    assert f"{name} is a file" in err
    assert not (run / "metrics.jsonl").exists()


@pytest.mark.parametrize("address", ["localhost:notaport", "notanaddress", "localhost:0",
                                     ":23480", "localhost:65536", "localhost:-5", " :23481",
                                     "::1", "::1:23482"])
def test_a_coordinator_that_is_no_address_is_one_line(cli_error, address):
    """JAX crashed (a segfault for a bad port), printed a traceback (no port), or waited
    without end (port 0, no host)."""
    err = cli_error(["train", "--coordinator", address, "--num-processes", "1",
                     "--process-id", "0", "--meta-iters", "2"])
    assert f"--coordinator {address!r} is not allowed" in err and "1 to 65535" in err


def test_coordinator_addresses_jax_takes_pass_and_a_variable_is_named(monkeypatch):
    for address in ("10.0.0.1:1234", "[::1]:1234", "[fe80::1%eth0]:1234", "node-1.cluster:8476"):
        processes.check_coordinator(address)
    monkeypatch.setenv("FOMETA_COORDINATOR", "localhost:99999")
    with pytest.raises(ConfigError, match="^FOMETA_COORDINATOR 'localhost:99999' is not"):
        processes.start()


def test_a_tensorboard_file_is_refused_only_where_tensorboard_is_written(finished, tmp_path,
                                                                          cli_error):
    run = _copy(finished, tmp_path / "run")
    (run / "tensorboard").write_text("notes")
    assert main(["eval", "--run-dir", str(run), "--eval-tasks", "2"]) == 0


@pytest.mark.parametrize("argv, words", [
    (["--num-processes", "2", "--process-id", "1"], "coordinator_address"),  # ignored before
    (["--coordinator", "localhost:23459", "--num-processes", str(10 ** 20), "--process-id",
      str(10 ** 20 - 1)], "cannot join the processes"),  # a TypeError's traceback before
])
def test_process_flags_jax_cannot_take_are_one_line(tmp_path, argv, words):
    err = one_line(fometa_cli("train", "--meta-iters", "2", "--run-dir", str(tmp_path / "r"),
                              *argv))
    assert words in err


def test_x64_is_refused_rather_than_changing_the_numbers(tmp_path, finished):
    """JAX_ENABLE_X64=1 trained and evaluated in float64 while config.json said float32, and
    resumed a float32 run in float64, silently."""
    env = {**os.environ, "JAX_ENABLE_X64": "1"}
    for argv in (["train", "--meta-iters", "2", "--run-dir", str(tmp_path / "r")],
                 ["eval", "--run-dir", str(finished), "--eval-tasks", "2"]):
        proc = subprocess.run([sys.executable, "-m", "fometa", *argv], capture_output=True,
                              timeout=300, env=env)
        assert "x64 mode is on (JAX_ENABLE_X64" in one_line(proc)
    assert not (tmp_path / "r").exists() and not (finished / "eval.json").exists()


def test_compile_cache_names_that_are_not_utf8(tmp_path):
    """XLA takes the cache folder as UTF-8 text: such a name was a 58-line traceback at the
    first compile, also when it came from XDG_CACHE_HOME, which the user never named."""
    bad = os.fsdecode(os.fsencode(str(tmp_path)) + b"/c\xff")
    short = ["--meta-iters", "2", "--eval-tasks", "2", "--no-progress", "--no-plots"]
    err = one_line(fometa_cli("train", *short, "--run-dir", str(tmp_path / "a"),
                              "--compile-cache", bad))
    assert "--compile-cache" in err and "not a valid UTF-8 name" in err
    proc = subprocess.run([sys.executable, "-m", "fometa", "train", *short, "--run-dir",
                           str(tmp_path / "b")], capture_output=True, timeout=300,
                          env={**os.environ, "JAX_COMPILATION_CACHE_DIR": bad})
    assert "JAX_COMPILATION_CACHE_DIR" in one_line(proc)
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    proc = subprocess.run([sys.executable, "-m", "fometa", "train", *short, "--run-dir",
                           str(tmp_path / "c")], capture_output=True, timeout=300,
                          env={**env, "XDG_CACHE_HOME": bad})
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert json.loads((tmp_path / "c" / "results.json").read_text())["compile_cache"] is None


@pytest.mark.parametrize("edit", [
    lambda e: e.update(seconds=None),        # a TypeError's traceback before
    lambda e: e.update(seconds=-1e308),      # became results.json's train_seconds
    lambda e: e.update(query_loss="NaN"),    # kept, and written again, silently
])
def test_a_resume_refuses_a_damaged_metrics_file_before_training(finished, tmp_path,
                                                                  cli_error, edit):
    run = _copy(finished, tmp_path / "run")
    (run / "results.json").unlink()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["kind"] == "train" and "seconds" in first
    edit(first)
    text = json.dumps(first).replace('"NaN"', "NaN")
    (run / "metrics.jsonl").write_text("\n".join([text, *lines[1:]]) + "\n")
    files = {p: p.read_bytes() for p in [run / "config.json", run / "metrics.jsonl"]}
    err = cli_error(["train", *SMALL, "--no-plots", "--run-dir", str(run)])
    assert "line 1 of" in err and "is not a metrics line" in err and "move it away" in err
    assert all(p.read_bytes() == content for p, content in files.items())  # before any write
    assert not (run / "results.json").exists()
    # A start from scratch (no checkpoint to resume) redoes every line: nothing to refuse.
    shutil.rmtree(run / "checkpoints")
    assert main(["train", *SMALL, "--no-plots", "--run-dir", str(run)]) == 0
    assert json.loads((run / "results.json").read_text())["train_seconds"] >= 0


CUDA_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin")


def test_a_problem_whose_metric_and_results_disagree_is_refused():
    """results.json labelled the mse of a problem with metric "acc" as "acc"; a metric_fn
    output that its results mapping does not name was a KeyError after training."""
    cfg = resolve("sine", meta_iters=2)
    sine = make_problem(cfg)
    for bad, words in ((sine._replace(metric="acc"), "metric 'acc' must be reported as 'eval'"),
                       (sine._replace(results={"mse": "eval", "x": "final"}), "\\['final'\\]")):
        with pytest.raises(ConfigError, match=words):
            setup(cfg, bad)
    with pytest.raises(ConfigError, match=r"returns \['other'\], which its results mapping"):
        summarize(sine, {"mse": np.ones(3), "other": np.ones(3)})
    assert summarize(sine, {"mse": np.array([1.0, 3.0])})["eval"]["metric"] == "mse"


def test_a_divergence_names_the_algorithms_own_step_sizes():
    """The divergence message's list of settings (`_steps`) holds iMAML's options."""
    assert ", --imaml-lambda 0.001, --cg-steps 5)" in _steps(
        resolve("sine", algorithm="imaml", imaml_lambda=1e-3))
    assert "lambda" not in _steps(resolve("sine"))


@pytest.mark.parametrize("platforms", ["bogus", "cuda"])
def test_a_backend_jax_cannot_start_is_one_line(tmp_path, platforms):
    if platforms == "cuda" and any(importlib.util.find_spec(m) for m in CUDA_PLUGINS):
        pytest.skip("JAX may start CUDA here")
    proc = subprocess.run([sys.executable, "-m", "fometa", "train", "--meta-iters", "2",
                           "--run-dir", str(tmp_path / "run")], capture_output=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": platforms})
    assert f"JAX_PLATFORMS='{platforms}'" in one_line(proc)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, words", [
    (["train", "--run-dir", ""], "--run-dir '' is empty"),
    (["plot", "runs/x", "--out", " "], "--out ' ' is empty"),
    (["train", "--inner-lr", "1e-50"], "below float32's smallest normal number"),
])
def test_values_that_would_silently_mean_something_else_are_one_line(cli_error, argv, words):
    """An empty path fell back to a default one; a rate that is 0 in float32 trained as 0."""
    short = ["--meta-iters", "2", "--eval-tasks", "2", "--no-progress", "--no-plots"]
    assert words in cli_error(argv + short * (argv[0] == "train"))


# --- interrupts, warnings, optional packages, data permissions ----------------------------

def test_a_second_ctrl_c_still_says_interrupted(monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt  # what the second Ctrl-C raises, with no message

    monkeypatch.setattr("fometa.run.cli.train", interrupted)
    assert main(["train", *SMALL]) == 130
    assert capsys.readouterr().err == "fometa: interrupted\n"


REDELIVERED = """
import gc, sys, time
from fometa.__main__ import redeliver
if sys.argv[1] == "hook":
    sys.unraisablehook = redeliver
fired = []
def callback(phase, info):  # as JAX's gc callback would be, when Ctrl-C lands in it
    if phase == "start" and not fired:
        fired.append(1)
        raise KeyboardInterrupt
gc.callbacks.append(callback)
try:
    gc.collect()
    time.sleep(5)
    print("lost")
except KeyboardInterrupt:
    print("raised")
"""


def test_the_entry_point_and_the_package_load_no_jax():
    """What the Ctrl-C hold rests on: `fometa.__main__` (and `import fometa`) import no JAX
    before `console` runs; the lazy names are the modules' own objects."""
    code = ("import sys, fometa.__main__; assert 'jax' not in sys.modules, 'jax'; "
            "from fometa import *; import fometa, fometa.algorithms, fometa.learner; "
            "assert maml_grad is fometa.algorithms.maml_grad; "
            "assert meta_learner is fometa.learner.meta_learner; "
            "assert all(getattr(fometa, n) is not None for n in fometa.__all__); print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_ctrl_c_swallowed_by_a_gc_callback_is_raised_again():
    """Python cannot raise from a garbage-collection callback, so a Ctrl-C that lands in
    one is lost (a run went on to the end); the command's hook sends it again."""
    out = {mode: subprocess.run([sys.executable, "-c", REDELIVERED, mode], capture_output=True,
                                text=True, timeout=60).stdout.strip() for mode in ("hook", "none")}
    assert out == {"hook": "raised", "none": "lost"}


@pytest.mark.parametrize("delay", [0.2, 0.8, 1.6])
def test_ctrl_c_in_the_first_seconds_is_one_line(tmp_path, delay):
    """While JAX loads (a traceback, an ImportError or a swallowed interrupt before) and
    just after."""
    proc = subprocess.Popen([sys.executable, "-m", "fometa", "train", "--meta-iters", "30000",
                             "--no-progress", "--run-dir", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    err = err.decode(errors="replace")
    assert proc.returncode == 130 and err.startswith("fometa: ") and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "results.json").exists()


def test_warnings_are_one_line_and_leave_the_callers_display(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FOMETA_CACHE_DIR", str(tmp_path / "cache"))
    counts = {s: {f"n{10 * j + i:02d}": 8 for i in range(5)}
              for j, s in enumerate(("train", "val", "test"))}
    counts["train"]["n00"] = 7  # one class short: a DataWarning
    data = write_mini(tmp_path / "mini", "folders", sizes=((84, 84),), counts=counts)
    before = warnings.showwarning
    assert main(["train", "--dataset", "mini-imagenet", "--data-dir", str(data), "--meta-iters",
                 "2", "--log-every", "2", "--meta-batch", "1", "--train-shots", "2",
                 "--inner-iters", "1", "--inner-batch", "2", "--eval-tasks", "2",
                 "--eval-inner-iters", "1", "--no-progress", "--no-plots",
                 "--run-dir", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert warnings.showwarning is before
    lines = [l for l in err.splitlines() if l]
    assert lines and all(l.startswith("fometa: warning: ") for l in lines), err
    assert any("n00: 7" in l for l in lines)


def test_a_run_is_resumed_and_evaluated_knowing_its_own_data(tmp_path, monkeypatch, capsys):
    """A run recorded no trace of its data: `fometa eval` or a resume with FOMETA_DATA_DIR
    (or a relative --data-dir) pointing elsewhere used other images without a word."""
    monkeypatch.setenv("FOMETA_CACHE_DIR", str(tmp_path / "cache"))
    counts = lambda first: {s: {f"n{first + 10 * j + i:02d}": 8 for i in range(5)}
                            for j, s in enumerate(("train", "val", "test"))}
    ours = write_mini(tmp_path / "ours", "folders", sizes=((84, 84),), counts=counts(0))
    other = write_mini(tmp_path / "other", "folders", sizes=((84, 84),), counts=counts(1))
    run = tmp_path / "run"
    argv = ["--dataset", "mini-imagenet", "--meta-iters", "2", "--log-every", "2",
            "--meta-batch", "1", "--train-shots", "2", "--inner-iters", "1", "--inner-batch",
            "2", "--eval-tasks", "2", "--eval-inner-iters", "1", "--no-progress", "--no-plots",
            "--run-dir", str(run)]
    assert main(["train", *argv, "--data-dir", str(ours)]) == 0
    trained_on = json.loads((run / "config.json").read_text())["data"]
    assert main(["eval", "--run-dir", str(run), "--data-dir", str(ours)]) == 0
    assert json.loads((run / "eval.json").read_text())["data"] == trained_on
    capsys.readouterr()
    assert main(["eval", "--run-dir", str(run), "--data-dir", str(other)]) == 0  # may be meant
    err = capsys.readouterr().err
    assert err.startswith("fometa: warning: ") and "was trained on other data" in err, err
    assert json.loads((run / "eval.json").read_text())["data"] not in (trained_on, None)
    (run / "results.json").unlink()  # the last checkpoint is then resumed from
    assert main(["train", *argv, "--data-dir", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"{run} was trained on other data (digest {trained_on} there" in err, err
    assert err.count("\n") == 1


def test_missing_tensorboardx_writes_nothing(tmp_path, monkeypatch, cli_error):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    cli_error(["train", *SMALL, "--tensorboard", "--run-dir", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_unreadable_zip_is_not_called_corrupt(tmp_path, monkeypatch, cli_error):
    monkeypatch.setenv("FOMETA_CACHE_DIR", str(tmp_path / "cache"))
    for part in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(tmp_path / f"{part}.zip", "w") as z:
            z.writestr(f"{part}/A/character01/0001_01.png", b"")

    def denied(self, *a, **k):  # root reads anything: stand in for a file without read permission
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(zipfile.ZipFile, "__init__", denied)
    err = cli_error(["train", "--dataset", "omniglot", "--data-dir", str(tmp_path), *SMALL,
                     "--run-dir", str(tmp_path / "run")])
    assert "Permission denied" in err and "corrupt" not in err


# --- the library ----------------------------------------------------------------------

@pytest.mark.parametrize("lr", [float("nan"), -0.1, 0.0, math.inf, jnp.array(-1.0),
                                jnp.array(0.0), np.array(np.nan), np.float32(-0.5)])
def test_library_refuses_bad_inner_learning_rates(lr):
    with pytest.raises(ValueError, match="finite number > 0"):
        fometa.adapt(lambda p, b: jnp.sum(p * b), jnp.ones(3), jnp.ones((2, 3)), lr)


def test_a_learning_rate_array_steps_as_the_number_does():
    """A 0-d array (NumPy's too), concrete or traced, is the learning rate it holds."""
    loss = lambda p, b: jnp.sum((p - b) ** 2)  # one step from 0: p = 2 lr b
    support = jnp.ones((1, 3))
    for lr in (0.1, np.array(0.1), jnp.array(0.1)):
        np.testing.assert_allclose(fometa.adapt(loss, jnp.zeros(3), support, lr), 0.2 * np.ones(3))
    traced = jax.vmap(lambda lr: fometa.adapt(loss, jnp.zeros(3), support, lr))(
        jnp.array([0.1, 0.2]))
    np.testing.assert_allclose(traced, [[0.2] * 3, [0.4] * 3])


QUADRATIC = lambda p, b: 0.5 * b["a"] * (p["w"] - b["c"]) ** 2


def _batch(steps):
    return {"a": jnp.ones((steps,)), "c": jnp.linspace(-1.0, 1.0, steps)}


@pytest.mark.parametrize("kwargs, words", [
    (dict(learn_inner_lr="per-layer-step", inner_steps=3, carry_inner_state=True),
     "not carry_inner_state"),
    (dict(learn_inner_lr="per-layer-step", inner_steps=3, sequential_tasks=True),
     "not sequential_tasks"),
    (dict(per_step=lambda p: {"w": True}, inner_steps=3, sequential_tasks=True),
     "not sequential_tasks"),
    (dict(multi_step_iters=-3), "multi_step_iters must be a whole number >= 1"),
    (dict(multi_step_iters=0), "multi_step_iters must be a whole number >= 1"),
    (dict(multi_step_iters=2.5), "multi_step_iters must be a whole number >= 1"),
    (dict(first_order_iters=-5), "first_order_iters must be a whole number >= 0"),
    (dict(learn_inner_lr="per-layer-step", inner_steps=-1), "inner_steps must be a whole"),
    (dict(learn_inner_lr="per-layer-step", inner_steps=2.5), "inner_steps must be a whole"),
])
def test_meta_learner_refuses_settings_that_compute_something_else(kwargs, words):
    """Values per inner step (MAML++'s rates and per-step leaves) are read at the inner
    state's step count: a task starting from a carried state (the previous task's or
    meta-iteration's) would read the wrong ones; negative or zero annealing lengths gave
    negative weights or division by zero."""
    with pytest.raises(ValueError, match=words):
        fometa.meta_learner("maml", QUADRATIC, 0.1, **kwargs)


def test_meta_learner_names_the_algorithm_and_the_outer_optimizer():
    learner = fometa.meta_learner("maml", QUADRATIC, 0.1)
    state = learner.init({"w": jnp.array(1.5)})
    with pytest.raises(ValueError, match="^'maml' needs a query batch"):  # not Rule(grad=...)
        learner.step(state, fometa.Task(jax.tree_util.tree_map(lambda a: a[None], _batch(2)),
                                        None))
    with pytest.raises(TypeError, match="outer_opt must be an optax optimizer .*float"):
        fometa.meta_learner("maml", QUADRATIC, 0.1, outer_opt=0.1)
    for steps in ((1.5,), jnp.array([1, 2]), (-1, 1)):  # a float, an array, a negative count
        with pytest.raises(ValueError, match="must be whole numbers that increase from 0"):
            learner.adapt(state, _batch(2), steps=steps)
    np.testing.assert_allclose(learner.adapt(state, _batch(2), steps=np.array([0, 2]))["w"],
                               [1.5, learner.adapt(state, _batch(2))["w"]], rtol=1e-6)


def test_reptile_outer_takes_arrays_and_traced_steps_as_numbers():
    """A 0-d array is the number it holds; a traced one (a sweep) is not checked."""
    grad = jnp.ones(3)
    step = lambda eps: fometa.reptile_outer(eps, 100).update(
        grad, fometa.reptile_outer(eps, 100).init(jnp.zeros(3)))[0]
    np.testing.assert_allclose(step(jnp.array(0.1)), step(0.1))
    np.testing.assert_allclose(jax.vmap(step)(jnp.array([0.1, 0.2])), [-0.1 * grad, -0.2 * grad],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="meta_step must be a finite number > 0"):
        fometa.reptile_outer(jnp.array(-0.1))


def test_meta_learner_takes_an_outer_optimizer_that_is_no_gradient_transformation():
    """optax.MultiSteps has init and update without being a GradientTransformation: the
    outer step applies every second call."""
    learner = fometa.meta_learner("fomaml", QUADRATIC, 0.1,
                                  outer_opt=optax.MultiSteps(optax.sgd(1.0), 2))
    task = fometa.Task(jax.tree_util.tree_map(lambda a: a[None], _batch(2)),
                       {"a": jnp.ones((1,)), "c": jnp.ones((1,))})
    state = learner.init({"w": jnp.array(0.0)})
    seen = []
    for _ in range(4):
        state, _ = learner.step(state, task)
        seen.append(float(state.params["w"]))
    assert seen[0] == 0.0 and seen[1] != 0.0 and seen[2] == seen[1] and seen[3] != seen[2]


@pytest.mark.parametrize("args, words", [
    ((-0.1,), "meta_step must be a finite number > 0"),
    ((0.0,), "meta_step must be a finite number > 0"),
    ((math.nan,), "meta_step must be a finite number > 0"),
    ((0.1, 0), "meta_iters must be a whole number >= 1"),
    ((0.1, -5), "meta_iters must be a whole number >= 1"),
    ((0.1, 2.5), "meta_iters must be a whole number >= 1"),
    ((0.1, 100, -1.0), "final_meta_step must be a finite number >= 0"),
])
def test_reptile_outer_refuses_bad_schedules(args, words):
    with pytest.raises(ValueError, match=words):
        fometa.reptile_outer(*args)


@pytest.mark.parametrize("steps, options, words", [
    (3, {"cg_steps": 0}, "cg_steps must be a Python integer >= 1"),
    (3, {"cg_steps": -2}, "cg_steps must be a Python integer >= 1"),
    (3, {"cg_steps": 2.5}, "cg_steps must be a Python integer >= 1"),
    (3, {"lam": 0.0}, "lam .* must be a finite number > 0"),
    (3, {"lam": -1.0}, "lam .* must be a finite number > 0"),
    (3, {"lam": math.nan}, "lam .* must be a finite number > 0"),
    (0, {}, "imaml needs at least one inner step"),
])
def test_imaml_refuses_what_gives_a_zero_or_nan_gradient(steps, options, words):
    """cg_steps 0 returned a zero meta-gradient, lam 0 and zero inner steps NaN."""
    params, sgd = {"w": jnp.array(1.5)}, optax.sgd(0.1)
    query = {"a": jnp.array(4.0), "c": jnp.array(0.3)}
    with pytest.raises(ValueError, match=words):
        fometa.algorithms.meta_gradient("imaml", QUADRATIC, params, _batch(steps), query, sgd,
                                        sgd.init(params), options=options)


def test_mse_refuses_a_target_that_would_broadcast():
    """A [n] target against a [n, 1] prediction broadcast to [n, n] (a wrong number)."""
    x = jnp.arange(5.0)[:, None]
    with pytest.raises(ValueError, match=r"\(5, 1\) and batch\['y'\] \(5,\)"):
        fometa.mse(lambda p, x: p * x, 2.0, {"x": x, "y": jnp.arange(5.0)})
    assert float(fometa.mse(lambda p, x: p * x, 2.0, {"x": x, "y": x})) == pytest.approx(6.0)


@pytest.mark.parametrize("argv, words", [
    (["--learn-inner-lr", "per-layer-step", "--task-order", "sequential"],
     ["--learn-inner-lr per-layer-step", "--task-order sequential"]),
    (["--learn-inner-lr", "per-layer-step", "--carry-inner-state"],
     ["--learn-inner-lr per-layer-step", "--carry-inner-state"]),
    (["--per-step-bn", "--task-order", "sequential"], ["--per-step-bn", "--task-order sequential"]),
])
def test_step_indexed_settings_with_a_carried_step_count_are_one_line(cli_error, argv, words):
    err = cli_error(["train", "--algorithm", "maml", "--inner-iters", "3", "--meta-iters", "2",
                     "--eval-tasks", "2", "--no-progress", *argv])
    for w in words:
        assert w in err


@pytest.mark.parametrize("opt, dtype, words", [
    (optax.sgd(math.nan), jnp.float32, r"update is not finite \(NaN or inf\) at a zero gradient"),
    (optax.adam(math.nan, eps_root=1e-8), jnp.float32, "update is not finite"),
    (optax.adam(0.1), jnp.float32, "non-finite derivative .* eps_root > 0"),
    (optax.adam(0.1, eps_root=1e-8), jnp.float16, "eps that is 0 in the params' float16"),
])
def test_maml_names_why_its_inner_optimizer_would_give_nan(opt, dtype, words):
    """A NaN learning rate was blamed on Adam's square root; float16 params with eps_root
    1e-8 (0 in float16, as eps is) were told to give what they gave."""
    params = jnp.ones(3, dtype)
    with pytest.raises(ValueError, match=words):
        fometa.maml_grad(lambda p, b: jnp.sum(p * b), params, jnp.ones((2, 3), dtype),
                         jnp.ones(3, dtype), opt)


def test_library_names_a_wrong_inner_state():
    params = jnp.ones(3)
    with pytest.raises(ValueError, match="inner_state is not a state of inner_opt"):
        fometa.maml_grad(lambda p, b: jnp.sum(p * b), params, jnp.ones((2, 3)), jnp.ones(3),
                         optax.adam(1e-3), inner_state=optax.sgd(0.1).init(params))


def test_meta_learner_reports_whether_a_step_is_finite():
    loss = lambda p, b: jnp.sum((p - b) ** 2)
    tasks = fometa.Task(jnp.ones((2, 3, 4)), jnp.ones((2, 4)))
    for lr, finite in ((0.1, 1.0), (1e30, 0.0)):
        learner = fometa.meta_learner("reptile", loss, lr, check_finite=True)
        _, metrics = learner.step(learner.init(jnp.zeros(4)), tasks)
        assert float(metrics["finite"]) == finite


@pytest.mark.parametrize("bad", [None, math.inf, -math.inf, math.nan])
def test_all_finite_checks_every_float_of_every_leaf(bad):
    """`fometa.learner.all_finite` against NumPy leaf by leaf: float16 leaves beside a
    float32 value beyond float16's range (1e5) and bfloat16 near its largest stay finite
    (the widest type is used), integer leaves are skipped."""
    tree = {"bf16": jnp.full((2, 3), 3e38, jnp.bfloat16), "f32": jnp.arange(5.0) * 1e5,
            "f16": jnp.ones(3, jnp.float16),
            "count": jnp.array(7, jnp.int32), "scalar": jnp.float32(1.5),
            "nested": [jnp.ones((4, 1)), jnp.zeros((0,))]}
    if bad is not None:
        tree["nested"][0] = tree["nested"][0].at[3, 0].set(bad)
    expected = all(np.isfinite(np.asarray(x, np.float64)).all()
                   for x in jax.tree_util.tree_leaves(tree)
                   if jnp.issubdtype(x.dtype, jnp.inexact))
    assert bool(all_finite(tree)) is expected is (bad is None)
    assert bool(all_finite({"only": jnp.arange(3)})) is True  # no floats: nothing to fail


# --- divergence, damaged checkpoints, memory ------------------------------------------------

def test_divergence_stops_the_run_and_writes_nothing_non_finite(tmp_path):
    run_dir = tmp_path / "run"
    argv = ["train", "--inner-lr", "1e6", "--meta-iters", "200", "--log-every", "100",
            "--checkpoint-every", "100", "--eval-tasks", "20", "--no-progress",
            "--run-dir", str(run_dir)]
    err = one_line(fometa_cli(*argv))
    assert "meta-iteration 1 made the loss or the parameters not finite" in err
    assert "--inner-lr 1000000.0" in err and "--meta-step 0.1" in err
    assert not (run_dir / "results.json").exists()
    assert not list((run_dir / "checkpoints").iterdir())  # no non-finite checkpoint
    for f in run_dir.glob("*.json*"):
        assert "NaN" not in f.read_text() and "Infinity" not in f.read_text()
    assert one_line(fometa_cli(*argv)) == err  # a rerun says the same, never "complete"


def flat_state(run_dir: Path) -> np.ndarray:
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(load_run(run_dir)[1])])


def test_checksum_mismatch_is_never_evaluated(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert main(["train", *SMALL, "--checkpoint-every", "100", "--no-plots",
                 "--run-dir", str(run_dir)]) == 0
    with monkeypatch.context() as m:  # checkpoint 300 written with a checksum of other contents
        m.setattr(checkpoint_module, "_checksum", lambda tree: np.zeros(32, np.uint8))
        assert main(["train", *SMALL[2:], "--meta-iters", "300", "--checkpoint-every", "100",
                     "--no-plots", "--run-dir", str(tmp_path / "other")]) == 0
    with pytest.raises(CheckpointError, match="do not match the checksum") as e:
        evaluate_run(tmp_path / "other")
    assert str(tmp_path / "other" / "checkpoints" / "300") in str(e.value)
    # Flipped bytes anywhere in the newest checkpoint's data: refused before orbax opens a
    # file (tensorstore reading damaged data prints tracebacks from its threads), naming it.
    newest = run_dir / "checkpoints" / "200"
    saved = flat_state(run_dir)
    data = [f for f in newest.rglob("*") if f.is_file() and f.parent.name == "d"]
    assert data
    for f in flipped_bytes(data):
        with monkeypatch.context() as m:
            m.setattr(checkpoint_module.ocp.CheckpointManager, "restore",
                      lambda *a, **k: pytest.fail("orbax read a damaged checkpoint"))
            with pytest.raises(CheckpointError, match="does not match the checksum") as e:
                flat_state(run_dir)
        assert str(newest) in str(e.value) and f.name in str(e.value)
    # Without the list of file checksums (written by an older fometa): refused by the tree's
    # checksum, or (where a byte carried no value) the very state that was saved.
    (newest / checkpoint_module.FILE_SUMS).unlink()
    refused = 0
    for _ in flipped_bytes(data):
        try:
            np.testing.assert_array_equal(flat_state(run_dir), saved)
        except CheckpointError as e:
            assert str(newest) in str(e)
            refused += 1
    assert refused > 0


def flipped_bytes(files: list[Path]):
    """Yields each file with one byte flipped, at two places in turn; restores it after."""
    for f in files:
        original = f.read_bytes()
        for pos in (len(original) // 3, len(original) - 9):
            damaged = bytearray(original)
            damaged[pos] ^= 0x5A
            f.write_bytes(bytes(damaged))
            yield f
        f.write_bytes(original)


def test_a_run_refused_at_its_start_leaves_no_folder(cli_error, tmp_path):
    # Refused after the run directory was made and locked (the learner's settings check).
    run_dir = tmp_path / "new" / "run"
    err = cli_error(["train", "--algorithm", "maml", "--per-step-bn", "--run-dir", str(run_dir)])
    assert "no batch norm" in err
    assert not (tmp_path / "new").exists()  # nor the parent made for it
    # Through '..', a folder that existed stays; and a parent another run now uses stays.
    (tmp_path / "existing").mkdir()
    cli_error(["train", "--algorithm", "maml", "--per-step-bn", "--run-dir",
               str(tmp_path / "fresh" / ".." / "existing" / "run")])
    assert (tmp_path / "existing").is_dir() and not (tmp_path / "existing" / "run").exists()
    assert not (tmp_path / "fresh").exists()
    (tmp_path / "kept").mkdir()  # a folder the user made stays, whatever happens in it
    cli_error(["train", "--algorithm", "maml", "--per-step-bn", "--run-dir",
               str(tmp_path / "kept")])
    assert (tmp_path / "kept").is_dir()


def test_a_step_too_large_for_memory_is_refused_before_running(cli_error, tmp_path):
    err = cli_error(["train", "--meta-batch", "50000000", "--run-dir", str(tmp_path / "r")])
    assert "GiB of memory" in err and "--meta-batch 50000000" in err
