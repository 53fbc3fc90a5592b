"""Fault injection: `fometa train` killed with SIGKILL at chosen points (while compiling, after
a chunk, while a checkpoint is written, during the final evaluation, while plotting), then
rerun with the same command, ends with the results of an uninterrupted run and every file it
promises; a full disk and two writers on one run directory are refused in one line."""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# One pytest-xdist worker runs this module: its module-scoped fixtures are built once.
pytestmark = pytest.mark.xdist_group("faults")

ARGS = ["train", "--meta-iters", "400", "--log-every", "100", "--checkpoint-every", "200",
        "--eval-every", "200", "--eval-tasks", "20", "--no-progress"]
PROMISED = ["config.json", "metrics.jsonl", "results.json", "inner_steps.json",
            "adaptation.json", "learning_curve.png", "inner_steps.png", "adaptation.png",
            "checkpoints/400"]

# `python -m fometa` with a SIGKILL of itself at the point FOMETA_KILL_AT names.
RUNNER = r"""
import os, signal, sys
import jax
import orbax.checkpoint._src.path.atomicity as atomicity
import fometa.run.plots, fometa.run.report

def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)

point = os.environ.get("FOMETA_KILL_AT")
if point == "compile":
    jax.stages.Lowered.compile = die
elif point == "chunk":  # after the third chunk, between checkpoints 200 and 400
    chunk = fometa.run.report.Reporter.chunk
    def after_chunk(self, iteration, *a, **k):
        chunk(self, iteration, *a, **k)
        if iteration == 300:
            die()
    fometa.run.report.Reporter.chunk = after_chunk
elif point == "checkpoint":  # checkpoint 400 written to its temporary folder, not renamed
    finalize = atomicity.AtomicRenameTemporaryPath.finalize
    async def killed_finalize(self, *a, **k):
        if self._final_path.name == "400":
            die()
        return await finalize(self, *a, **k)
    atomicity.AtomicRenameTemporaryPath.finalize = killed_finalize
elif point == "evaluation":  # the final evaluation computed, results.json not written
    evaluation = fometa.run.report.Reporter.evaluation
    def final_evaluation(self, iteration, evals):
        if iteration == 400:
            die()
        evaluation(self, iteration, evals)
    fometa.run.report.Reporter.evaluation = final_evaluation
elif point == "plotting":  # results.json written, the plots not all drawn
    fometa.run.plots.inner_steps_figure = die
from fometa.run.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run(run_dir: Path, kill_at: str | None = None, args=ARGS) -> subprocess.CompletedProcess:
    env = {**os.environ, "FOMETA_KILL_AT": kill_at or ""}
    return subprocess.run([sys.executable, "-c", RUNNER, *args, "--run-dir", str(run_dir)],
                          capture_output=True, text=True, env=env, timeout=300)


def results(run_dir: Path) -> dict:
    out = json.loads((run_dir / "results.json").read_text())
    return {k: out[k] for k in out if k.startswith("eval") or k == "meta_iterations"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("faults") / "reference"
    proc = run(run_dir)
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.mark.parametrize("point", ["compile", "chunk", "checkpoint", "evaluation", "plotting"])
def test_killed_anywhere_then_rerun_ends_as_uninterrupted(reference, tmp_path, point):
    run_dir = tmp_path / "run"
    killed = run(run_dir, kill_at=point)
    assert killed.returncode == -9, killed.stderr
    assert (run_dir / "results.json").exists() == (point == "plotting")
    rerun = run(run_dir)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr == ""  # no orbax or absl warnings when resuming
    assert results(run_dir) == results(reference)
    for name in PROMISED:
        assert (run_dir / name).exists(), name
    assert not list((run_dir / "checkpoints").glob("*tmp*"))  # nothing half written is kept


@contextlib.contextmanager
def small_filesystem(size: str):
    """A tmpfs of `size` mounted on a new folder (skips where mounting is not permitted)."""
    where = Path(tempfile.mkdtemp())
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a small filesystem here ({proc.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


FILL = r"""
import os, sys
import fometa.run.checkpoint as checkpoint
save = checkpoint.Checkpoints.save
def save_then_fill(self, iteration, *a, **k):
    save(self, iteration, *a, **k)
    if iteration == 200:  # the disk fills up after the first checkpoint
        with open(os.path.join(sys.argv[1], "filler"), "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
            except OSError:
                pass
checkpoint.Checkpoints.save = save_then_fill
from fometa.run.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_full_disk_is_one_line_and_keeps_the_last_checkpoint():
    with small_filesystem("8m") as disk:
        run_dir = disk / "run"
        proc = subprocess.run([sys.executable, "-c", FILL, str(disk), *ARGS, "--run-dir",
                               str(run_dir)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr
        assert err.startswith("fometa: error: ") and err.count("\n") == 1, err
        assert "No space left on device" in err and "meta-iteration 200 is kept" in err
        assert "Traceback" not in err
        assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["200"]
        # fometa eval cannot write eval.json there either: one line, not an orbax report.
        proc = subprocess.run([sys.executable, "-m", "fometa", "eval", "--run-dir",
                               str(run_dir)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "No space left on device" in proc.stderr


def test_second_writer_is_refused_naming_the_first(tmp_path):
    run_dir = tmp_path / "run"
    # No checkpoint before the last iteration, however fast the machine: the first run is
    # killed long before it.
    first = subprocess.Popen([sys.executable, "-m", "fometa", "train", "--meta-iters",
                              "100000", "--checkpoint-every", "100000", "--log-every", "1000",
                              "--no-progress", "--run-dir", str(run_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "metrics.jsonl").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        for argv in (["train", "--meta-iters", "1000"], ["eval"]):
            proc = subprocess.run([sys.executable, "-m", "fometa", *argv, "--run-dir",
                                   str(run_dir)], capture_output=True, text=True, timeout=120)
            assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
            assert f"being written by process {first.pid} (fometa train)" in proc.stderr
        config = json.loads((run_dir / "config.json").read_text())["config"]
        assert config["meta_iters"] == 100000  # the refused run wrote nothing
    finally:
        first.kill()
        first.wait()
    # The lock died with its process: the directory can be written again (eval now says
    # only that the first run left no checkpoint).
    proc = subprocess.run([sys.executable, "-m", "fometa", "eval", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "checkpoint" in proc.stderr and "being written" not in proc.stderr
