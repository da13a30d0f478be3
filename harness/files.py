"""Files that survive kills and concurrency: atomic writes, advisory locks, and the cleanup of the temp
files that killed writers leave behind.

Temp names the harness writes (and :func:`remove_stale_temps` recognises): `.<name>.<pid>-<hex>.tmp`
(:func:`atomic_file`, store parts), `.<name>.tmp-<pid>` (training states and curves), `.extract-<pid>-…`
(archive extraction folders) and `.<name>.building-<pid>-…` / `.<name>.old-<pid>-…` (sites being built or
replaced).

Links: :func:`inside` refuses a path that leaves the folder it is read from or written to, by `..` or
through a symbolic link anywhere below that folder (links are never followed there).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from harness.errors import UserError

_TEMP = re.compile(
    r"^\.(?:.+\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp|.+\.tmp-(?P<tpid>\d+)|extract-(?P<xpid>\d+)-.+"
    r"|.+\.(?:building|old)-(?P<bpid>\d+)-.+)$"
)
STALE_AFTER_S = 24 * 3600  # a temp file this old is stale even if its pid was reused by a live process


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator:
    """A binary file to write `path` through: a unique temp file beside it (created like `open(path, "wb")`
    would, so the umask applies), renamed onto `path` on success and removed on failure."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temp files and extraction folders the harness names (`.<name>.<pid>-<hex>.tmp`,
    `.<name>.tmp-<pid>`, `.extract-<pid>-…`, `.<name>.building-<pid>-…`, `.<name>.old-<pid>-…`) left in
    `folder` by killed processes: their process is
    gone, or they are older than STALE_AFTER_S. Returns what was removed."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        match = _TEMP.match(entry.name)
        if match is None:
            continue
        try:
            age = time.time() - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        pid = int(match["pid"] or match["tpid"] or match["xpid"] or match["bpid"])
        if _process_alive(pid) and age < STALE_AFTER_S:
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        removed.append(Path(entry.path))
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock (fcntl.flock) on `lock_path`, held for the block; waits for holders."""
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_CLEANED: set[Path] = set()


def clean_once(folder: Path) -> None:
    """:func:`remove_stale_temps` on `folder`, the first time this process writes there."""
    if folder not in _CLEANED:
        remove_stale_temps(folder)
        _CLEANED.add(folder)


def inside(root: Path, path: Path) -> Path:
    """`path`, checked to stay inside `root`: relative to it without `..`, and with no symbolic link in any
    component below `root` (the last included). Raises a UserError saying which link or component leaves
    `root`; nothing is followed."""
    root, path = Path(root), Path(path)
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise UserError(f"refusing {path}: it is not inside {root}") from None
    current = root
    for part in parts:
        if part in ("..", "") or "/" in part or "\\" in part:
            raise UserError(f"refusing {path}: the component {part!r} leads out of {root}")
        current = current / part
        if current.is_symlink():
            raise UserError(
                f"refusing {current}: it is a symbolic link (to {os.readlink(current)}); links are not "
                f"followed out of {root}: replace it with the file itself"
            )
    return path
