"""Errors raised for bad user input.

Everything a user can get wrong (a name, a value, a file) raises :class:`UserInputError`
with one line naming the bad value and the valid choices; the CLI prints that line and
exits with code 2 instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class UserInputError(ValueError):
    """Bad input from a user: the message names the value and what would be valid."""


def unknown_name(kind: str, value: object, valid: Iterable[str]) -> UserInputError:
    """The standard error for an unknown registry name."""
    choices = ", ".join(sorted(valid))
    return UserInputError(f"unknown {kind} {value!r}; valid choices: {choices}")
