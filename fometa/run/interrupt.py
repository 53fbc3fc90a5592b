"""Ctrl-C during training: a request to stop at the next chunk end, after a checkpoint.

A second Ctrl-C stops at once.
"""

from __future__ import annotations

import signal
import threading


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by `fometa.run.train` after Ctrl-C: a checkpoint at `iteration` was written."""

    def __init__(self, iteration: int):
        super().__init__(f"interrupted at meta-iteration {iteration}; "
                         "rerun the same command to resume")
        self.iteration = iteration


class StopRequest:
    """A context manager that catches SIGINT while it is open (in the main thread only;
    elsewhere it never fires) and restores the previous handler on exit.

    `requested` becomes True at the first Ctrl-C; the second raises KeyboardInterrupt.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
