"""Checkpoints of a run: its meta-state and PRNG state, one orbax folder per meta-iteration.

`fometa.run.rundir.RunDir.checkpoints` opens those of a run directory. A checkpoint holds
everything needed to continue a run exactly: the whole `MetaState` (params, outer and inner
optimizer states, step), the training PRNG key and the number of meta-iterations done.
Iteration i samples its tasks from `fold_in(train_key, i)`, so the key and the iteration
number are the complete PRNG state.

Writes are synchronous and atomic: orbax writes a step into a temporary folder and renames
it into place once complete, and only finished steps are listed, so a run killed mid-write
resumes from the previous checkpoint. The newest `MAX_TO_KEEP` checkpoints are kept.

Two checksums guard a checkpoint. `FILE_SUMS`, written beside orbax's files once they are in
place, holds the SHA-256 of each file; restore checks it before orbax opens anything, because
tensorstore reading a damaged file leaves coroutines that print tracebacks from other threads
after the error is handled. The checksum inside the tree is verified on what orbax returns.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp

from fometa.errors import CheckpointError, one_line

MAX_TO_KEEP = 3
FILE_SUMS = "fometa_files.sha256.json"  # {relative path: sha256 hex} of a checkpoint's files


@contextlib.contextmanager
def _log_level(name: str, level: int) -> Iterator[None]:
    """Logger `name` at `level` inside the block, restored after it."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _quiet_collect() -> None:
    """After a failed read: garbage-collects orbax's abandoned futures and coroutines with
    their reports silenced, so the user sees one line rather than pages of tensorstore specs."""
    hooks = sys.unraisablehook, sys.excepthook, threading.excepthook
    sys.unraisablehook = sys.excepthook = threading.excepthook = lambda *args: None
    try:
        with _log_level("asyncio", logging.CRITICAL):  # "exception was never retrieved"
            for _ in range(5):  # tensorstore's callbacks land on orbax's closed loop for a moment
                gc.collect()
                time.sleep(0.2)
    finally:
        sys.unraisablehook, sys.excepthook, threading.excepthook = hooks


def _quiet_orbax() -> contextlib.AbstractContextManager:
    # orbax logs every save at INFO and some restores at WARNING (absl's logger)
    return _log_level("absl", logging.ERROR)


def _checksum(tree: Any) -> np.ndarray:
    """SHA-256 of every leaf's path, dtype, shape and bytes, as uint8 [32]."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        a = np.ascontiguousarray(jax.device_get(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape}:".encode())
        digest.update(a.tobytes())
    return np.frombuffer(digest.digest(), np.uint8).copy()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_sums(folder: Path) -> dict[str, str]:
    """SHA-256 (hex) of every file under `folder` but FILE_SUMS, by relative path."""
    return {str(f.relative_to(folder)): _sha256(f)
            for f in sorted(folder.rglob("*")) if f.is_file() and f.name != FILE_SUMS}


def _write_file_sums(folder: Path) -> None:
    tmp = folder / (FILE_SUMS + ".tmp")
    tmp.write_text(json.dumps(_file_sums(folder), indent=0))
    os.replace(tmp, folder / FILE_SUMS)  # atomic: a half-written list is never read


def _damaged_file(folder: Path) -> str | None:
    """The first file of `folder` that is missing or differs from FILE_SUMS, or None (also
    when FILE_SUMS is absent: checkpoints written before it, or killed before it was)."""
    try:
        sums = json.loads((folder / FILE_SUMS).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return FILE_SUMS
    if not (isinstance(sums, dict) and all(isinstance(v, str) for v in sums.values())):
        return FILE_SUMS  # valid JSON, but not {file: digest}
    for name, digest in sums.items():
        try:
            if _sha256(folder / name) != digest:
                return name
        except OSError:
            return name
    return None


def _reason(error: BaseException) -> str:
    """An OS reason found in an orbax/tensorstore error's message, else its type."""
    text = str(error)
    for reason in ("No space left on device", "Read-only file system", "Permission denied",
                   "Disk quota exceeded"):
        if reason in text:
            return reason
    return type(error).__name__


def holds_checkpoints(folder: Path) -> bool:
    """Whether `folder` holds a checkpoint, complete or not (orbax names each step's folder
    by its meta-iteration), read from the listing without opening orbax."""
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


class Checkpoints:
    """The checkpoints in one folder (a run directory's `checkpoints/`)."""

    def __init__(self, path: str | Path, *, create: bool = True):
        self.path = Path(path).absolute()
        if not create and not self.path.is_dir():
            raise CheckpointError(f"{self.path} not found; the run has no checkpoint to load")
        options = ocp.CheckpointManagerOptions(max_to_keep=MAX_TO_KEEP, create=create,
                                               enable_async_checkpointing=False)
        with _quiet_orbax():
            self._manager = ocp.CheckpointManager(
                self.path, options=options, item_handlers=ocp.StandardCheckpointHandler())

    def latest_step(self) -> int | None:
        """The meta-iteration of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def save(self, iteration: int, state: Any, train_key: jax.Array) -> None:
        """Writes checkpoint `iteration` with a checksum of its contents; a one-line
        CheckpointError if it cannot be written (the previous checkpoints are kept)."""
        if iteration == self.latest_step():
            return
        tree = {"state": state, "train_key": np.asarray(jax.device_get(train_key)),
                "iteration": np.asarray(iteration, np.int64)}
        tree["checksum"] = _checksum(tree)
        try:
            with _quiet_orbax():
                self._manager.save(iteration, args=ocp.args.StandardSave(tree), force=True)
                self._manager.wait_until_finished()
            if jax.process_index() == 0:  # the run directory's one writer
                _write_file_sums(self.path / str(iteration))
        except Exception as e:  # tensorstore and orbax raise many types
            _quiet_collect()
            for tmp in self.path.glob(f"{iteration}.orbax-checkpoint-tmp*"):
                shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointError(f"checkpoint {self.path / str(iteration)} could not be "
                                  f"written ({_reason(e)}); {self._kept(iteration)}") from None

    def _kept(self, step: int) -> str:
        older = [s for s in self._manager.all_steps() if s < step]
        return (f"the one at meta-iteration {max(older)} is kept" if older
                else "no earlier checkpoint exists")

    def restore(self, state_template: Any, train_key: jax.Array,
                step: int | None = None) -> tuple[Any, jax.Array, int]:
        """`(state, train_key, iteration)` of checkpoint `step` (default: the newest), with
        arrays placed like the template's. Raises a one-line CheckpointError naming the
        folder of a missing or damaged checkpoint."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.path} holds no complete checkpoint")
        folder = self.path / str(step)
        template = {"state": state_template, "train_key": np.asarray(jax.device_get(train_key)),
                    "iteration": np.asarray(0, np.int64)}
        older = [s for s in self._manager.all_steps() if s < step]
        hint = f"; delete it to use the one at meta-iteration {max(older)}" if older else ""
        damaged = _damaged_file(folder)
        if damaged is not None:
            raise CheckpointError(f"checkpoint {folder} is damaged: {damaged} does not match "
                                  f"the checksum written with it{hint}")
        error = None
        try:
            with _quiet_orbax():
                # Checkpoints written before checksums existed have none to verify.
                verified = "checksum" in self._manager.item_metadata(step)
                if verified:
                    template["checksum"] = np.zeros(32, np.uint8)
                out = self._manager.restore(step, args=ocp.args.StandardRestore(template))
            iteration = int(out["iteration"])
            if iteration != step:
                raise ValueError(f"it says meta-iteration {iteration}")
        except Exception as e:  # tensorstore, orbax and msgpack raise many types
            error = type(e).__name__ + (f": {one_line(e)}" if isinstance(e, ValueError)
                                        and str(e).startswith("it says") else "")
        if error is not None:
            _quiet_collect()  # orbax's abandoned read coroutines would print tracebacks
            raise CheckpointError(f"checkpoint {folder} could not be read ({error}): it is "
                                  f"damaged, incomplete or from another config{hint}")
        if verified:
            saved = np.asarray(out.pop("checksum"))
            if not np.array_equal(saved, _checksum(out)):
                raise CheckpointError(f"checkpoint {folder} is damaged: its contents do not "
                                      f"match the checksum written with them{hint}")
        return out["state"], out["train_key"], iteration

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> "Checkpoints":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
