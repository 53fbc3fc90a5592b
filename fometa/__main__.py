"""The `fometa` command's entry point (and `python -m fometa`): Ctrl-C from its first moment.

Importing JAX takes seconds, and JAX registers a garbage-collection callback: a Ctrl-C
during the import was a traceback (or an ImportError), and one that landed in that callback
(then, or later) was swallowed ("Exception ignored in ... _xla_gc_callback") and the run
went on to the end. `console` holds Ctrl-C back while it imports the command
(`fometa.run.cli`; `import fometa` alone loads no JAX) and installs `redeliver` for the
rest, so Ctrl-C is one line and status 130 from the first milliseconds (Python's own
start-up, before `console` runs, keeps its default).
"""

import importlib
import os
import signal
import sys
import threading
from typing import Any

from fometa.errors import report  # no JAX: fometa.errors imports nothing of it


def redeliver(unraisable: Any) -> None:
    """`sys.unraisablehook`: a KeyboardInterrupt raised where Python cannot propagate it (a
    garbage-collection callback, a finalizer) is sent again as SIGINT, to be raised where
    the program is (or caught again, and sent again); anything else goes to Python's own
    hook."""
    if issubclass(unraisable.exc_type, KeyboardInterrupt) and not sys.is_finalizing():
        # Later, from another thread: raised in this hook (signal.raise_signal runs the
        # handler at once), it would be swallowed again.
        resend = threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT))
        resend.daemon = True
        resend.start()
        return
    sys.__unraisablehook__(unraisable)


def console() -> None:
    """Runs the `fometa` command (`fometa.run.cli.console`) with `redeliver` in place (from
    the moment this function runs: Python's own start-up, some 20-40 ms, comes before)."""
    sys.unraisablehook = redeliver
    # Ctrl-C waits while the command's modules load: raised inside an extension module's
    # initialisation (numpy's, jaxlib's) it becomes an ImportError, and numpy prints its
    # traceback itself. A pending one is raised when it is unblocked, below.
    blocked = hasattr(signal, "pthread_sigmask")
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        try:
            cli = importlib.import_module("fometa.run.cli")  # JAX loads here
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    except KeyboardInterrupt as e:
        sys.exit(report("fometa", e))
    try:
        cli.console()
    finally:  # the interpreter's shutdown keeps Python's own hook
        sys.unraisablehook = sys.__unraisablehook__


if __name__ == "__main__":
    console()
