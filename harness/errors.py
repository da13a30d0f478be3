"""The harness's user-error type: bad input judged where it is read (the CLI exits 2 with the message).

Errors of the ``architectures`` package derive from ``architectures.errors.CheckpointError`` instead
(``architectures`` never imports ``harness``); the CLI treats both as user errors and lets every other
exception show its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Input that cannot be used as given; the message says what is wrong and what to do. A ValueError, so
    that callers of the Python API that catch bad values keep working."""


class UnknownName(UserError, KeyError):
    """A name a registry does not hold (a dataset, a recipe); also a KeyError, as a registry lookup."""

    def __str__(self) -> str:  # a KeyError would quote its message
        return str(self.args[0]) if self.args else ""
