"""Training across processes (jax.distributed, CPU collectives): two processes on localhost
train as one process with two devices does, only process 0 writes the run directory, and
both killed with SIGKILL then rerun end as the uninterrupted two-process run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

# One pytest-xdist worker runs this module: its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("distributed")

ARGS = ["train", "--devices", "all", "--meta-iters", "60", "--meta-batch", "4",
        "--log-every", "20", "--checkpoint-every", "20", "--eval-tasks", "20", "--no-progress",
        "--no-plots"]

# `python -m fometa` with a pause of argv[1] seconds after each checkpoint.
RUNNER = """
import sys, time
import fometa.run.checkpoint
save = fometa.run.checkpoint.Checkpoints.save
def save_then_pause(self, *a, **k):
    save(self, *a, **k)
    time.sleep(float(sys.argv[1]))
fometa.run.checkpoint.Checkpoints.save = save_then_pause
from fometa.run.cli import main

sys.exit(main(sys.argv[2:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_two(run_dir: Path, pause: float = 0.0, args: list[str] = ARGS,
              cache: Path | None = None) -> list[subprocess.Popen]:
    port = free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "",
           **({"FOMETA_CACHE_DIR": str(cache)} if cache else {})}
    return [subprocess.Popen([sys.executable, "-c", RUNNER, str(pause), *args, "--distributed",
                              "--coordinator", f"localhost:{port}", "--num-processes", "2",
                              "--process-id", str(i), "--run-dir", str(run_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for i in range(2)]


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    outputs = [p.communicate(timeout=300) for p in procs]
    return [(p.returncode, *out) for p, out in zip(procs, outputs)]


def run_one_process(run_dir: Path, args: list[str] = ARGS, cache: Path | None = None,
                    xla_flags: str = "--xla_force_host_platform_device_count=2") -> None:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags,
           **({"FOMETA_CACHE_DIR": str(cache)} if cache else {})}
    proc = subprocess.run([sys.executable, "-m", "fometa", *args, "--run-dir", str(run_dir)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr


def state(run_dir: Path, step: int = 60) -> np.ndarray:
    """The final checkpoint's meta-state, read with orbax into numpy arrays (it was saved
    across two processes' devices)."""
    path = (run_dir / "checkpoints" / str(step) / "default").absolute()
    checkpointer = ocp.StandardCheckpointer()
    meta = checkpointer.metadata(path)
    meta = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta.tree
    tree = checkpointer.restore(path, jax.tree_util.tree_map(
        lambda m: np.zeros(m.shape, m.dtype), meta))
    leaves = []

    def walk(node):
        if isinstance(node, dict):
            for k in sorted(node):
                walk(node[k])
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)
        else:
            leaves.append(np.ravel(np.asarray(node, np.float64)))

    walk(tree["state"])
    return np.concatenate(leaves)


def lines(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(l).items() if k != "seconds"}
            for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    run_one_process(root / "one")
    procs = start_two(root / "two")
    outcome = finish(procs)
    return root, procs, outcome


def test_two_processes_train_as_one_process_with_two_devices(runs):
    root, procs, outcome = runs
    for code, out, err in outcome:
        assert code == 0, err
    (_, out0, _), (_, out1, _) = outcome
    assert "mse after 32 inner steps" in out0 and "mse after" not in out1  # process 0 reports
    two, one = root / "two", root / "one"
    assert len(json.loads((two / "config.json").read_text())["devices"]) == 2
    # The task mean is an all-reduce across processes instead of across devices: float
    # rounding apart, the same run.
    np.testing.assert_allclose(state(two), state(one), rtol=1e-5, atol=1e-6)
    a, b = lines(two), lines(one)
    assert [l["iteration"] for l in a] == [l["iteration"] for l in b] == [20, 40, 60, 60]
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_allclose(x["query_loss"], y["query_loss"], rtol=1e-5)
    ra, rb = (json.loads((d / "results.json").read_text())["eval"] for d in (two, one))
    np.testing.assert_allclose(ra["mean"], rb["mean"], rtol=2e-3)
    # Only process 0 wrote: each line once (two writers would have logged each twice).
    assert not list(two.glob("*.tmp")) and (two / ".lock").read_text() == ""


def test_devices_n_splits_the_cpu_as_xla_flags_would(runs, tmp_path):
    """`--devices 2` with no XLA_FLAGS: the CPU as two devices (`processes.split_cpu`), the
    same program and run as with XLA's host device count of 2."""
    root, _, _ = runs
    run_one_process(tmp_path, [a if a != "all" else "2" for a in ARGS], xla_flags="")
    assert json.loads((tmp_path / "config.json").read_text())["devices"] == [
        "cpu:cpu:0", "cpu:cpu:1"]
    np.testing.assert_array_equal(state(tmp_path), state(root / "one"))
    assert lines(tmp_path) == lines(root / "one")


def test_both_killed_then_rerun_resume_identically(runs, tmp_path):
    root, _, _ = runs
    run_dir = tmp_path / "run"
    procs = start_two(run_dir, pause=30)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "checkpoints" / "20").is_dir():
            assert all(p.poll() is None for p in procs), finish(procs)
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1)  # both processes are in the pause after the checkpoint
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
        finish(procs)
    assert not (run_dir / "results.json").exists()
    outcome = finish(start_two(run_dir))
    for code, out, err in outcome:
        assert code == 0, err
    assert "resumed at meta-iteration 20" in outcome[0][1]
    np.testing.assert_array_equal(state(run_dir), state(root / "two"))
    assert lines(run_dir) == lines(root / "two")


def test_an_image_dataset_trains_across_processes_as_on_two_devices(tmp_path):
    """Each process places its own copy of the splits on its device (nothing gathered across
    processes): the same run as one process with two devices."""
    sys.path.insert(0, str(Path(__file__).parent))
    from reference_runs import write_omniglot

    args = ["train", "--preset", "reptile-omniglot-5w1s", "--task-order", "parallel",
            "--devices", "all", "--meta-iters", "2", "--log-every", "2", "--meta-batch", "2",
            "--train-shots", "2", "--inner-iters", "2", "--inner-batch", "4",
            "--eval-tasks", "6", "--eval-inner-iters", "2", "--no-progress", "--no-plots",
            "--data-dir", str(write_omniglot(tmp_path / "omniglot"))]
    run_one_process(tmp_path / "one", args, tmp_path / "cache")  # writes the data cache
    for code, _, err in finish(start_two(tmp_path / "two", args=args, cache=tmp_path / "cache")):
        assert code == 0, err
    np.testing.assert_allclose(state(tmp_path / "two", 2), state(tmp_path / "one", 2),
                               rtol=1e-5, atol=1e-6)
    ra, rb = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("two", "one"))
    for mode in ("eval", "eval_transductive"):
        assert ra[mode]["mean"] == pytest.approx(rb[mode]["mean"], abs=0.04)
