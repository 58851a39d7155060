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
