"""Checkpoints, resumption and run-directory safety: a killed or interrupted run, rerun
with the same command, ends exactly as an uninterrupted one."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from fometa.run.cli import main

# One pytest-xdist worker runs this module: its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("checkpoint")

ARGS = ["train", "--meta-iters", "600", "--log-every", "100", "--checkpoint-every", "200",
        "--eval-every", "300", "--eval-tasks", "20", "--no-progress"]

# `python -m fometa`, with the plots stubbed out (seconds each; not under test here) and a
# pause of argv[1] seconds after each checkpoint, so a test can act between checkpoints.
RUNNER = """
import sys, time
import fometa.run.checkpoint, fometa.run.training
fometa.run.training.record_figures = lambda *a, **k: None
save = fometa.run.checkpoint.Checkpoints.save
def save_then_pause(self, *a, **k):
    save(self, *a, **k)
    time.sleep(float(sys.argv[1]))
fometa.run.checkpoint.Checkpoints.save = save_then_pause
from fometa.run.cli import main

sys.exit(main(sys.argv[2:]))
"""


def start(run_dir: Path, pause: float = 0.0, extra=()) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(pause), *ARGS, *extra,
                             "--run-dir", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(run_dir: Path, pause: float = 0.0, extra=()) -> subprocess.CompletedProcess:
    proc = start(run_dir, pause, extra)
    out, err = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path, step: int = 200) -> None:
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / str(step)).is_dir():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


def interrupted(run_dir: Path, sig: int, pause: float, timeout: float
                ) -> subprocess.CompletedProcess:
    """A run sent `sig` once its first checkpoint exists, waited for up to `timeout` s."""
    proc = start(run_dir, pause=pause)
    try:
        wait_for_checkpoint(proc, run_dir)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def params(run_dir: Path) -> list[np.ndarray]:
    from fometa.run import load_run

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(load_run(run_dir)[1])]


def assert_same_run(a: Path, b: Path) -> None:
    ra, rb = results(a), results(b)
    assert ra["eval"] == rb["eval"] and ra["meta_iterations"] == rb["meta_iterations"] == 600
    for x, y in zip(params(a), params(b), strict=True):
        np.testing.assert_array_equal(x, y)
    strip = lambda lines: [{k: v for k, v in l.items() if k != "seconds"} for l in lines]
    assert strip(metrics(a)) == strip(metrics(b))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    proc = run(run_dir)
    assert proc.returncode == 0, proc.stderr
    return run_dir


def test_fresh_run_layout_and_metrics(reference):
    assert {p.name for p in (reference / "checkpoints").iterdir()} == {"200", "400", "600"}
    assert not (reference / "state.msgpack").exists()
    r = results(reference)
    assert r["resumed_from"] == 0 and r["eval"]["tasks"] == 20
    lines = metrics(reference)
    train = [l for l in lines if l["kind"] == "train"]
    assert [l["iteration"] for l in train] == [100, 200, 300, 400, 500, 600]
    assert all({"support_loss", "query_loss", "seconds"} <= set(l) for l in train)
    evals = [l for l in lines if l["kind"] == "eval"]
    assert [l["iteration"] for l in evals] == [300, 600]  # periodic, then final
    assert all(set(l) == {"kind", "iteration", "eval"} and l["eval"]["metric"] == "mse"
               for l in evals)
    assert evals[-1]["eval"] == r["eval"]


def test_same_command_and_seed_give_the_same_numbers(reference, tmp_path):
    proc = run(tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert_same_run(reference, tmp_path / "run")


def test_killed_run_resumes_to_the_uninterrupted_result(reference, tmp_path):
    run_dir = tmp_path / "run"
    interrupted(run_dir, signal.SIGKILL, pause=60, timeout=30)
    assert not (run_dir / "results.json").exists()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["200"]
    # A write killed midway leaves only a temporary folder, which is never loaded.
    partial = run_dir / "checkpoints" / "400.orbax-checkpoint-tmp-1700000000000000"
    shutil.copytree(run_dir / "checkpoints" / "200", partial)
    (partial / "commit_success.txt").unlink(missing_ok=True)
    for f in (partial / "default").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00")
    # Lines logged past the checkpoint, and a half-written one, are dropped on resume.
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "train", "iteration": 300, "query_loss": 1.0, "support_loss": 1.0, "seconds": 1}\n{"kind": "tr')

    proc = run(run_dir)
    assert proc.returncode == 0, proc.stderr
    assert "resumed at meta-iteration 200" in proc.stdout
    assert results(run_dir)["resumed_from"] == 200
    assert_same_run(reference, run_dir)


def test_ctrl_c_checkpoints_exits_130_and_resumes(reference, tmp_path):
    run_dir = tmp_path / "run"
    proc = interrupted(run_dir, signal.SIGINT, pause=0.5, timeout=120)
    err = proc.stderr
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    stopped = int(err.split("interrupted at meta-iteration ")[1].split(";")[0])
    assert 200 <= stopped < 600 and "rerun the same command to resume" in err
    assert (run_dir / "checkpoints" / str(stopped)).is_dir()
    assert not (run_dir / "results.json").exists()

    proc = run(run_dir)
    assert proc.returncode == 0, proc.stderr
    assert results(run_dir)["resumed_from"] == stopped
    assert_same_run(reference, run_dir)


def test_rerun_of_a_finished_run_reports_it(reference, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    before = (run_dir / "results.json").read_text(), (run_dir / "metrics.jsonl").read_text()
    # --checkpoint-every changes no number, so it may differ.
    assert main([*ARGS, "--checkpoint-every", "300", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "already holds this run, complete at meta-iteration 600" in out
    assert ((run_dir / "results.json").read_text(), (run_dir / "metrics.jsonl").read_text()) == before


def test_other_settings_in_the_run_dir_are_refused(reference, tmp_path, capsys, cli_error):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    err = cli_error([*ARGS, "--meta-iters", "800", "--seed", "1", "--run-dir", str(run_dir)])
    assert "meta-iters 600 there, 800 now" in err and "seed 0 there, 1 now" in err
    assert "eval-tasks" not in err


def test_damaged_or_missing_checkpoint_is_one_line_naming_it(reference, tmp_path, capsys, cli_error):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    newest = run_dir / "checkpoints" / "600"
    for f in newest.rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[:10])  # truncated data
    err = cli_error(["eval", "--run-dir", str(run_dir)])
    assert str(newest) in err and "damaged" in err
    proc = subprocess.run([sys.executable, "-m", "fometa", "eval", "--run-dir", str(run_dir)],
                          capture_output=True, text=True)  # no pages of tensorstore specs
    assert proc.returncode == 2 and proc.stderr.startswith(err), proc.stderr
    assert "tensorstore_spec" not in proc.stderr and "never retrieved" not in proc.stderr
    # Resuming from it is refused the same way (no silent restart from scratch).
    shutil.rmtree(run_dir / "checkpoints" / "200")
    (run_dir / "results.json").unlink()
    err = cli_error([*ARGS, "--run-dir", str(run_dir)])
    assert str(newest) in err

    shutil.rmtree(run_dir / "checkpoints")
    err = cli_error(["eval", "--run-dir", str(run_dir)])
    assert str(run_dir / "checkpoints") in err


def test_tensorboard_without_tensorboardx_is_one_line(tmp_path, monkeypatch, cli_error):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if not installed
    err = cli_error([*ARGS, "--tensorboard", "--run-dir", str(tmp_path / "run")])
    assert "tensorboardX" in err and "fometa[tensorboard]" in err
    assert not (tmp_path / "run" / "results.json").exists()


def test_tensorboard_events_hold_training_and_evaluation_scalars(tmp_path):
    pytest.importorskip("tensorboardX")
    run_dir = tmp_path / "run"
    assert main(["train", "--meta-iters", "400", "--log-every", "100", "--eval-every", "200",
                 "--eval-tasks", "20", "--tensorboard", "--no-progress",
                 "--run-dir", str(run_dir)]) == 0
    events = b"".join(p.read_bytes() for p in (run_dir / "tensorboard").iterdir())
    for tag in (b"train/query_loss", b"eval/mse"):
        assert tag in events, tag


def test_plot_needs_run_dirs_with_metrics(tmp_path, capsys, cli_error):
    err = cli_error(["plot", str(tmp_path)])
    assert str(tmp_path / "metrics.jsonl") in err
