"""What a running training reports: metrics.jsonl lines, the progress bar, TensorBoard."""

from __future__ import annotations

import math
from typing import Any, Callable

from tqdm.auto import tqdm

from fometa.errors import MissingPackageError
from fometa.run.rundir import RunDir


def tensorboard() -> Callable[[RunDir], Any]:
    """`open(run)`: a tensorboardX SummaryWriter on a run's tensorboard folder; a
    MissingPackageError without tensorboardX (asked before anything is written)."""
    try:
        from tensorboardX import SummaryWriter  # optional: pip install 'fometa[tensorboard]'
    except ImportError:
        raise MissingPackageError("--tensorboard needs the tensorboardX package; install it "
                                  "with pip install 'fometa[tensorboard]'") from None
    return lambda run: SummaryWriter(str(run.tensorboard_dir()))


class Reporter:
    """Reports a training run of `total` meta-iterations from `done` on; a context manager
    that closes metrics.jsonl, the bar and the TensorBoard `writer` (None: no TensorBoard)."""

    def __init__(self, run: RunDir, *, title: str, total: int, done: int, metric: str,
                 progress: bool, writer=None):
        self._log = run.metrics_log()
        self._bar = tqdm(total=total, initial=done, unit="it", disable=not progress,
                         dynamic_ncols=True, desc=title)
        self._writer = writer
        self._metric = metric
        self._postfix: dict[str, str] = {"loss": "nan"}

    def chunk(self, iteration: int, n: int, metrics: dict[str, float], seconds: float) -> None:
        """A chunk of `n` meta-iterations ending at `iteration`, its mean metrics and the
        training seconds so far."""
        self._log.train(iteration, metrics, seconds)
        if self._writer is not None:
            for k, v in metrics.items():
                self._writer.add_scalar(f"train/{k}", v, iteration)
        self._bar.update(n)
        loss = metrics.get("query_loss", metrics.get("support_loss", math.nan))
        self._postfix["loss"] = f"{loss:.4g}"
        self._bar.set_postfix(**self._postfix)

    def evaluation(self, iteration: int, evals: dict[str, Any]) -> None:
        """An evaluation at `iteration` (results.json's entries)."""
        self._log.eval(iteration, evals)
        self._postfix[self._metric] = f"{evals['eval']['mean']:.4g}"
        self._bar.set_postfix(**self._postfix)
        if self._writer is not None:
            for name, entry in evals.items():
                self._writer.add_scalar(f"{name}/{entry['metric']}", entry["mean"], iteration)

    def status(self, text: str) -> None:
        """What the run is doing besides training ("evaluating 200/1000 tasks", "plotting");
        an empty text clears it."""
        self._postfix.pop("now", None)
        if text:
            self._postfix["now"] = text
        self._bar.set_postfix(**self._postfix)

    def evaluating(self, done: int, total: int) -> None:
        """An evaluator's progress callback."""
        self.status(f"evaluating {done}/{total} tasks" if done < total else "")

    def close(self) -> None:
        self._log.close()
        self._bar.close()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> "Reporter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
