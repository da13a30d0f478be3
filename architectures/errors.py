"""The error type of bad input to the architectures package (the CLI maps it to exit 2).

``architectures`` never imports ``harness``, so its user errors derive from this class rather than from the
harness's ``UserError``; the message always says what the file is and what to do.
"""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says what to do."""


class BuildError(ValueError):
    """A model that cannot be built as asked: an unknown name, variant, scale, form or size."""


class UnknownModel(BuildError, KeyError):
    """A model name the registry does not hold (also a KeyError, as a registry lookup)."""

    def __str__(self) -> str:  # a KeyError would quote its message
        return str(self.args[0]) if self.args else ""
