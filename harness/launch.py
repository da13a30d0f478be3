"""``reprosr reproduce --nproc N``: torchrun as a child that cannot outlive the launcher, and one error.

The launcher runs ``python -m harness.launch`` (torchrun's own launcher, :func:`main`, minus the traceback
it prints when a worker fails) and supervises it:

- SIGTERM, SIGINT and SIGHUP sent to the launcher are forwarded to torchrun, which stops its workers (it
  starts each in its own session and kills those on a termination signal); the launcher waits for it.
- A launcher killed outright (SIGKILL) cannot forward anything: torchrun is started with
  ``PR_SET_PDEATHSIG = SIGTERM`` (Linux), so the kernel sends it SIGTERM when the launcher dies, and it
  stops its workers the same way. No rank goes on to append a run.
- A worker's user error (what the CLI reports with exit 2) is written once, by the first rank that meets
  it, to the file named by ``$REPROSR_ERROR_FILE``; the workers print nothing, and the launcher reports that
  one message (exit 2), instead of one JSON object per rank and torchrun's traceback.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.errors import UserError

ERROR_FILE = "REPROSR_ERROR_FILE"
_PR_SET_PDEATHSIG = 1
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _without_nproc(argv: Sequence[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The single-node torchrun command (through :func:`main`) that runs ``reprosr <argv>`` (without
    ``--nproc``) in ``nproc`` processes."""
    return [
        sys.executable, "-m", "harness.launch", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "harness", *_without_nproc(argv),
    ]  # fmt: skip


def _die_with(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGTERM when ``parent`` dies (and at once if it already has)."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def supervise(command: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``command`` as a child that dies with this process, forwarding termination signals to it until it
    exits; its exit status (negative: killed by that signal). A forwarded signal ends this process too,
    with status 128 + the signal, once the child is gone."""
    child = subprocess.Popen(command, env=env, preexec_fn=_die_with(os.getpid()))
    received: list[int] = []

    def forward(signum: int, _frame) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in _FORWARDED}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if child.poll() is None:  # this process is unwinding (an exception): stop the child first
            child.terminate()
            child.wait()
    if received:
        raise SystemExit(128 + received[0])
    return code


def launch(nproc: int, argv: Sequence[str]) -> None:
    """Run ``reprosr <argv>`` under torchrun in ``nproc`` processes; a worker's user error is raised here as
    one :class:`UserError`, any other failure exits with torchrun's status."""
    with tempfile.TemporaryDirectory(prefix="reprosr-launch-") as folder:
        error = Path(folder) / "error"
        code = supervise(torchrun_command(nproc, argv), {**os.environ, ERROR_FILE: str(error)})
        if error.is_file():
            raise UserError(error.read_text(encoding="utf-8"))
    if code:
        raise SystemExit(code if code > 0 else 128 - code)


def report_worker_error(message: str) -> bool:
    """Under :func:`launch` (``$REPROSR_ERROR_FILE`` set): record ``message`` for the launcher if no rank has
    yet, and return True (the worker prints nothing); False elsewhere."""
    path = os.environ.get(ERROR_FILE)
    if not path:
        return False
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(message)
    return True


def main(argv: Sequence[str]) -> int:
    """torchrun (``torch.distributed.run``) with its arguments; a failed worker gives its exit status (2 if
    any rank reported a user error) instead of torchrun's ChildFailedError traceback; 128 + the signal when
    stopped by one."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(parse_args(list(argv)))
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values()]
        return 2 if 2 in codes else next((c for c in codes if c > 0), 1)
    except SignalException as exc:  # the workers were stopped on the way out
        return 128 + exc.sigval
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
