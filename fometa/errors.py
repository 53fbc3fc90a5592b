"""The errors a user can cause, said in one line that names the bad value and what is allowed.

The library raises them; the command line (`fometa.run.cli`) and the scripts that drive
fometa print each as one line on stderr and exit with status 2, and after Ctrl-C with 130
(`report`). Line breaks in a message are folded.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence


def one_line(text: object) -> str:
    """`text` as a single line: runs of whitespace, line breaks included, become one space."""
    return " ".join(str(text).split())


class UserError(ValueError):
    """Something the user can fix; the message is one line naming it."""

    def __init__(self, message: object):
        super().__init__(one_line(message))


class ConfigError(UserError):
    """A bad setting, combination of settings or device count."""


class DataError(UserError):
    """A problem with the user's data: a missing archive, a corrupt file, a wrong layout."""


class CheckpointError(UserError):
    """A missing, incomplete or damaged checkpoint."""


class RunDirError(UserError):
    """A run directory that cannot be used as asked (other settings, unreadable files)."""


class DivergenceError(UserError):
    """Training or evaluation produced values that are not finite (NaN or inf)."""


class MissingPackageError(UserError):
    """An optional package that a requested feature needs is not installed."""


class DataWarning(UserWarning):
    """Something in the data was usable but not as expected (e.g. uneven class sizes)."""


class RunWarning(UserWarning):
    """A run went on without something it could not record (e.g. a figure's non-finite
    data)."""


def reporting(prog: str, run: Callable[[list[str]], int],
              argv: Sequence[str] | None = None) -> int:
    """`run(argv)` (default: the command line's arguments), with a `UserError` printed as
    one `prog: error: ...` line on stderr and returned as status 2, and Ctrl-C as one line
    (a `TrainingInterrupted` says where and how to resume) and status 130: scripts that
    drive fometa, such as benchmarks/reproduce.py, report the way the `fometa` command does."""
    try:
        return run(list(sys.argv[1:] if argv is None else argv))
    except (UserError, KeyboardInterrupt) as e:
        return report(prog, e)


def report(prog: str, error: UserError | KeyboardInterrupt) -> int:
    """Says `error` in one line on stderr and returns the exit status: 2 for a UserError
    (`prog: error: ...`), 130 for Ctrl-C (`prog: interrupted at meta-iteration N; ...`)."""
    if isinstance(error, UserError):
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    print(f"{prog}: {str(error) or 'interrupted'}", file=sys.stderr)
    return 130
