"""`reprosr` command line. Every command takes `--json` and then prints exactly one JSON object on stdout.

Bad input (arguments, files, checkpoints, datasets) ends with `error: <message>` on stderr and exit
status 2, and under `--json` also with `{"error": <message>}` on stdout; never with a traceback. Bad input
is a typed exception (:data:`~harness.cli.output.USER_ERRORS`: ``UserError`` and the errors of files that
are missing or unreadable); anything else is a bug and shows its traceback. JSON is
strict: a non-finite number (the PSNR of identical images is +inf) is written as null and its key path
is listed in `"non_finite"` with the value as text ("inf", "-inf" or "nan").

Each command imports what it runs inside its function: the models, kernels and Triton take seconds to import,
which `reprosr --help`, `data list` or `metrics` should not pay.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from harness import progress
from harness.cli.output import dumps, is_user_error
from harness.cli.parser import parser
from harness.launch import report_worker_error, torchrun_command

__all__ = ["dumps", "main", "parser", "torchrun_command"]


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _run(argv)
    except BrokenPipeError:
        # The reader went away (`reprosr models --json | head`): stop quietly, as a Unix filter does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None


def _run(argv: list[str]) -> None:
    json_requested = "--json" in argv
    try:
        args = parser().parse_args(argv)
        args.argv = argv
        progress.set_quiet(args.quiet)
        if os.environ.get("REPROSR_PAPERS"):
            from harness.papers import add_papers_from_env  # here: it imports every model (slow start)

            add_papers_from_env()
        args.fn(args)
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) or not is_user_error(exc):
            raise
        msg = exc
        if report_worker_error(str(msg)):  # a torchrun worker: the launcher reports the one error
            raise SystemExit(2) from None
        if json_requested:
            print(dumps({"error": str(msg)}))
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(2) from None
