"""The task type shared by every task distribution."""

from __future__ import annotations

from typing import Any, NamedTuple


class Task(NamedTuple):
    """One task, or a batch of tasks with a leading task axis on every leaf.

    `support` leaves carry a leading axis of inner steps (step i trains on `leaf[i]`);
    `query` is the batch the adapted parameters are judged on (None where unused).
    """

    support: Any
    query: Any = None
