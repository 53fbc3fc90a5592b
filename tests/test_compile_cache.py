"""The `fometa` command's on-disk cache of compiled programs (`processes.compile_cache`): on
by default in the user's cache folder, a second process loads what the first compiled and
trains to the same numbers, `fometa eval` loads the evaluation, the user's
JAX_COMPILATION_CACHE_DIR wins over the default, `--compile-cache off` uses no cache, a
default folder that cannot be made leaves the cache off, and an explicit one is one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from fometa.run import processes

ARGS = ["train", "--preset", "reptile-sine", "--meta-iters", "20", "--log-every", "10",
        "--eval-tasks", "10", "--no-progress", "--no-plots"]
PROGRAMS = ("jit_meta_chunk", "jit_eval_chunk")  # the training loop and the evaluation


def fometa(run_dir: Path, *flags: str, args: list[str] = ARGS, **env: str
           ) -> subprocess.CompletedProcess:
    """`python -m fometa train ...` without the suite's cache settings (conftest.py), so that
    fometa's own defaults apply, but JAX's threshold for writing an entry kept low (the sine
    programs compile in well under JAX's default 1 s)."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("JAX_COMPILATION_CACHE_DIR", "JAX_COMPILATION_CACHE_MAX_SIZE")}
    proc = subprocess.run([sys.executable, "-m", "fometa", *args, *flags, "--run-dir",
                           str(run_dir)], capture_output=True, text=True, timeout=300,
                          env={**base, "JAX_PLATFORMS": "cpu",
                               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2", **env})
    assert proc.returncode == 0, proc.stderr
    return proc


def cache_files(folder: Path) -> list[str]:
    """The executables in a JAX cache folder ("<program>-<key>-cache")."""
    return sorted(p.name for p in folder.glob("*-cache"))


def entries(folder: Path) -> set[str]:
    """The programs with an executable in a JAX cache folder."""
    return {name.split("-")[0] for name in cache_files(folder)}


def results(run_dir: Path) -> tuple:
    """The evaluation and the logged metrics, without their timings."""
    lines = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
             for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return json.loads((run_dir / "results.json").read_text())["eval"], lines


def test_the_cache_across_processes(tmp_path):
    """One test: the second process's checks load what the first run compiled."""
    first = tmp_path / "first"
    # Every cache setting left out: the cache goes to $XDG_CACHE_HOME, one folder per machine.
    fometa(first / "run", XDG_CACHE_HOME=str(first / "xdg"))
    [folder] = (first / "xdg" / "fometa" / "jax").iterdir()
    assert entries(folder) >= set(PROGRAMS)
    assert (folder / ".lockfile").exists()  # fometa's size limit is on (JAX locks with one)
    recorded = json.loads((first / "run" / "results.json").read_text())["compile_cache"]
    assert Path(recorded) == folder

    # --compile-cache DIR: a second process loads both programs, trains to the same numbers
    # and leaves the default folder alone.
    proc = fometa(tmp_path / "second", "--compile-cache", str(folder),
                  XDG_CACHE_HOME=str(tmp_path / "xdg"), JAX_DEBUG_LOG_MODULES="jax._src.compiler")
    for program in PROGRAMS:
        assert f"Persistent compilation cache hit for '{program}'" in proc.stderr
    assert results(tmp_path / "second") == results(first / "run")
    assert not (tmp_path / "xdg" / "fometa").exists()  # (matplotlib keeps its own there)

    # fometa eval, default folder: loads the evaluation.
    proc = fometa(first / "run", args=["eval"], XDG_CACHE_HOME=str(first / "xdg"),
                  JAX_DEBUG_LOG_MODULES="jax._src.compiler")
    assert "Persistent compilation cache hit for 'jit_eval_chunk'" in proc.stderr

    # The user's JAX_COMPILATION_CACHE_DIR wins over the default ...
    proc = fometa(tmp_path / "user", XDG_CACHE_HOME=str(tmp_path / "xdg"),
                  JAX_COMPILATION_CACHE_DIR=str(folder), JAX_DEBUG_LOG_MODULES="jax._src.compiler")
    assert "Persistent compilation cache hit for 'jit_meta_chunk'" in proc.stderr
    assert not (tmp_path / "xdg" / "fometa").exists()
    # ... and --compile-cache off uses no cache, even that one.
    before = cache_files(folder)
    proc = fometa(tmp_path / "off", "--compile-cache", "off", XDG_CACHE_HOME=str(tmp_path / "xdg"),
                  JAX_COMPILATION_CACHE_DIR=str(folder), JAX_DEBUG_LOG_MODULES="jax._src.compiler")
    assert "cache hit" not in proc.stderr
    assert cache_files(folder) == before
    assert not (tmp_path / "xdg" / "fometa").exists()
    assert json.loads((tmp_path / "off" / "results.json").read_text())["compile_cache"] is None


@pytest.mark.parametrize("where", ["a-file/cache", " "])
def test_an_explicit_folder_that_cannot_be_written_is_one_line(cli_error, tmp_path, where):
    (tmp_path / "a-file").write_text("")
    given = str(tmp_path / where) if where.strip() else where
    line = cli_error(["train", "--compile-cache", given])
    assert "--compile-cache" in line and repr(given) in line and "'off'" in line


def test_a_default_folder_that_cannot_be_made_leaves_the_cache_off(monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file"))
    suite_cache = jax.config.jax_compilation_cache_dir  # conftest.py's; restored below
    jax.config.update("jax_compilation_cache_dir", None)
    try:
        assert processes.compile_cache() is None
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        jax.config.update("jax_compilation_cache_dir", suite_cache)
