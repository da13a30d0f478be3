"""What every command prints: one strict JSON object under `--json`, else text; and the error types the
command line maps to exit status 2."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence

from harness.errors import UserError


class UsageError(UserError):
    """Arguments that parse but make no sense together (exit 2, like argparse's own errors)."""


# What the command line reports as the user's input or environment (exit 2): the typed user error, OS
# errors, and the typed errors of the checkpoint readers.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    OSError,  # files the user named, disks, the network: the environment, not the code
    FloatingPointError,  # NaN/Inf out of a model or a training run: the checkpoint's or recipe's doing
)
# The architectures' typed errors (checkpoints, build requests, TF bundles; ``architectures`` cannot import
# ``harness``), looked up only once their module is loaded, so that parsing arguments never imports torch.
READER_ERRORS = (
    ("architectures.errors", "CheckpointError"),
    ("architectures.errors", "BuildError"),
    ("architectures.tf_checkpoint", "TFCheckpointError"),
)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is bad input (exit 2) rather than a bug (traceback)."""
    readers = tuple(getattr(sys.modules.get(m), n, None) for m, n in READER_ERRORS)
    return isinstance(exc, USER_ERRORS + tuple(r for r in readers if r is not None))


def dumps(payload: dict) -> str:
    """Strict JSON (no NaN/Infinity): non-finite numbers become null, listed under "non_finite"."""
    non_finite: dict[str, str] = {}

    def clean(value, where: str):
        if isinstance(value, float) and not math.isfinite(value):
            non_finite[where] = str(value)
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value

    cleaned = clean(payload, "")
    if non_finite:
        cleaned["non_finite"] = non_finite
    return json.dumps(cleaned, indent=None, default=str, allow_nan=False)


def emit(args: argparse.Namespace, payload: dict, text: Callable[[dict], str]) -> None:
    print(dumps(payload) if args.json else text(payload))


def table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)
