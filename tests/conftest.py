"""Fixtures shared by the test files, the suite's compilation cache, and its xdist groups."""

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
from fometa.run.problems import DATASETS  # noqa: E402

try:  # pytest >= 9: a node's id is a structured NodeId built from this string
    from _pytest.nodes import coerce_node_id  # noqa: E402
except ImportError:  # older pytest: pytest-xdist's own hook suffixes the id itself
    coerce_node_id = None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """`--dist loadgroup` keeps each `xdist_group` on one worker by the "@group" suffix of
    its tests' ids. pytest-xdist 3.8 adds that suffix by assigning `item._nodeid`, which
    pytest 9 no longer reads, so every group was dealt test by test over both workers (a
    module fixture such as test_distributed.py's one- and two-process runs, built on each).
    Added here the way pytest 9 stores ids; a no-op where the suffix is already there."""
    if coerce_node_id is None or not config.getoption("loadgroup", False):
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)


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


@pytest.fixture
def registered():
    """Dataset names a test registers (`register_dataset`), removed again after it."""
    names = []
    yield names
    for name in names:
        DATASETS.pop(name, None)
