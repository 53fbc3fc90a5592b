"""The run directory: the one owner of its files' names and formats.

config.json, metrics.jsonl, results.json, eval.json, inner_steps.json, adaptation.json,
checkpoints/, tensorboard/ and the plots: written, trimmed, compared and read here. Under
`jax.distributed` every process opens the run directory but only one writes it
(`writer=True` on process 0); the others' writes are no-ops.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, TextIO

import jax
import numpy as np

from fometa.errors import DivergenceError, RunDirError, one_line
from fometa.run.checkpoint import Checkpoints, holds_checkpoints
from fometa.run.settings import Config, differences, flag

CONFIG = "config.json"            # {"config": settings, "versions", "devices", "data": digest}
METRICS = "metrics.jsonl"         # a line per logged chunk and per evaluation
RESULTS = "results.json"          # the finished run's evaluation and timing
EVAL = "eval.json"                # the newest `fometa eval`
INNER_STEPS = "inner_steps.json"  # the metric against inner steps at test time
ADAPTATION = "adaptation.json"    # one task's adaptation (sine: the paper's Fig. 1)
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
LEARNING_CURVE_PLOT = "learning_curve.png"
INNER_STEPS_PLOT = "inner_steps.png"
ADAPTATION_PLOT = "adaptation.png"

TRAIN, EVALUATION = "train", "eval"  # the "kind" of a metrics.jsonl line


LOCK = ".lock"  # held (flock) by the one process writing the run directory

OWNED = (CONFIG, METRICS, RESULTS, EVAL, INNER_STEPS, ADAPTATION, LEARNING_CURVE_PLOT,
         INNER_STEPS_PLOT, ADAPTATION_PLOT)


def _existing(path: Path) -> Path:
    """`path`, or a one-line RunDirError if it is not there or not a file."""
    if path.is_dir():
        raise RunDirError(f"{path} is a folder; expected the file that 'fometa train' writes")
    if not path.is_file():
        raise RunDirError(f"{path} not found; expected a run directory written by 'fometa train'")
    return path


def read_config_file(path: Path, hint: str = "") -> Config:
    """The settings saved in a config.json (any name); a one-line RunDirError if it cannot
    be read."""
    try:
        return Config.from_dict(json.loads(Path(path).read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError) as e:  # ConfigError is a ValueError
        raise RunDirError(f"{path} could not be read ({type(e).__name__}: {one_line(e)})"
                          f"{hint}") from None


def _read_json(path: Path) -> dict[str, Any] | None:
    """A run file's content, None if it is not there; a one-line RunDirError if it is
    damaged (not JSON)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(), parse_constant=_no_constant)
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path} could not be read ({type(e).__name__}); delete it to have "
                          "it written again") from None


def _no_constant(name: str) -> None:
    """NaN and Infinity in a run file: fometa never writes them (`_json`), so it is damaged."""
    raise ValueError(f"{name} in a run file")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_evaluation(entry: Any) -> bool:
    """Whether `entry` is an evaluation as results.json holds it (`summarize`'s)."""
    return (isinstance(entry, dict) and _number(entry.get("mean"))
            and (entry.get("ci95") is None or _number(entry.get("ci95")))
            and isinstance(entry.get("tasks"), int) and isinstance(entry.get("metric"), str))


def _evaluations(entries: dict[str, Any]) -> bool:
    """Whether every entry named "eval..." (results.json's, an evaluation line's) is an
    evaluation."""
    return all(_is_evaluation(v) for k, v in entries.items() if k.startswith("eval"))


def _is_metrics_line(entry: Any) -> bool:
    """Whether `entry` is a line of metrics.jsonl as `Metrics` writes them: a training
    line's values are numbers, an evaluation line's entries evaluations."""
    if not (isinstance(entry, dict) and isinstance(entry.get("iteration"), int)):
        return False
    rest = {k: v for k, v in entry.items() if k not in ("kind", "iteration")}
    if entry.get("kind") == TRAIN:
        return all(_number(v) for v in rest.values())
    if entry.get("kind") == EVALUATION:
        return _evaluations(rest)
    return True  # another kind: left to its reader


def _metrics_lines(path: Path, remedy: str = "") -> list[tuple[str, dict]]:
    """metrics.jsonl's lines, each with its entry; a one-line RunDirError (ending in
    `remedy`) for a line that `Metrics` would not have written (NaN, a negative time, values
    of the wrong type) but the last, which a killed run may have left half written (left
    out)."""
    rows = [l for l in path.read_text().splitlines() if l.strip()]
    lines = []
    for number, row in enumerate(rows, 1):
        try:
            entry = json.loads(row, parse_constant=_no_constant)
            if not _is_metrics_line(entry) or entry.get("seconds", 0) < 0:
                raise ValueError
            lines.append((row, entry))
        except (ValueError, TypeError):
            if number < len(rows):
                raise RunDirError(f"line {number} of {path} is not a metrics line; expected "
                                  f"the lines that 'fometa train' writes{remedy}") from None
    return lines


def _write_text(path: Path, text: str) -> None:
    """Writes `text` to `path` atomically (a temporary file renamed into place); a one-line
    RunDirError if it cannot be written (a full disk, a read-only file system)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RunDirError(f"cannot write {path} ({e.strerror})") from None


def _json(obj: Any, what: Path | str, indent: int | None = None) -> str:
    """`obj` as JSON; a one-line DivergenceError instead of a bare NaN or Infinity."""
    try:
        return json.dumps(obj, indent=indent, allow_nan=False)
    except ValueError:
        raise DivergenceError(f"{what}: a value is not finite (NaN or inf); it is not "
                              "written") from None


def _write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    _write_text(path, _json(obj, path, indent) + "\n")


class MetricsLog:
    """Appends lines to metrics.jsonl (nothing where the run directory is not written)."""

    def __init__(self, file: TextIO | None):
        self._file = file

    def _write(self, entry: dict[str, Any]) -> None:
        if self._file is not None:
            line = _json(entry, self._file.name) + "\n"
            try:
                self._file.write(line)
                self._file.flush()
            except OSError as e:
                raise RunDirError(f"cannot write {self._file.name} ({e.strerror})") from None

    def train(self, iteration: int, metrics: dict[str, float], seconds: float) -> None:
        """A logged chunk: its mean training metrics and the training seconds so far."""
        self._write({"kind": TRAIN, "iteration": iteration, **metrics,
                     "seconds": round(seconds, 3)})

    def eval(self, iteration: int, evals: dict[str, Any]) -> None:
        """An evaluation: results.json's entries ("eval", "eval_transductive", ...)."""
        self._write({"kind": EVALUATION, "iteration": iteration, **evals})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _missing_folders(path: Path) -> list[Path]:
    """The folders that making `path` creates, last made first: each prefix of it ('..'
    resolved, as the OS walks it) that does not exist yet."""
    prefix, missing = Path(), []
    for part in Path(path).absolute().parts:
        prefix = prefix / part
        folder = Path(os.path.abspath(prefix))
        if not folder.exists() and folder not in missing:
            missing.append(folder)
    return missing[::-1]


class RunDir:
    """A run directory at `path`."""

    def __init__(self, path: str | Path, *, writer: bool = True):
        self.path = Path(path)
        self.writer = writer

    @contextlib.contextmanager
    def writing(self, what: str, create: bool = True) -> Iterator["RunDir"]:
        """The run directory, checked writable and locked for this process while the block
        runs (`what` names the job for whoever is refused). A second writer (another
        `fometa train` or `fometa eval` on it) is refused with a RunDirError naming the
        process that holds it; the OS releases the lock of a process that dies. Without
        `create`, the run directory must already hold a run (its config.json)."""
        if not self.writer:
            yield self
            return
        if not create:
            _existing(self.file(CONFIG))
        created = _missing_folders(self.path)  # what making the run directory creates
        self._check_writable()
        try:
            opened = open(self.file(LOCK), "a+")
        except OSError as e:  # another user's lock file, a read-only one
            raise RunDirError(f"cannot open {self.file(LOCK)}, the run dir's lock, for writing "
                              f"({e.strerror}); choose another run dir") from None
        with opened as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                raise RunDirError(f"run dir {self.path} is being written by {holder}; wait for "
                                  "it to finish, or choose another --run-dir") from None
            lock.seek(0)
            lock.truncate()
            lock.write(f"process {os.getpid()} ({what})\n")
            lock.flush()
            try:
                yield self
            finally:
                lock.seek(0)
                lock.truncate()
                if created and os.listdir(self.path) == [LOCK]:
                    # A run refused before it wrote anything leaves no empty folder behind,
                    # nor the parents it made for it (one another run now uses stays).
                    os.unlink(self.file(LOCK))
                    for folder in created:
                        try:
                            folder.rmdir()
                        except OSError:
                            break
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _check_writable(self) -> None:
        """One-line RunDirErrors for a run directory that cannot be written."""
        try:
            str(self.path).encode("utf-8")
        except UnicodeEncodeError:
            raise RunDirError(f"run dir {ascii(str(self.path))} is not a valid UTF-8 name; "
                              "choose another --run-dir") from None
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"run dir {self.path} is a file; choose a folder for --run-dir")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.path):
                pass
        except OSError as e:
            raise RunDirError(f"cannot write to run dir {self.path} ({e.strerror}); choose "
                              "another --run-dir") from None
        for name in OWNED:
            if self.file(name).is_dir():
                raise RunDirError(f"{self.file(name)} is a folder; expected the file that "
                                  "'fometa train' writes (move it away)")
        self.check_folder(CHECKPOINTS)

    def check_folder(self, name: str) -> None:
        """A one-line RunDirError where the folder `name` that a run writes is a file."""
        if self.file(name).exists() and not self.file(name).is_dir():
            raise RunDirError(f"{self.file(name)} is a file; expected the folder that "
                              "'fometa train' writes (move it away)")

    def __str__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    # config.json

    def has_config(self) -> bool:
        return self.file(CONFIG).is_file()

    def read_config(self, hint: str = "") -> Config:
        """The saved settings; a one-line RunDirError if they are missing or unreadable."""
        return read_config_file(_existing(self.file(CONFIG)), hint)

    def check_config(self, cfg: Config) -> None:
        """Raises a one-line RunDirError naming the settings in which the saved config
        differs from `cfg` (versions, devices and resumable settings are not compared)."""
        if not self.has_config():
            if holds_checkpoints(self.file(CHECKPOINTS)):
                # Without the settings they were made with, resuming them would go on under
                # any settings given now, silently.
                raise RunDirError(f"run dir {self.path} holds checkpoints but no {CONFIG}; "
                                  f"restore its {CONFIG}, or choose another --run-dir")
            return
        saved = self.read_config("; choose another --run-dir").to_dict()
        saved, now = json.loads(json.dumps(saved)), json.loads(json.dumps(cfg.to_dict()))
        diff = differences(saved, now)
        if diff:
            changes = ", ".join(f"{flag(k)[2:]} {saved.get(k)!r} there, {now[k]!r} now"
                                for k in diff)
            raise RunDirError(f"run dir {self.path} holds a run with other settings ({changes}); "
                              "rerun with its settings to resume it, or choose another --run-dir")

    def write_config(self, cfg: Config, versions: dict[str, str], devices: list[str],
                     data: str | None = None) -> None:
        """config.json: the settings, versions, devices and the digest of the data trained
        on (`fometa.run.training.data_digest`; None: the problem reads no data)."""
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
            _write_json(self.file(CONFIG), {"config": cfg.to_dict(), "versions": versions,
                                            "devices": devices, "data": data})

    def read_data_digest(self) -> str | None:
        """The digest of the data the run was trained on, None where config.json has none
        (no data, or a run from before digests were recorded)."""
        saved = _read_json(self.file(CONFIG)) or {}
        digest = saved.get("data") if isinstance(saved, dict) else None
        return digest if isinstance(digest, str) else None

    # metrics.jsonl

    def trim_metrics(self, iteration: int, meta_iters: int) -> float:
        """Drops metrics.jsonl's lines past checkpoint `iteration` (and a final evaluation
        that will be redone), so that a resumed run's file reads as one run; returns the
        training seconds logged up to there."""
        path = self.file(METRICS)
        if not self.writer or not path.is_file():
            return 0.0
        if iteration == 0:  # a start from scratch: the earlier lines are all redone
            _write_text(path, "")
            return 0.0
        kept, seconds = [], 0.0
        for line, entry in _metrics_lines(path):
            it = entry["iteration"]
            final_eval = entry.get("kind") == EVALUATION and it == meta_iters
            if it <= iteration and not final_eval:
                kept.append(line)
                if entry.get("kind") == TRAIN:
                    seconds = float(entry.get("seconds", seconds))
        _write_text(path, "".join(line + "\n" for line in kept))
        return seconds

    def check_metrics(self) -> None:
        """A one-line RunDirError, before a resume compiles or writes anything, where
        metrics.jsonl holds a line that `trim_metrics` would keep unchecked."""
        if self.writer and self.file(METRICS).is_file():
            _metrics_lines(self.file(METRICS), " (repair it, or move it away to resume "
                                               "without the log so far)")

    def metrics_log(self) -> MetricsLog:
        """An appender to metrics.jsonl."""
        return MetricsLog(self.file(METRICS).open("a") if self.writer else None)

    def read_metrics(self) -> tuple[list[dict], list[dict]]:
        """The training and evaluation lines of metrics.jsonl."""
        lines = [entry for _, entry in _metrics_lines(_existing(self.file(METRICS)))]
        return ([l for l in lines if l.get("kind") == TRAIN],
                [l for l in lines if l.get("kind") == EVALUATION])

    # results.json, eval.json, inner_steps.json, adaptation.json

    def read_results(self) -> dict[str, Any] | None:
        """results.json's content, None if absent; a one-line RunDirError if it is not a
        finished run's results (damaged, or edited by hand)."""
        results = _read_json(self.file(RESULTS))
        if results is not None and not (
                isinstance(results, dict) and _is_evaluation(results.get("eval"))
                and _evaluations(results) and isinstance(results.get("meta_iterations"), int)):
            raise RunDirError(f"{self.file(RESULTS)} is not a finished run's results (no "
                              "complete evaluation); delete it to have it written again")
        return results

    def clear_results(self) -> None:
        if self.writer:
            self.file(RESULTS).unlink(missing_ok=True)

    def write_results(self, results: dict[str, Any]) -> None:
        if self.writer:
            _write_json(self.file(RESULTS), results)

    def write_eval(self, evals: dict[str, Any]) -> None:
        if self.writer:
            _write_json(self.file(EVAL), evals)

    def write_inner_steps(self, curve: dict[str, Any]) -> None:
        if self.writer:
            _write_json(self.file(INNER_STEPS), curve, indent=1)

    def read_inner_steps(self) -> dict[str, Any] | None:
        return _read_json(self.file(INNER_STEPS))

    def write_adaptation(self, figure: dict[str, Any]) -> None:
        """adaptation.json: an `Illustration` (its arrays as lists)."""
        if self.writer:
            lists = jax.tree_util.tree_map(lambda a: np.asarray(a).tolist(), figure)
            _write_json(self.file(ADAPTATION), lists, indent=None)

    def read_adaptation(self) -> dict[str, Any] | None:
        return _read_json(self.file(ADAPTATION))

    # checkpoints/, tensorboard/

    def checkpoints(self, create: bool = True) -> Checkpoints:
        """The run's checkpoints (a missing folder is a CheckpointError unless `create`)."""
        return Checkpoints(self.file(CHECKPOINTS), create=create)

    def tensorboard_dir(self) -> Path:
        return self.file(TENSORBOARD)


def require_runs(paths: list[str | Path]) -> list[RunDir]:
    """Run directories for `fometa plot`: each must hold metrics.jsonl (a RunDirError names
    the first that does not)."""
    runs = [RunDir(p, writer=False) for p in paths]
    for run in runs:
        _existing(run.file(METRICS))
    return runs
