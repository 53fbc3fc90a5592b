"""The run directory: the one owner of its files' names and formats.

config.json, metrics.jsonl, results.json, eval.json, inner_steps.json, adaptation.json,
checkpoints/, tensorboard/ and the plots: written, trimmed, compared and read here. Under
`jax.distributed` every process opens the run directory but only one writes it
(`writer=True` on process 0); the others' writes are no-ops.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

import jax
import numpy as np

from fometa.errors import RunDirError
from fometa.run.checkpoint import Checkpoints
from fometa.run.settings import Config, differences, flag

CONFIG = "config.json"            # {"config": settings, "versions": ..., "devices": [...]}
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


def _existing(path: Path) -> Path:
    """`path`, or a one-line RunDirError if it is not there."""
    if not path.is_file():
        raise RunDirError(f"{path} not found; expected a run directory written by 'fometa train'")
    return path


def _write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    """Writes `obj` to `path` atomically (a temporary file renamed into place)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=indent) + "\n")
    tmp.replace(path)


class MetricsLog:
    """Appends lines to metrics.jsonl (nothing where the run directory is not written)."""

    def __init__(self, file: TextIO | None):
        self._file = file

    def _write(self, entry: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(entry) + "\n")
            self._file.flush()

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


class RunDir:
    """A run directory at `path`."""

    def __init__(self, path: str | Path, *, writer: bool = True):
        self.path = Path(path)
        self.writer = writer

    def __str__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    # config.json

    def has_config(self) -> bool:
        return self.file(CONFIG).is_file()

    def read_config(self, hint: str = "") -> Config:
        """The saved settings; a one-line RunDirError if they are missing or unreadable."""
        path = _existing(self.file(CONFIG))
        try:
            return Config.from_dict(json.loads(path.read_text())["config"])
        except (ValueError, KeyError, TypeError) as e:  # ConfigError is a ValueError
            raise RunDirError(f"{path} could not be read ({type(e).__name__}){hint}") from None

    def check_config(self, cfg: Config) -> None:
        """Raises a one-line RunDirError naming the settings in which the saved config
        differs from `cfg` (versions, devices and resumable settings are not compared)."""
        if not self.has_config():
            return
        saved = self.read_config("; choose another --run-dir").to_dict()
        saved, now = json.loads(json.dumps(saved)), json.loads(json.dumps(cfg.to_dict()))
        diff = differences(saved, now)
        if diff:
            changes = ", ".join(f"{flag(k)[2:]} {saved.get(k)!r} there, {now[k]!r} now"
                                for k in diff)
            raise RunDirError(f"run dir {self.path} holds a run with other settings ({changes}); "
                              "rerun with its settings to resume it, or choose another --run-dir")

    def write_config(self, cfg: Config, versions: dict[str, str], devices: list[str]) -> None:
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
            _write_json(self.file(CONFIG),
                        {"config": cfg.to_dict(), "versions": versions, "devices": devices})

    # metrics.jsonl

    def trim_metrics(self, iteration: int, meta_iters: int) -> float:
        """Drops metrics.jsonl's lines past checkpoint `iteration` (and a final evaluation
        that will be redone), so that a resumed run's file reads as one run; returns the
        training seconds logged up to there."""
        path = self.file(METRICS)
        if not self.writer or not path.is_file():
            return 0.0
        kept, seconds = [], 0.0
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
                it = int(entry["iteration"])
            except (ValueError, KeyError, TypeError):
                continue  # a partly written last line
            final_eval = entry.get("kind") == EVALUATION and it == meta_iters
            if it <= iteration and not final_eval:
                kept.append(line)
                if entry.get("kind") == TRAIN:
                    seconds = float(entry.get("seconds", seconds))
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)
        return seconds

    def metrics_log(self) -> MetricsLog:
        """An appender to metrics.jsonl."""
        return MetricsLog(self.file(METRICS).open("a") if self.writer else None)

    def read_metrics(self) -> tuple[list[dict], list[dict]]:
        """The training and evaluation lines of metrics.jsonl."""
        text = _existing(self.file(METRICS)).read_text()
        lines = [json.loads(l) for l in text.splitlines() if l.strip()]
        return ([l for l in lines if l.get("kind") == TRAIN],
                [l for l in lines if l.get("kind") == EVALUATION])

    # results.json, eval.json, inner_steps.json, adaptation.json

    def read_results(self) -> dict[str, Any] | None:
        path = self.file(RESULTS)
        return json.loads(path.read_text()) if path.is_file() else None

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
        path = self.file(INNER_STEPS)
        return json.loads(path.read_text()) if path.is_file() else None

    def write_adaptation(self, figure: dict[str, Any]) -> None:
        """adaptation.json: an `Illustration` (its arrays as lists)."""
        if self.writer:
            lists = jax.tree_util.tree_map(lambda a: np.asarray(a).tolist(), figure)
            _write_json(self.file(ADAPTATION), lists, indent=None)

    def read_adaptation(self) -> dict[str, Any] | None:
        path = self.file(ADAPTATION)
        return json.loads(path.read_text()) if path.is_file() else None

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
