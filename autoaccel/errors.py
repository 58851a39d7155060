"""Errors a person can act on.

A `UserError` is bad input: the CLI prints its one-line message and exits with code 2, no
traceback. Anything else is a bug or a failing candidate and is handled where it happens.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input. The message names what is wrong and how to fix it, on one line."""


class InfeasibleRecipe(Exception):
    """A recipe that cannot run as asked (e.g. a runtime that lacks the chosen format).

    The trial is recorded as failed with this reason; the search goes on.
    """


class CandidateFailed(Exception):
    """A candidate that failed where its exception could not travel as itself: in the
    isolated worker (its reason and traceback are carried as text), or by crashing or
    running past `--trial-timeout`."""

    def __init__(self, reason: str, trace: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.trace = trace


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`, short enough for a tag or a table cell."""
    if isinstance(exc, CandidateFailed):
        return exc.reason
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")
