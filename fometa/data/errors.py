"""Errors and warnings raised by the data loaders."""

from __future__ import annotations


class DataError(ValueError):
    """A problem with the user's data: a missing archive, a corrupt file, a wrong layout.

    The message is one line that names the file or value at fault and what was
    expected; the command line prints it as ``fometa: error: <message>`` and exits 2.
    Line breaks in the message are folded into spaces.
    """

    def __init__(self, message: str):
        super().__init__(one_line(message))


class DataWarning(UserWarning):
    """Something in the data was usable but not as expected (e.g. uneven class sizes)."""


def one_line(text: object) -> str:
    """`text` as a single line: runs of whitespace, line breaks included, become one space."""
    return " ".join(str(text).split())
