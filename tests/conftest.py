"""Fixtures shared by the test files, and the suite's compilation cache."""

import os
import tempfile
from pathlib import Path

# The suite compiles the same programs many times over (every `fometa train` subprocess, each
# kill-and-resume, each CLI test): JAX's persistent compilation cache lets the second compile
# of a program load the first's executable. Set here, before JAX is imported, so that the
# test processes and every subprocess they start share it; a size limit turns on its file
# lock, which keeps concurrent processes (pytest-xdist workers) from reading a half-written
# entry. The `fometa` command's own default (`processes.compile_cache`) leaves a
# JAX_COMPILATION_CACHE_DIR it finds alone, so its subprocesses use this one too.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(Path(tempfile.gettempdir()) / f"fometa-tests-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 * 2 ** 30))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import pytest  # noqa: E402

from fometa.run.cli import main  # noqa: E402


@pytest.fixture
def cli_error(capsys, tmp_path, monkeypatch):
    """Runs `fometa ARGV...` expecting a user error: exit 2 and one line on stderr,
    starting "fometa: error: ". Returns that line. Runs in a temporary folder, so that a
    default run directory (runs/...) never lands in the repository."""
    monkeypatch.chdir(tmp_path)

    def run(argv):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith("fometa: error: ") and err.count("\n") == 1, err
        return err

    return run
